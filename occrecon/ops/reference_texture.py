"""Pure-PyTorch reference of texture sampling (``occrecon.render.texture``), written from the documented conventions
(docs/rendering.md, "Texture sampling") independently of the kernel: every level flattened into one tensor and read
by gathers, the level of detail from ``torch.linalg.svdvals`` of the footprint, gradients by autograd. Slow; for
tests and benchmarks.
"""
from __future__ import annotations

import torch

__all__ = ["texture_reference", "mip_reference"]


def mip_reference(tex: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
    """Levels 1.. of ``tex [N, H, W, C]`` (or a cube map ``[N, 6, S, S, C]``, face by face) by average pooling
    (2 × 2, or 2 × 1 once an extent is 1)."""
    if tex.dim() == 5:
        n, f, h, w, c = tex.shape
        return [t.reshape(n, f, *t.shape[1:]) for t in mip_reference(tex.reshape(n * f, h, w, c), levels)]
    out, t = [], tex
    while (t.shape[1] > 1 or t.shape[2] > 1) and (levels is None or len(out) < levels):
        kh, kw = (2 if t.shape[1] > 1 else 1), (2 if t.shape[2] > 1 else 1)
        t = torch.nn.functional.avg_pool2d(t.permute(0, 3, 1, 2), (kh, kw)).permute(0, 2, 3, 1)
        out.append(t)
    return out


def _bilinear(flat, offs, hs, ws, n_img, lvl, u, v, boundary, c):
    """Bilinear samples ``[P, C]`` of per-pixel levels ``lvl [P]`` (long) from the flattened stack ``flat
    [Nt, total, C]``; ``offs``, ``hs``, ``ws`` per level; ``n_img [P]`` the texture index of each pixel."""
    h, w = hs[lvl].to(u.dtype), ws[lvl].to(u.dtype)
    valid = torch.isfinite(u) & torch.isfinite(v)
    u = torch.where(valid, u, torch.zeros_like(u))
    v = torch.where(valid, v, torch.zeros_like(v))
    if boundary == "wrap":
        u = u - torch.floor(u).detach()
        v = v - torch.floor(v).detach()
    x, y = u * w - 0.5, v * h - 0.5
    if boundary == "clamp":
        x = torch.minimum(torch.maximum(x, torch.zeros_like(x)), w - 1)
        y = torch.minimum(torch.maximum(y, torch.zeros_like(y)), h - 1)
    if boundary == "zero":
        valid = valid & (x >= -1) & (x <= w) & (y >= -1) & (y <= h)
        x = torch.where(valid, x, torch.zeros_like(x))
        y = torch.where(valid, y, torch.zeros_like(y))
    x0, y0 = torch.floor(x).detach(), torch.floor(y).detach()
    fu, fv = x - x0, y - y0
    out = 0
    hi, wi = hs[lvl], ws[lvl]
    for dj, wy in ((0, 1 - fv), (1, fv)):
        for di, wx in ((0, 1 - fu), (1, fu)):
            i, j = x0.long() + di, y0.long() + dj
            inside = torch.ones_like(valid)
            if boundary == "wrap":
                i, j = torch.remainder(i, wi), torch.remainder(j, hi)
            elif boundary == "clamp":
                i, j = torch.minimum(i, wi - 1), torch.minimum(j, hi - 1)
            else:
                inside = (i >= 0) & (i < wi) & (j >= 0) & (j < hi)
                i, j = i.clamp(min=0), j.clamp(min=0)
                i, j = torch.minimum(i, wi - 1), torch.minimum(j, hi - 1)
            idx = offs[lvl] + j * wi + i
            val = flat[n_img, idx]  # [P, C]
            out = out + (wx * wy * inside.to(u.dtype))[:, None] * val
    return out * valid.to(u.dtype)[:, None]


def texture_reference(tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor | None = None,
                      mip_level_bias: torch.Tensor | None = None, mip: list[torch.Tensor] | None = None,
                      filter_mode: str = "auto", boundary_mode: str = "wrap",
                      max_mip_level: int | None = None) -> torch.Tensor:
    """``occrecon.render.texture``'s result (same arguments; ``mip`` a list of levels 1.. or None)."""
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if (uv_da is not None or mip_level_bias is not None) else "linear"
    if max_mip_level == 0 and "mipmap" in filter_mode:
        filter_mode = "linear"
    if boundary_mode == "cube":
        return _cube_reference(tex, uv, uv_da, mip_level_bias, mip, filter_mode, max_mip_level)
    nt, hh, ww, c = tex.shape
    n, h, w, _ = uv.shape
    u, v = uv[..., 0].reshape(-1), uv[..., 1].reshape(-1)
    n_img = (torch.arange(n, device=uv.device).repeat_interleave(h * w) if nt > 1
             else torch.zeros(n * h * w, dtype=torch.long, device=uv.device))
    if filter_mode == "nearest":
        ok = torch.isfinite(u) & torch.isfinite(v)
        uu, vv = torch.where(ok, u, 0.0), torch.where(ok, v, 0.0)
        if boundary_mode == "wrap":
            uu, vv = uu - torch.floor(uu), vv - torch.floor(vv)
        i, j = torch.floor(uu * ww).long(), torch.floor(vv * hh).long()
        if boundary_mode == "zero":
            ok = ok & (i >= 0) & (i < ww) & (j >= 0) & (j < hh)
        i, j = i.clamp(0, ww - 1), j.clamp(0, hh - 1)
        out = tex[n_img, j, i] * ok.to(tex.dtype)[:, None]
        return out.reshape(n, h, w, c)
    levels = [tex]
    if "mipmap" in filter_mode:
        levels += list(mip) if mip is not None else mip_reference(tex, max_mip_level)
    lmax = len(levels) - 1
    flat = torch.cat([t.reshape(nt, -1, c) for t in levels], 1)
    sizes = [t.shape[1] * t.shape[2] for t in levels]
    offs = torch.tensor([sum(sizes[:k]) for k in range(len(levels))], device=uv.device)
    hs = torch.tensor([t.shape[1] for t in levels], device=uv.device)
    ws = torch.tensor([t.shape[2] for t in levels], device=uv.device)
    zeros = torch.zeros_like(u, dtype=torch.long)
    if "mipmap" not in filter_mode:
        return _bilinear(flat, offs, hs, ws, n_img, zeros, u, v, boundary_mode, c).reshape(n, h, w, c)
    lod = torch.zeros_like(u)
    if uv_da is not None:
        da = uv_da.reshape(-1, 4)
        jac = torch.stack([torch.stack([da[:, 0] * ww, da[:, 1] * ww], -1),
                           torch.stack([da[:, 2] * hh, da[:, 3] * hh], -1)], -2)  # [[du/dX, du/dY], [dv/dX, dv/dY]]
        lod = torch.log2(torch.linalg.svdvals(jac)[:, 0])
    if mip_level_bias is not None:
        lod = lod + mip_level_bias.reshape(-1)
    lod = torch.nan_to_num(lod, nan=0.0).clamp(0, lmax)
    l0 = torch.floor(lod).detach().long()
    a = _bilinear(flat, offs, hs, ws, n_img, l0, u, v, boundary_mode, c)
    if filter_mode == "linear-mipmap-nearest":
        return a.reshape(n, h, w, c)
    l1 = torch.clamp(l0 + 1, max=lmax)
    b = _bilinear(flat, offs, hs, ws, n_img, l1, u, v, boundary_mode, c)
    f = (lod - l0.to(lod.dtype))[:, None]
    return (a + f * (b - a)).reshape(n, h, w, c)


# ----------------------------------------------------------------------------------------------- cube maps
#: per face (+X, -X, +Y, -Y, +Z, -Z): major axis, its sign, the axis and sign of s, the axis and sign of t
#: (OpenGL's cube-map table: e.g. +X: s = 0.5 - z / 2|x|, t = 0.5 - y / 2|x|)
_FACES = torch.tensor([[0, 1, 2, -1, 1, -1], [0, -1, 2, 1, 1, -1], [1, 1, 0, 1, 2, 1],
                       [1, -1, 0, 1, 2, -1], [2, 1, 0, 1, 1, -1], [2, -1, 0, -1, 1, -1]])


def _cube_face(d):
    """Face index of directions ``d [P, 3]`` (ties: X over Y over Z as the table's order says)."""
    a = d.detach().abs()
    axis = torch.where(a[:, 2] > torch.maximum(a[:, 0], a[:, 1]), 2, torch.where(a[:, 1] > a[:, 0], 1, 0))
    neg = torch.gather(d.detach(), 1, axis[:, None])[:, 0] < 0
    return 2 * axis + neg.long()


def _cube_st(d, face):
    """(s, t) of directions on their (given) faces, differentiable in ``d``."""
    tab = _FACES.to(d.device)[face]
    m = torch.gather(d, 1, tab[:, 0:1])[:, 0]
    u1 = torch.gather(d, 1, tab[:, 2:3])[:, 0]
    u2 = torch.gather(d, 1, tab[:, 4:5])[:, 0]
    return 0.5 + tab[:, 3] * u1 / (2 * m.abs()), 0.5 + tab[:, 5] * u2 / (2 * m.abs())


def _cube_texel(face, i, j, size):
    """The texel (face, i, j) a tap (i, j in [-1, S]) of ``face`` reads: itself inside, the neighbouring face's
    edge texel beyond one edge (the tap centre on the face's plane folded over that edge), and -1 beyond a corner."""
    dt = torch.float64
    tab = _FACES.to(face.device)[face]
    q1 = (2 * (i.to(dt) + 0.5) / size - 1) * tab[:, 3]
    q2 = (2 * (j.to(dt) + 0.5) / size - 1) * tab[:, 5]
    d = torch.zeros(face.shape[0], 3, dtype=dt, device=face.device)
    d.scatter_(1, tab[:, 0:1], tab[:, 1:2].to(dt))
    d.scatter_(1, tab[:, 2:3], q1[:, None])
    d.scatter_(1, tab[:, 4:5], q2[:, None])
    in_i, in_j = (i >= 0) & (i < size), (j >= 0) & (j < size)
    fold_axis = torch.where(in_i, tab[:, 4], tab[:, 2])
    q = torch.gather(d, 1, fold_axis[:, None])[:, 0]
    folded = d.clone()
    folded.scatter_(1, fold_axis[:, None], torch.sign(q)[:, None])
    folded.scatter_(1, tab[:, 0:1], (tab[:, 1] * (2 - q.abs()))[:, None])
    edge = in_i ^ in_j
    d = torch.where(edge[:, None], folded, d)
    f2 = _cube_face(d)
    s2, t2 = _cube_st(d, f2)
    i2 = torch.minimum(torch.floor(s2 * size).long().clamp(min=0), size - 1)
    j2 = torch.minimum(torch.floor(t2 * size).long().clamp(min=0), size - 1)
    f2 = torch.where(in_i & in_j, face, f2)
    i2, j2 = torch.where(in_i & in_j, i, i2), torch.where(in_i & in_j, j, j2)
    corner = ~in_i & ~in_j
    return f2, i2, j2, corner


def _cube_bilinear(flat, offs, sizes, n_img, lvl, face, s, t, c):
    size = sizes[lvl]
    sz = size.to(s.dtype)
    x, y = s.clamp(0, 1) * sz - 0.5, t.clamp(0, 1) * sz - 0.5
    x0, y0 = torch.floor(x).detach(), torch.floor(y).detach()
    fu, fv = x - x0, y - y0
    vals, corners = [], []
    for dj in (0, 1):
        for di in (0, 1):
            f2, i2, j2, corner = _cube_texel(face, x0.long() + di, y0.long() + dj, size)
            vals.append(flat[n_img, offs[lvl] + (f2 * size + j2) * size + i2])
            corners.append(corner)
    stack = torch.stack(vals)  # [4, P, C]
    cmask = torch.stack(corners)[..., None]  # [4, P, 1]
    mean3 = (stack * ~cmask).sum(0, keepdim=True) / 3
    stack = torch.where(cmask, mean3.expand_as(stack), stack)
    w = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])[..., None]
    return (w * stack).sum(0)


