"""Differentiable rendering, nvdiffrast-compatible: ``import occrecon.render as dr``."""
from .antialias import antialias, antialias_construct_topology_hash
from .camera import PerspectiveCamera, euler_rotation
from .face import FaceRender, FaceRenderer
from .log import get_log_level, set_log_level
from .fragments import Fragments, fragments, rasterize_fragments
from .normals import vertex_normals
from ..ops.triangle_id import triangle_index
from .raster import DepthPeeler, RasterizeCudaContext, RasterizeGLContext, interpolate, rasterize
from .texture import TextureMip, texture, texture_construct_mip

__all__ = ["RasterizeCudaContext", "RasterizeGLContext", "rasterize", "interpolate", "antialias",
           "antialias_construct_topology_hash", "fragments", "Fragments", "PerspectiveCamera", "euler_rotation",
           "vertex_normals", "FaceRenderer", "FaceRender", "triangle_index", "texture", "texture_construct_mip",
           "TextureMip", "get_log_level", "set_log_level", "DepthPeeler", "rasterize_fragments"]
