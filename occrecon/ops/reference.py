"""Pure-PyTorch reference implementations of the compiled ops: readable, slow, obviously correct.

Tests compare the kernels against these; benchmarks measure the kernels beside them. Each reference follows the
same documented conventions as its kernel (tie-breaking, empty-candidate handling, NaN propagation).

The rasterizer references (:func:`rasterize`, :func:`interpolate`, :func:`fragments`) follow nvdiffrast's
conventions as pinned in ``shared/golden/README.md``, except for the clipping policy documented in
:func:`rasterize`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .triangle_id import encode_triangle_id, triangle_index

__all__ = ["neighbour_min", "rasterize", "interpolate", "fragments", "sh_basis", "sh_shade", "vertex_normals"]


def neighbour_min(target: torch.Tensor, render: torch.Tensor, k: int = 3,
                  region: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`occrecon.ops.neighbour_min` in the fast plain-PyTorch form.

    Pads the render (and region) by r = k // 2, takes the k*k shifted slices, computes the squared distance of
    each to the target, and reduces with ``torch.min`` over the window axis (first minimum wins; NaN
    propagates). It materialises a ``(k*k, B, H, W)`` stack: memory O(k^2 * B * H * W).
    """
    b, c, h, w = target.shape
    r = k // 2
    padded = F.pad(render, (r, r, r, r))
    inside = torch.zeros((b, h + 2 * r, w + 2 * r), dtype=torch.bool, device=target.device)
    inside[:, r:r + h, r:r + w] = True if region is None else (region.reshape(b, h, w) > 0.5 if region.dtype != torch.bool
                                                                 else region.reshape(b, h, w))
    dists, valids = [], []
    for dy in range(k):
        for dx in range(k):
            shifted = padded[:, :, dy:dy + h, dx:dx + w]
            dists.append(((target - shifted) ** 2).sum(dim=1))
            valids.append(inside[:, dy:dy + h, dx:dx + w])
    dist = torch.stack(dists)
    valid = torch.stack(valids)
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))
    # NaN must win over inf placeholders and real values alike: torch.min propagates NaN with its index.
    d2, idx = torch.min(dist, dim=0)
    any_valid = valid.any(dim=0)
    # Every valid candidate at +inf ties with the invalid placeholders: the winner is the first valid candidate (as
    # in the kernel), never a window cell outside the image or the region.
    first_valid = valid.to(torch.uint8).argmax(dim=0)
    idx = torch.where(d2 == float("inf"), first_valid, idx)
    d2 = torch.where(any_valid, d2, torch.zeros_like(d2))
    idx = torch.where(any_valid, idx, torch.full_like(idx, -1))
    return d2, idx


