"""Differentiable rendering, nvdiffrast-compatible: ``import occrecon.render as dr``."""
from .antialias import antialias, antialias_construct_topology_hash
from .fragments import Fragments, fragments
from .raster import RasterizeCudaContext, RasterizeGLContext, interpolate, rasterize

__all__ = ["RasterizeCudaContext", "RasterizeGLContext", "rasterize", "interpolate", "antialias",
           "antialias_construct_topology_hash", "fragments", "Fragments"]
