"""Differentiable rendering, nvdiffrast-compatible: ``import occrecon.render as dr``."""
from .fragments import Fragments, fragments
from .raster import RasterizeCudaContext, RasterizeGLContext, interpolate, rasterize

__all__ = ["RasterizeCudaContext", "RasterizeGLContext", "rasterize", "interpolate", "fragments", "Fragments"]