# ------------------------------------------------------------------------------------------------ rasterizer
# Snapped vertex coordinates beyond this many 1/16-px units drop the triangle: edge-function products of such
# coordinates stay below 2^62, so int64 arithmetic is exact. nvdiffrast clips these triangles to its guard band.
_FIXED_LIMIT = 1 << 30
# Bound on (triangles in a chunk) x (pixels) for the brute-force coverage pass.
_CHUNK_ELEMENTS = 1 << 21


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution, ranges: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for nvdiffrast's ``rasterize`` (brute force: every pixel against every triangle).

    ``pos`` is clip space, ``[B, V, 4]`` (instanced: all of ``tri`` drawn in every image) or ``[V, 4]`` with
    ``ranges`` ``[B, 2]`` = (first triangle, count) per image (range mode). ``tri`` is ``[F, 3]`` (integer).
    ``resolution`` = (H, W). Returns ``rast [B, H, W, 4]`` = (u, v, z/w, triangle_id + 1) and
    ``rast_db [B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY), both all-zero on empty pixels and of ``pos``'s dtype.
    Triangle ids are indices into ``tri`` (global in range mode). Row 0 is the bottom row (y/w = -1 side).

    Coverage (exactly reproducible, independent of the float dtype): each vertex snaps to 1/16 px fixed point,
    ``X = rint_half_even(float32(float32(x * float32(1/w)) * 8W))`` (likewise Y with 8H), origin at the image
    centre; pixel (i, j) samples its centre (16i + 8 - 8W, 16j + 8 - 8H); int64 edge functions decide, with the
    fill rule that a sample exactly on an edge belongs to the triangle for which that edge is a left or bottom
    (lower-row) edge. Both windings are drawn.

    Dropped triangles (never drawn): a vertex with w <= 0 or any non-finite coordinate; all three vertices outside
    the same frustum plane (x > w, x < -w, y > w, y < -w, z > w, z < -w); a snapped coordinate beyond
    +-2^30; zero snapped area. Nothing is clipped: x/y outside the screen are simply not covered, and a fragment
    whose z/w at the pixel centre lies outside [-1, 1] (or is NaN) is discarded.

    Visibility: the smallest z/w at the pixel centre wins; exact ties go to the lower triangle index.

    Values, at the pixel centre's NDC (x, y) = ((2i+1)/W - 1, (2j+1)/H - 1) rounded to ``pos``'s dtype, with
    p~_k = (x_k - x w_k, y_k - y w_k): a0 = p~1 x p~2, a1 = p~2 x p~0, a2 = p~0 x p~1, u = a0 / (a0+a1+a2),
    v = a1 / (a0+a1+a2) (u weights tri[:, 0], v tri[:, 1], 1-u-v tri[:, 2]), z/w = sum z_k a_k / sum w_k a_k.
    Output clamps: u, v to [0, 1], both divided by u + v when u + v > 1; z/w to [-1, 1]. rast_db is the analytic
    pixel derivative of the perspective-correct barycentrics, evaluated as nvdiffrast does with the clamped u, v:
    du/dX = (2/W) (da0/dx - u dat/dx) / at (at = a0+a1+a2, x the NDC coordinate), likewise for Y with 2/H.

    Gradients (autograd): rast reaches ``pos`` through u and v only, with the clamps treated as the identity and
    no epsilon; z/w and the id get none; rast_db is differentiable w.r.t. ``pos`` as well.
    """
    h, w = (int(n) for n in resolution)
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution must be positive, got {(h, w)}")
    if pos.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"pos must be float32 or float64, got {pos.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3 or tri.is_floating_point():
        raise ValueError(f"tri must be an integer [F, 3] tensor, got {tuple(tri.shape)} {tri.dtype}")
    tri = tri.to(device=pos.device, dtype=torch.long)
    n_tri = tri.shape[0]
    if ranges is None:
        if pos.dim() != 3 or pos.shape[-1] != 4:
            raise ValueError(f"pos must be [B, V, 4] in instanced mode, got {tuple(pos.shape)}")
        images = [(pos[b], 0, n_tri) for b in range(pos.shape[0])]
    else:
        if pos.dim() != 2 or pos.shape[-1] != 4:
            raise ValueError(f"pos must be [V, 4] in range mode, got {tuple(pos.shape)}")
        if ranges.dim() != 2 or ranges.shape[1] != 2:
            raise ValueError(f"ranges must be [B, 2], got {tuple(ranges.shape)}")
        images = []
        for first, count in ranges.tolist():
            if first < 0 or count < 0 or first + count > n_tri:
                raise ValueError(f"range (first={first}, count={count}) outside the {n_tri} triangles")
            images.append((pos, first, count))
    if n_tri and (int(tri.min()) < 0 or int(tri.max()) >= pos.shape[-2]):
        raise ValueError("tri holds vertex indices outside pos")

    rasts, dbs = [], []
    for pos_b, first, count in images:
        rast_b, db_b = _rasterize_image(pos_b, tri, first, count, h, w)
        rasts.append(rast_b)
        dbs.append(db_b)
    if not rasts:
        empty = pos.new_zeros((0, h, w, 4))
        return empty, empty.clone()
    return torch.stack(rasts), torch.stack(dbs)


def _pixel_centres_ndc(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """NDC coordinate (2i+1)/n - 1 of pixel centres i = 0..n-1 (computed in float64, rounded to ``dtype``)."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    return ((2 * i + 1) / n - 1).to(dtype)


def _pixel_centres_fixed(n: int, device) -> torch.Tensor:
    """The same pixel centres in 1/16-px fixed point, origin at the image centre: 16i + 8 - 8n (exact)."""
    return 16 * torch.arange(n, dtype=torch.long, device=device) + 8 - 8 * n


