"""Differentiable kernels (C++/CUDA) with pure-PyTorch references in :mod:`occrecon.ops.reference`."""
from .neighbour import decode_offset, neighbour_loss, neighbour_min
from .normals import vertex_normals
from .sh import sh_shade

__all__ = ["neighbour_min", "neighbour_loss", "decode_offset", "sh_shade", "vertex_normals"]