def _cube_reference(tex, uv, uv_da, bias, mip, filter_mode, max_mip_level):
    nt, _, size, _, c = tex.shape
    n, h, w, _ = uv.shape
    d = uv.reshape(-1, 3)
    n_img = (torch.arange(n, device=uv.device).repeat_interleave(h * w) if nt > 1
             else torch.zeros(n * h * w, dtype=torch.long, device=uv.device))
    face = _cube_face(d)
    s, t = _cube_st(d, face)
    valid = torch.isfinite(s) & torch.isfinite(t)
    face = torch.where(valid, face, 0)
    d_safe = torch.where(valid[:, None], d, torch.tensor([1.0, 0.0, 0.0], dtype=d.dtype, device=d.device))
    s, t = _cube_st(d_safe, face)
    if filter_mode == "nearest":
        i = torch.floor(s.clamp(0, 1) * size).long().clamp(0, size - 1)
        j = torch.floor(t.clamp(0, 1) * size).long().clamp(0, size - 1)
        out = tex[n_img, face, j, i] * valid.to(tex.dtype)[:, None]
        return out.reshape(n, h, w, c)
    levels = [tex]
    if "mipmap" in filter_mode:
        levels += list(mip) if mip is not None else mip_reference(tex, max_mip_level)
    lmax = len(levels) - 1
    flat = torch.cat([lv.reshape(nt, -1, c) for lv in levels], 1)
    counts = [lv.shape[1] * lv.shape[2] * lv.shape[3] for lv in levels]
    offs = torch.tensor([sum(counts[:k]) for k in range(len(levels))], device=uv.device)
    sizes = torch.tensor([lv.shape[2] for lv in levels], device=uv.device)
    zeros = torch.zeros_like(face)
    keep = valid.to(tex.dtype)[:, None]
    if "mipmap" not in filter_mode:
        return (_cube_bilinear(flat, offs, sizes, n_img, zeros, face, s, t, c) * keep).reshape(n, h, w, c)
    lod = torch.zeros_like(s)
    if uv_da is not None:
        da = uv_da.reshape(-1, 6)
        with torch.enable_grad():  # the face Jacobian d(s, t)/d direction, by autograd (kept in the graph)
            dd = d_safe if d_safe.requires_grad else d_safe.detach().requires_grad_()
            ss, tt = _cube_st(dd, face)
            js, = torch.autograd.grad(ss.sum(), dd, create_graph=True)
            jt, = torch.autograd.grad(tt.sum(), dd, create_graph=True)
        dx, dy = da[:, 0::2], da[:, 1::2]  # (dx, dy, dz) / dX and / dY
        jac = torch.stack([torch.stack([(js * dx).sum(-1), (js * dy).sum(-1)], -1),
                           torch.stack([(jt * dx).sum(-1), (jt * dy).sum(-1)], -1)], -2) * size
        jac = torch.where(torch.isfinite(jac), jac, torch.zeros_like(jac))
        lod = torch.log2(torch.linalg.svdvals(jac)[:, 0])
    if bias is not None:
        lod = lod + bias.reshape(-1)
    lod = torch.nan_to_num(lod, nan=0.0).clamp(0, lmax)
    l0 = torch.floor(lod).detach().long()
    a = _cube_bilinear(flat, offs, sizes, n_img, l0, face, s, t, c)
    if filter_mode == "linear-mipmap-nearest":
        return (a * keep).reshape(n, h, w, c)
    l1 = torch.clamp(l0 + 1, max=lmax)
    b = _cube_bilinear(flat, offs, sizes, n_img, l1, face, s, t, c)
    f = (lod - l0.to(lod.dtype))[:, None]
    return ((a + f * (b - a)) * keep).reshape(n, h, w, c)
