"""Pure-PyTorch reference of texture sampling (``occrecon.render.texture``), written from the documented conventions
(docs/rendering.md, "Texture sampling") independently of the kernel: every level flattened into one tensor and read
by gathers, the level of detail from ``torch.linalg.svdvals`` of the footprint, gradients by autograd. Slow; for
tests and benchmarks.
"""
from __future__ import annotations

import torch

__all__ = ["texture_reference", "mip_reference"]


def mip_reference(tex: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
    """Levels 1.. of ``tex [N, H, W, C]`` by average pooling (2 × 2, or 2 × 1 once an extent is 1)."""
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