def _snap(coord: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
    """float32(float32(coord * float32(1/w)) * 8n), rounded half to even: the fixed-point coordinate, as a float
    (inf/NaN stay visible to the caller)."""
    coord32, w32 = coord.to(torch.float32), w.to(torch.float32)
    inv_w = 1.0 / w32
    return torch.round((coord32 * inv_w) * float(8 * n))


def _triangle_setup(verts: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coverage set-up of triangles ``verts [F, 3, 4]``.

    Returns ``drawn [F]`` (False for dropped triangles, see :func:`rasterize`) and the snapped fixed-point vertex
    coordinates ``X, Y [F, 3]`` (int64), reordered counter-clockwise (y up) so that inside means every edge
    function is positive. Coordinates of dropped triangles are zero.
    """
    x, y, z, cw = verts.unbind(-1)
    drawn = torch.isfinite(verts).all(dim=(1, 2)) & (cw > 0).all(dim=1)
    for c in (x, y, z):
        drawn &= ~((c > cw).all(dim=1) | (c < -cw).all(dim=1))
    fx, fy = _snap(x, cw, w), _snap(y, cw, h)
    drawn &= ((fx.abs() <= _FIXED_LIMIT) & (fy.abs() <= _FIXED_LIMIT)).all(dim=1)  # also rejects inf and NaN
    keep = drawn[:, None]
    X = torch.where(keep, fx, torch.zeros_like(fx)).to(torch.long)
    Y = torch.where(keep, fy, torch.zeros_like(fy)).to(torch.long)
    area2 = (X[:, 1] - X[:, 0]) * (Y[:, 2] - Y[:, 0]) - (Y[:, 1] - Y[:, 0]) * (X[:, 2] - X[:, 0])
    drawn &= area2 != 0
    clockwise = (area2 < 0)[:, None]
    ccw = torch.tensor([0, 2, 1], device=verts.device)
    X = torch.where(clockwise, X[:, ccw], X)
    Y = torch.where(clockwise, Y[:, ccw], Y)
    return drawn, X, Y


def _coverage(X: torch.Tensor, Y: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """``covered [F, H, W]`` for counter-clockwise fixed-point triangles ``X, Y [F, 3]`` at samples ``sx [W]``,
    ``sy [H]``. Edge a -> b, d = b - a: E(s) = d x (s - a) > 0 inside. A sample with E = 0 belongs to the triangle
    when the edge is a left edge (d_y < 0: going down, interior to its right) or a bottom edge (d_y = 0, d_x > 0:
    interior above it); on right and top edges it does not. A shared edge runs the other way in its neighbour, so
    exactly one of the two owns the samples on it."""
    covered = None
    for k in range(3):
        ax, ay = X[:, k, None, None], Y[:, k, None, None]
        dx = X[:, (k + 1) % 3, None, None] - ax
        dy = Y[:, (k + 1) % 3, None, None] - ay
        owns_edge = ((dy < 0) | ((dy == 0) & (dx > 0))).long()
        # E is an integer, so "E > 0, or E == 0 on an owned edge" is E + owns_edge > 0. The owns_edge term joins the
        # [F, H, 1] factor, so that only one subtraction and one comparison run at full [F, H, W] size.
        inside = (dx * (sy[None, :, None] - ay) + owns_edge) - dy * (sx[None, None, :] - ax) > 0
        covered = inside if covered is None else covered & inside
    return covered


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def _clip_weights(verts: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor
                  ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """For triangles ``verts [N, 3, 4]`` and pixel-centre NDC ``fx, fy [N]``: p~_k = (x_k - fx w_k, y_k - fy w_k)
    and (a0, a1, a2) = (p~1 x p~2, p~2 x p~0, p~0 x p~1). Returns ((px, py), (a0, a1, a2))."""
    cw = verts[..., 3]
    px = verts[..., 0] - fx[:, None] * cw
    py = verts[..., 1] - fy[:, None] * cw
    a = tuple(_cross(px[:, i], py[:, i], px[:, j], py[:, j]) for i, j in ((1, 2), (2, 0), (0, 1)))
    return (px, py), a


def _depth(verts: torch.Tensor, a: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """z/w = sum z_k a_k / sum w_k a_k."""
    z = a[0] * verts[:, 0, 2] + a[1] * verts[:, 1, 2] + a[2] * verts[:, 2, 2]
    cw = a[0] * verts[:, 0, 3] + a[1] * verts[:, 1, 3] + a[2] * verts[:, 2, 3]
    return z / cw


def _clamp_identity_grad(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: u, v clamped to [0, 1], then both divided by u + v when u + v > 1. Backward: the identity."""
    uc, vc = u.clamp(0, 1), v.clamp(0, 1)
    s = uc + vc
    over = s > 1
    uc = torch.where(over, uc / s, uc)
    vc = torch.where(over, vc / s, vc)
    return u + (uc - u).detach(), v + (vc - v).detach()


def _rasterize_image(pos_b: torch.Tensor, tri: torch.Tensor, first: int, count: int, h: int, w: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: triangles tri[first:first+count] over vertices pos_b [V, 4]."""
    device, dtype = pos_b.device, pos_b.dtype
    ndc_x, ndc_y = _pixel_centres_ndc(w, dtype, device), _pixel_centres_ndc(h, dtype, device)
    n_pix = h * w

    # Visibility, no gradient: every (pixel, triangle) fragment that passes coverage and the depth range.
    with torch.no_grad():
        verts = pos_b.detach()[tri[first:first + count]]  # [count, 3, 4]
        drawn, X, Y = _triangle_setup(verts, h, w)
        sx, sy = _pixel_centres_fixed(w, device), _pixel_centres_fixed(h, device)
        frag_pix, frag_tri, frag_z = [], [], []
        chunk = max(1, _CHUNK_ELEMENTS // n_pix)
        for lo in range(0, count, chunk):
            sel = torch.arange(lo, min(lo + chunk, count), device=device)
            sel = sel[drawn[sel]]
            if sel.numel() == 0:
                continue
            f, j, i = _coverage(X[sel], Y[sel], sx, sy).nonzero(as_tuple=True)
            tv = verts[sel[f]]
            _, a = _clip_weights(tv, ndc_x[i], ndc_y[j])
            zw = _depth(tv, a)
            in_range = (zw >= -1) & (zw <= 1)  # also discards NaN
            frag_pix.append((j * w + i)[in_range])
            frag_tri.append((sel[f] + first)[in_range])
            frag_z.append(zw[in_range])
        if frag_pix:
            frag_pix, frag_tri, frag_z = torch.cat(frag_pix), torch.cat(frag_tri), torch.cat(frag_z)
        else:
            frag_pix = frag_tri = torch.zeros(0, dtype=torch.long, device=device)
            frag_z = torch.zeros(0, dtype=dtype, device=device)
        # Depth test: smallest z/w per pixel, then the lowest triangle index among the fragments at that depth.
        zbuf = torch.full((n_pix,), float("inf"), dtype=dtype, device=device)
        zbuf = zbuf.scatter_reduce(0, frag_pix, frag_z, "amin")
        at_min = frag_z == zbuf[frag_pix]
        no_tri = tri.shape[0]
        winner = torch.full((n_pix,), no_tri, dtype=torch.long, device=device)
        winner = winner.scatter_reduce(0, frag_pix[at_min], frag_tri[at_min], "amin")
        pix = (winner < no_tri).nonzero(as_tuple=True)[0]
        t = winner[pix]
        zw = zbuf[pix].clamp(-1, 1)

    # Values of the winning triangles at their pixels, differentiable w.r.t. pos_b.
    verts = pos_b[tri[t]]  # [N, 3, 4]
    fx, fy = ndc_x[pix % w], ndc_y[pix // w]
    (px, py), (a0, a1, a2) = _clip_weights(verts, fx, fy)
    at = a0 + a1 + a2
    u, v = _clamp_identity_grad(a0 / at, a1 / at)
    # Pixel derivatives: d p~_k / dx = (-w_k, 0), d p~_k / dy = (0, -w_k); product rule on each cross product.
    cw, zero = verts[..., 3], torch.zeros_like(verts[..., 3])
    derivs = []
    for dpx, dpy, scale in ((-cw, zero, 2.0 / w), (zero, -cw, 2.0 / h)):
        da0, da1, da2 = (_cross(dpx[:, i], dpy[:, i], px[:, j], py[:, j])
                         + _cross(px[:, i], py[:, i], dpx[:, j], dpy[:, j]) for i, j in ((1, 2), (2, 0), (0, 1)))
        dat = da0 + da1 + da2
        derivs.append(((da0 - u * dat) / at * scale, (da1 - v * dat) / at * scale))
    (dudx, dvdx), (dudy, dvdy) = derivs

    vals = torch.stack([u, v, zw, encode_triangle_id(t, dtype)], dim=-1)
    rast = pos_b.new_zeros((n_pix, 4)).index_put((pix,), vals)
    rast_db = pos_b.new_zeros((n_pix, 4)).index_put((pix,), torch.stack([dudx, dudy, dvdx, dvdy], dim=-1))
    return rast.reshape(h, w, 4), rast_db.reshape(h, w, 4)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, rast_db: torch.Tensor | None = None,
                diff_attrs=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for nvdiffrast's ``interpolate``.

    ``attr`` is ``[B, V, C]``, or ``[1, V, C]`` / ``[V, C]`` broadcast over the batch (``[V, C]`` is the form for
    range mode, where triangle ids are global). ``out [B, H, W, C] = u A[t0] + v A[t1] + (1 - u - v) A[t2]`` with
    (u, v) = rast[..., :2] and t the triangle of rast[..., 3] - 1; 0 on pixels whose id does not name a triangle of
    ``tri`` (0 = empty). ``diff_attrs`` = 'all' or a list of attribute indices (negative ones count from the end)
    selects attributes whose screen-space derivatives are returned as ``out_da [B, H, W, 2 * len]``, interleaved
    per attribute as (dA/dX, dA/dY) = ((A0-A2) du/dX + (A1-A2) dv/dX, (A0-A2) du/dY + (A1-A2) dv/dY) from
    ``rast_db``; without it ``out_da`` is an empty ``[B, H, W, 0]`` tensor. Differentiable w.r.t. ``attr``,
    ``rast[..., :2]`` and ``rast_db``.
    """
    if rast.dim() != 4 or rast.shape[-1] != 4:
        raise ValueError(f"rast must be [B, H, W, 4], got {tuple(rast.shape)}")
    b, h, w, _ = rast.shape
    if attr.dim() == 2:
        attr = attr[None]
    if attr.dim() != 3 or attr.shape[0] not in (1, b):
        raise ValueError(f"attr must be [B, V, C], [1, V, C] or [V, C] with B = {b}, got {tuple(attr.shape)}")
    attr = attr.expand(b, -1, -1)
    tri = tri.to(device=rast.device, dtype=torch.long)
    n_attr = attr.shape[-1]

    n_tri = tri.shape[0]
    tid = triangle_index(rast[..., 3].detach())
    covered = (tid >= 0) & (tid < n_tri)
    # Pixels that name no triangle read an appended dummy triangle (vertex 0) and are zeroed below.
    t = torch.where(covered, tid, torch.full_like(tid, n_tri))
    vidx = torch.cat([tri, tri.new_zeros((1, 3))])[t]  # [B, H, W, 3]
    # a triangle that names a vertex outside [0, V) draws nothing (as in the kernels)
    inside = ((vidx >= 0) & (vidx < attr.shape[1])).all(-1)
    covered = covered & inside
    vidx = torch.where(covered[..., None], vidx, torch.zeros_like(vidx))
    batch = torch.arange(b, device=rast.device)[:, None, None]
    a0, a1, a2 = (attr[batch, vidx[..., k]] for k in range(3))  # each [B, H, W, C]
    u, v = rast[..., 0:1], rast[..., 1:2]
    mask = covered[..., None]
    out = torch.where(mask, u * a0 + v * a1 + (1 - u - v) * a2, torch.zeros_like(a0))

    if diff_attrs is None:
        return out, out.new_zeros((b, h, w, 0))
    if rast_db is None:
        raise ValueError("diff_attrs needs rast_db")
    if diff_attrs == "all":
        sel = list(range(n_attr))
    else:
        sel = []
        for i in diff_attrs:
            if not -n_attr <= int(i) < n_attr:
                raise IndexError(f"diff_attrs index {i} out of range for {n_attr} attributes")
            sel.append(int(i) % n_attr)
    sel = torch.tensor(sel, dtype=torch.long, device=rast.device)
    d0, d1 = (a0 - a2)[..., sel], (a1 - a2)[..., sel]
    dudx, dudy, dvdx, dvdy = (rast_db[..., k:k + 1] for k in range(4))
    da = torch.stack([d0 * dudx + d1 * dvdx, d0 * dudy + d1 * dvdy], dim=-1)  # [B, H, W, n, 2]
    da = torch.where(mask[..., None], da, torch.zeros_like(da))
    return out, da.reshape(b, h, w, 2 * sel.numel())


def fragments(rast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
    """PyTorch3D ``Fragments``-style view of ``rast`` (one face per pixel), row 0 = TOP (rows flipped).

    Returns ``pix_to_face (B, H, W, 1)`` int64 (triangle id, -1 = empty), ``zbuf (B, H, W, 1)`` (z/w, -1 on empty
    pixels), ``bary_coords (B, H, W, 1, 3)`` = (u, v, 1 - u - v) weighting (tri[:, 0], tri[:, 1], tri[:, 2]),
    -1 on empty pixels, and ``dists = None``. Differentiable w.r.t. rast's (u, v) and z/w.
    """
    rast = rast.flip(1)
    pix_to_face = triangle_index(rast[..., 3:4].detach())
    covered = pix_to_face >= 0
    minus_one = torch.full_like(rast[..., 2:3], -1)
    zbuf = torch.where(covered, rast[..., 2:3], minus_one)
    u, v = rast[..., 0:1], rast[..., 1:2]
    bary = torch.where(covered, torch.cat([u, v, 1 - u - v], dim=-1), minus_one)
    return pix_to_face, zbuf, bary[..., None, :], None


# ------------------------------------------------------------------------------------------------- sh_shade
def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Deep3D's 9 SH basis functions with the Lambertian constants folded in: ``(..., 3) -> (..., 9)``.

    a = [pi, 2 pi / sqrt(3), 2 pi / sqrt(8)], c = [1 / sqrt(4 pi), sqrt(3) / sqrt(4 pi), 3 sqrt(5) / sqrt(12 pi)];
    order and signs as Deep3D's ``compute_color``: 1, -y, z, -x, xy, -yz, (3z^2 - 1) / (2 sqrt 3), -xz,
    (x^2 - y^2) / 2, scaled by a0 c0, a1 c1 (x3), a2 c2 (x5).
    """
    a = [math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)]
    c = [1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)]
    x, y, z = normals.unbind(-1)
    return torch.stack([
        a[0] * c[0] * torch.ones_like(x),
        -a[1] * c[1] * y,
        a[1] * c[1] * z,
        -a[1] * c[1] * x,
        a[2] * c[2] * x * y,
        -a[2] * c[2] * y * z,
        0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * z ** 2 - 1),
        -a[2] * c[2] * x * z,
        0.5 * a[2] * c[2] * (x ** 2 - y ** 2),
    ], dim=-1)


def sh_shade(normals: torch.Tensor, albedo: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`occrecon.ops.sh_shade`: ``albedo * (Y(n) @ gamma)`` with plain autograd.

    ``normals (B, ..., 3)``; ``albedo`` broadcastable to it; ``gamma (B, 9, 3)`` or flat ``(B, 27)`` =
    [R9 | G9 | B9]. Materialises the ``(B, ..., 9)`` basis.
    """
    b = normals.shape[0]
    if gamma.dim() == 2:
        gamma = gamma.reshape(b, 3, 9).transpose(1, 2)
    y = sh_basis(normals)                                       # (B, ..., 9)
    flat = y.reshape(b, -1, 9)
    light = torch.bmm(flat, gamma).reshape(normals.shape)     # (B, ..., 3)
    return albedo * light


def vertex_normals(vertices: torch.Tensor, tri: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Reference for :func:`occrecon.ops.vertex_normals`: face cross products scattered with ``index_add``,
    normalised with ``clamp_min(eps)``; plain autograd (differentiable to any order).

    ``vertices (B, V, 3)`` or ``(V, 3)``, ``tri (F, 3)`` integer.
    """
    squeeze = vertices.dim() == 2
    v = vertices.unsqueeze(0) if squeeze else vertices
    t = tri.long()
    v0, v1, v2 = v[:, t[:, 0]], v[:, t[:, 1]], v[:, t[:, 2]]
    face = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), |face| = 2 * area
    acc = torch.zeros_like(v)
    for k in range(3):
        acc = acc.index_add(1, t[:, k], face)
    n = acc / acc.norm(dim=-1, keepdim=True).clamp_min(eps)
    return n[0] if squeeze else n
