"""A PyTorch3D-style view of a rasterization, so code written against PyTorch3D's ``Fragments`` can use ours."""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..ops import _checks
from ..ops.triangle_id import triangle_index

__all__ = ["Fragments", "fragments"]


class Fragments(NamedTuple):
    """Same fields as ``pytorch3d.renderer.mesh.rasterizer.Fragments`` with one face per pixel (K = 1)."""

    pix_to_face: torch.Tensor  # (B, H, W, 1) int64, -1 = empty
    zbuf: torch.Tensor  # (B, H, W, 1), -1 = empty
    bary_coords: torch.Tensor  # (B, H, W, 1, 3), -1 = empty
    dists: torch.Tensor | None  # always None: no soft rasterization here


def fragments(rast: torch.Tensor, faces_per_mesh: int | None = None) -> Fragments:
    """Turn ``rast`` from :func:`occrecon.render.rasterize` into PyTorch3D's ``Fragments`` layout.

    Args:
        rast: ``[B, H, W, 4]`` = (u, v, z/w, triangle_id + 1), nvdiffrast layout (row 0 = bottom).
        faces_per_mesh: if given, ``pix_to_face`` holds PyTorch3D's *packed* face index ``b * faces_per_mesh + f``
            (instanced mode: every image rasterizes the same ``tri``); otherwise the index into ``tri`` itself.

    Returns:
        :class:`Fragments` in PyTorch3D's row order (row 0 = TOP, so the rows are flipped; columns are kept):
        ``pix_to_face`` int64 with -1 on empty pixels and wherever ``rast[..., 3]`` holds no triangle id (0,
        negative, NaN, inf; ids are decoded as nvdiffrast encodes them, exact beyond 2^24 triangles: see
        :func:`occrecon.render.triangle_index`), ``zbuf`` = z/w (NDC depth; PyTorch3D stores view-space z, so
        compare depths, not values), ``bary_coords`` = (u, v, 1 - u - v), the weights of ``tri[f, 0]``,
        ``tri[f, 1]``, ``tri[f, 2]``, -1 on empty pixels, ``dists`` = None.
    """
    _checks.tensor("rast", rast)
    if rast.dim() != 4 or rast.shape[3] != 4:
        raise ValueError(f"rast must be [B, H, W, 4], got shape {tuple(rast.shape)}")
    _checks.floating("rast", rast)
    flipped = rast.flip(1)
    face = triangle_index(flipped[..., 3].detach())  # -1 for empty pixels and for values that are no id
    empty = face < 0
    if faces_per_mesh is not None:
        if isinstance(faces_per_mesh, bool) or not isinstance(faces_per_mesh, int) or faces_per_mesh < 1:
            raise ValueError(f"faces_per_mesh must be a positive int or None, got {faces_per_mesh!r}")
        offset = torch.arange(rast.shape[0], device=rast.device).view(-1, 1, 1) * int(faces_per_mesh)
        face = torch.where(empty, face, face + offset)
    u, v = flipped[..., 0], flipped[..., 1]
    bary = torch.stack([u, v, 1 - u - v], -1)
    minus_one = torch.full_like(u, -1.0)
    bary = torch.where(empty[..., None], minus_one[..., None].expand_as(bary), bary)
    zbuf = torch.where(empty, minus_one, flipped[..., 2])
    return Fragments(face.unsqueeze(-1), zbuf.unsqueeze(-1), bary.unsqueeze(-2), None)
