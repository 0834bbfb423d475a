"""Vertex normals of triangle meshes."""
from __future__ import annotations

import torch

__all__ = ["vertex_normals"]


def vertex_normals(vertices: torch.Tensor, tri: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals, differentiable, batched.

    Args:
        vertices: ``(B, V, 3)`` or ``(V, 3)`` float.
        tri: ``(F, 3)`` integer vertex indices (counter-clockwise triangles give outward normals).
        eps: floor of the norm (an isolated vertex gets a zero normal rather than NaN).

    Returns:
        ``(B, V, 3)`` (or ``(V, 3)``) unit normals: the sum of the adjacent faces' cross products (whose length is
        twice the face area, hence the area weighting), normalised. Computed out of place (no in-place update of
        shared tensors, so repeated calls give identical results).
    """
    squeeze = vertices.dim() == 2
    v = vertices.unsqueeze(0) if squeeze else vertices
    if v.dim() != 3 or v.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3) or (V, 3), got shape {tuple(vertices.shape)}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be (F, 3), got shape {tuple(tri.shape)}")
    t = tri.long()
    v0, v1, v2 = v[:, t[:, 0]], v[:, t[:, 1]], v[:, t[:, 2]]
    face = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), |face| = 2 * area
    acc = torch.zeros_like(v)
    for k in range(3):
        acc = acc.index_add(1, t[:, k], face)
    n = acc / acc.norm(dim=-1, keepdim=True).clamp_min(eps)
    return n[0] if squeeze else n
