"""A PyTorch3D-style view of a rasterization, so code written against PyTorch3D's ``Fragments`` can use ours.

Two conventions:

- ``"nvdiffrast"`` (default, one face per pixel): PyTorch3D's layout of nvdiffrast's values (rows flipped to
  row 0 = top, ``zbuf`` = z/w, ``dists`` None): a cheap view for hard shaders.
- ``"pytorch3d"``: what ``pytorch3d.renderer.mesh.rasterize_meshes`` (through ``MeshRasterizer``) returns, from our
  rasterizer's layers (:class:`~occrecon.render.DepthPeeler` for K > 1 faces per pixel): PyTorch3D's NDC (+X
  left, +Y up, the shorter image side spanning [-1, 1] and the longer [-r, r]), ``zbuf`` the view-space depth of
  the surface point (the clip ``w`` of a perspective camera, perspective-correct, differentiable in ``pos``),
  perspective-correct ``bary_coords``, and ``dists`` the signed squared distance in that NDC from the pixel centre
  to the face's nearest edge (negative inside, as PyTorch3D's), differentiable in ``pos``, so that soft
  shaders (``sigmoid(-dists / sigma)``, ``softmax_rgb_blend``) work; entries past the K-th face, or on empty
  pixels, are -1 as in PyTorch3D.

Only pixels whose centre a face covers are recorded (PyTorch3D with ``blur_radius = 0``): the blur radius that
lets PyTorch3D also record faces near a pixel is not implemented.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..ops import _checks
from ..ops.triangle_id import triangle_index

__all__ = ["Fragments", "fragments", "rasterize_fragments"]

CONVENTIONS = ("nvdiffrast", "pytorch3d")


class Fragments(NamedTuple):
    """Same fields as ``pytorch3d.renderer.mesh.rasterizer.Fragments``; K faces per pixel."""

    pix_to_face: torch.Tensor  # (B, H, W, K) int64, -1 = empty
    zbuf: torch.Tensor  # (B, H, W, K), -1 = empty
    bary_coords: torch.Tensor  # (B, H, W, K, 3), -1 = empty
    dists: torch.Tensor | None  # (B, H, W, K) signed squared edge distance (pytorch3d convention), else None

    def detach(self) -> Fragments:
        """The same fragments cut from the autograd graph (PyTorch3D's ``Fragments.detach``)."""
        return Fragments(*(None if t is None else t.detach() for t in self))


def _layers(rast) -> list[torch.Tensor]:
    items = [rast] if isinstance(rast, torch.Tensor) else list(rast) if isinstance(rast, (list, tuple)) else None
    if not items:
        raise TypeError(f"rast must be a [B, H, W, 4] tensor or a non-empty list of them (depth-peeled layers), "
                        f"got {type(rast).__name__}")
    for k, r in enumerate(items):
        name = "rast" if len(items) == 1 else f"rast[{k}]"
        _checks.tensor(name, r)
        if r.dim() != 4 or r.shape[3] != 4:
            raise ValueError(f"{name} must be [B, H, W, 4], got shape {tuple(r.shape)}")
        _checks.floating(name, r)
        if r.shape != items[0].shape or r.dtype != items[0].dtype or r.device != items[0].device:
            raise ValueError(f"{name} must match rast[0] ({tuple(items[0].shape)} {items[0].dtype}), got "
                             f"{tuple(r.shape)} {r.dtype}")
    return items


def _seg_dist2(px, py, ax, ay, bx, by):
    """Squared distance from points p to segments ab (PyTorch3D's ``point_line_distance``)."""
    ex, ey = bx - ax, by - ay
    l2 = ex * ex + ey * ey
    t = ((px - ax) * ex + (py - ay) * ey) / l2.clamp_min(1e-30)
    t = torch.where(l2 > 1e-8, t.clamp(0, 1), torch.ones_like(t))  # a degenerate edge: distance to its end
    dx, dy = ax + t * ex - px, ay + t * ey - py
    return dx * dx + dy * dy


def fragments(rast: torch.Tensor | Sequence[torch.Tensor], faces_per_mesh: int | None = None, *,
              convention: str = "nvdiffrast", pos: torch.Tensor | None = None,
              tri: torch.Tensor | None = None) -> Fragments:
    """Turn ``rast`` (or a list of depth-peeled layers) from :func:`occrecon.render.rasterize` into ``Fragments``.

    Args:
        rast: ``[B, H, W, 4]`` = (u, v, z/w, triangle_id + 1) in nvdiffrast's layout (row 0 = bottom), or a list of
            K such layers from :class:`~occrecon.render.DepthPeeler` (K faces per pixel, nearest first).
        faces_per_mesh: if given, ``pix_to_face`` holds PyTorch3D's *packed* face index ``b * faces_per_mesh + f``
            (instanced mode: every image rasterizes the same ``tri``); otherwise the index into ``tri`` itself.
        convention: ``"nvdiffrast"`` or ``"pytorch3d"`` (module docstring).
        pos, tri: the clip-space positions ``[B, V, 4]`` and triangles given to ``rasterize``: needed by the
            ``"pytorch3d"`` convention (view depth and edge distances are computed from them).

    Returns:
        :class:`Fragments` in PyTorch3D's row order (row 0 = top; columns kept): ``pix_to_face`` int64, -1 on
        empty pixels and wherever ``rast[..., 3]`` holds no triangle id; ``bary_coords`` (u, v, 1 − u − v), the
        weights of ``tri[f, 0]``, ``tri[f, 1]``, ``tri[f, 2]``; ``zbuf`` z/w (``"nvdiffrast"``) or view-space depth
        (``"pytorch3d"``); ``dists`` None or the signed squared edge distance; -1 on empty entries.
        Differentiable through ``rast``'s (u, v) (and z/w), and, in the ``"pytorch3d"`` convention, in ``pos``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    layers = _layers(rast)
    if faces_per_mesh is not None and (isinstance(faces_per_mesh, bool) or not isinstance(faces_per_mesh, int)
                                       or faces_per_mesh < 1):
        raise ValueError(f"faces_per_mesh must be a positive int or None, got {faces_per_mesh!r}")
    stack = torch.stack(layers, 3).flip(1)  # [B, H, W, K, 4], row 0 = top
    face = triangle_index(stack[..., 3].detach())  # -1 for empty pixels and for values that are no id
    empty = face < 0
    u, v = stack[..., 0], stack[..., 1]
    minus_one = torch.full_like(u, -1.0)
    if convention == "nvdiffrast":
        zbuf, dists = torch.where(empty, minus_one, stack[..., 2]), None
    else:
        zbuf, dists = _pytorch3d_depth_and_dists(stack, face, empty, pos, tri)
    if faces_per_mesh is not None:
        offset = torch.arange(stack.shape[0], device=stack.device).view(-1, 1, 1, 1) * int(faces_per_mesh)
        face = torch.where(empty, face, face + offset)
    bary = torch.stack([u, v, 1 - u - v], -1)
    bary = torch.where(empty[..., None], minus_one[..., None].expand_as(bary), bary)
    return Fragments(face, zbuf, bary, dists)


def _pytorch3d_depth_and_dists(stack, face, empty, pos, tri):
    """View depth (perspective-correct w) and signed squared edge distances in PyTorch3D's NDC, per layer."""
    if pos is None or tri is None:
        raise ValueError("convention='pytorch3d' needs pos and tri (the clip-space positions and triangles given "
                         "to rasterize): the view depth and the edge distances are computed from them")
    _checks.tensor("pos", pos)
    _checks.tensor("tri", tri)
    b, h, w, k, _ = stack.shape
    if pos.dim() != 3 or pos.shape[0] != b or pos.shape[2] != 4:
        raise ValueError(f"pos must be [B, V, 4] with B = {b} (instanced mode), got shape {tuple(pos.shape)}")
    if pos.dtype != stack.dtype:
        raise TypeError(f"pos dtype {pos.dtype} must equal rast dtype {stack.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be [F, 3], got shape {tuple(tri.shape)}")
    nf = tri.shape[0]
    bad = face >= nf
    if bool(bad.any()):
        raise ValueError(f"rast names triangle {int(face.max())} but tri has {nf}")
    f = face.clamp_min(0).reshape(b, -1)  # [B, H*W*K]
    vid = tri.long()[f]  # [B, P, 3]
    verts = torch.gather(pos, 1, vid.reshape(b, -1, 1).expand(-1, -1, 4)).reshape(b, h, w, k, 3, 4)
    # empty entries read a harmless unit triangle instead of face 0 (whose w may be 0): no inf, no NaN gradient
    unit = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]], dtype=pos.dtype, device=pos.device)
    verts = torch.where(empty[..., None, None], unit, verts)
    u, v = stack[..., 0], stack[..., 1]
    wv = verts[..., 3]  # clip w = view depth of a perspective camera
    depth = u * wv[..., 0] + v * wv[..., 1] + (1 - u - v) * wv[..., 2]  # = 1 / interpolated (1 / w)
    # PyTorch3D's NDC: +X left, +Y up, the shorter side spanning [-1, 1]
    s = min(h, w)
    rx, ry = w / s, h / s
    ndc_x = -(verts[..., 0] / wv) * rx
    ndc_y = (verts[..., 1] / wv) * ry
    cols = torch.arange(w, device=stack.device, dtype=stack.dtype)
    rows = torch.arange(h, device=stack.device, dtype=stack.dtype)
    px = (-((2 * cols + 1) / w - 1) * rx).view(1, 1, w, 1).expand(b, h, w, k)
    py = (((2 * (h - 1 - rows) + 1) / h - 1) * ry).view(1, h, 1, 1).expand(b, h, w, k)  # row 0 = top
    d = torch.stack([_seg_dist2(px, py, ndc_x[..., i], ndc_y[..., i], ndc_x[..., j], ndc_y[..., j])
                     for i, j in ((0, 1), (0, 2), (1, 2))], -1).amin(-1)
    minus_one = torch.full_like(u, -1.0)
    return torch.where(empty, minus_one, depth), torch.where(empty, minus_one, -d)


def rasterize_fragments(glctx, pos: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int],
                        faces_per_pixel: int = 1, faces_per_mesh: int | None = None,
                        convention: str = "pytorch3d") -> Fragments:
    """Rasterize K = ``faces_per_pixel`` layers by depth peeling and return them as :class:`Fragments` (PyTorch3D's
    ``rasterize_meshes`` outputs, nearest face first; see :func:`fragments`)."""
    from .raster import DepthPeeler

    if isinstance(faces_per_pixel, bool) or not isinstance(faces_per_pixel, int) or faces_per_pixel < 1:
        raise ValueError(f"faces_per_pixel must be a positive int, got {faces_per_pixel!r}")
    with DepthPeeler(glctx, pos, tri, resolution) as peeler:
        layers = [peeler.rasterize_next_layer()[0] for _ in range(faces_per_pixel)]
    return fragments(layers, faces_per_mesh, convention=convention, pos=pos, tri=tri)
