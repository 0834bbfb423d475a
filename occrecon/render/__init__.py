"""Differentiable rendering, nvdiffrast-compatible: ``import occrecon.render as dr``."""
from .raster import RasterizeCudaContext, RasterizeGLContext, interpolate, rasterize

__all__ = ["RasterizeCudaContext", "RasterizeGLContext", "rasterize", "interpolate"]
