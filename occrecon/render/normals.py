"""Vertex normals of triangle meshes (the renderer's shading normals): the C++/CUDA kernel
:func:`occrecon.ops.vertex_normals`, re-exported here where the renderer's users look for it."""
from __future__ import annotations

from ..ops.normals import vertex_normals

__all__ = ["vertex_normals"]
