"""Pure-PyTorch reference of :func:`occrecon.render.antialias.antialias` (forward; gradients by autograd).

Readable and vectorised over segments (no Python loop over pixels), written from the geometric description
rather than from the kernel: the topology comes from a Python dict of edges, the crossing from a line
intersection in (along, across) coordinates of each segment, the blend from a scatter-add. Follows the same
documented conventions as the kernel: which triangle is chosen, which edge is tested, the silhouette rule, the
1/16 px tolerance, the clamp and the saturation (no position gradient when alpha reaches +-1/2).

``grad_eps=True`` (default) makes autograd reproduce nvdiffrast's regularised position gradient, which uses
``1 / (dy + copysign(1e-3, dy))`` for the crossing edge's extent ``dy`` across the segment; the forward value
is exact either way. ``grad_eps=False`` gives the exact derivative of the forward pass.
"""
from __future__ import annotations

import torch

from .triangle_id import triangle_index

__all__ = ["topology", "antialias"]

_SNAP_EPS = 1.0 / 16.0        # tolerated crossing outside the segment, px
_GRAD_EPS = 1e-3              # nvdiffrast's regulariser of 1/dy in the position gradient, px


def topology(tri: torch.Tensor) -> torch.Tensor:
    """Opposite vertex across every edge, ``(F, 3)`` int32, -1 for none; the layout of
    :func:`occrecon.render.antialias.antialias_construct_topology_hash`, built with a dict in triangle order."""
    rows = tri.tolist()
    stored: dict[tuple[int, int], list[int]] = {}
    for t in rows:
        if min(t) < 0 or len(set(t)) < 3:
            continue  # degenerate or invalid triangles are not inserted
        for k in range(3):
            key = tuple(sorted((t[(k + 1) % 3], t[(k + 2) % 3])))
            opp = stored.setdefault(key, [])
            if len(opp) < 2 and t[k] not in opp:
                opp.append(t[k])  # the first two distinct opposite vertices
    out = []
    for t in rows:
        row = []
        for k in range(3):
            a, b = t[(k + 1) % 3], t[(k + 2) % 3]
            opp = stored.get(tuple(sorted((a, b))), []) if min(a, b) >= 0 and a != b else []
            if t[k] in opp:
                others = [v for v in opp if v != t[k]]
                row.append(others[0] if others else -1)
            else:
                row.append(-1)
        out.append(row)
    return torch.tensor(out, dtype=torch.int32, device=tri.device).reshape(-1, 3)


def _sign_bit(x: torch.Tensor) -> torch.Tensor:
    return torch.signbit(x)


def _orient(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Twice the signed area of triangles (a, b, c); points are (..., 2)."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (c[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1])


def _segments(b: int, h: int, w: int, d: int, device) -> tuple[torch.Tensor, ...]:
    """Batch index and pixel0 (y, x) of every segment in direction d (0: to the right, 1: to the next row)."""
    ys, xs = torch.meshgrid(torch.arange(h - d, device=device), torch.arange(w - 1 + d, device=device), indexing="ij")
    bb = torch.arange(b, device=device).view(b, 1, 1).expand(b, h - d, w - 1 + d)
    return bb.reshape(-1), ys.expand_as(bb).reshape(-1), xs.expand_as(bb).reshape(-1)


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology_hash: torch.Tensor | None = None, grad_eps: bool = True) -> torch.Tensor:
    """Reference forward of antialias; differentiable in ``color`` and ``pos`` by autograd.

    Same arguments and result as :func:`occrecon.render.antialias.antialias` (no ``pos_gradient_boost``).
    """
    b, h, w, _ = color.shape
    num_tri = tri.shape[0]
    topo = (topology(tri) if topology_hash is None else topology_hash).long()
    tri = tri.long()
    verts = pos if pos.dim() == 3 else pos.unsqueeze(0).expand(b, *pos.shape)
    out = color
    for d in (0, 1):
        bi, y0, x0 = _segments(b, h, w, d, color.device)
        y1, x1 = y0 + d, x0 + 1 - d
        id0, id1 = rast[bi, y0, x0, 3], rast[bi, y1, x1, 3]
        t0, t1 = triangle_index(id0), triangle_index(id1)
        # the nearer triangle; an empty pixel never wins; equal depth (or NaN) picks pixel1
        side1 = (t0 < 0) | ((t1 >= 0) & ~(rast[bi, y0, x0, 2] < rast[bi, y1, x1, 2]))
        t = torch.where(side1, t1, t0)
        keep = (id0 != id1) & (t >= 0) & (t < num_tri)
        bi, y0, x0, y1, x1, side1, t = (v[keep] for v in (bi, y0, x0, y1, x1, side1, t))
        if t.numel() == 0:
            continue
        sy, sx = torch.where(side1, y1, y0), torch.where(side1, x1, x0)

        # vertices and opposite vertices in pixel units, origin at the chosen pixel's centre
        vid = tri[t]                                              # (N, 3)
        oid = topo[t]                                             # (N, 3)
        v4 = verts[bi[:, None], vid]                              # (N, 3, 4)
        has_opp = (oid >= 0) & (oid < verts.shape[1])             # anything else: no neighbour
        o4 = torch.where(has_opp[..., None], verts[bi[:, None], torch.where(has_opp, oid, 0)], v4)

        def to_pixels(q):
            px = (q[..., 0] / q[..., 3] + 1) * (w / 2) - (sx[:, None] + 0.5)
            py = (q[..., 1] / q[..., 3] + 1) * (h / 2) - (sy[:, None] + 0.5)
            return torch.stack((px, py), dim=-1)                 # (N, 3, 2)

        v, o = to_pixels(v4), to_pixels(o4)
        area = _orient(v[:, 0], v[:, 1], v[:, 2])
        silhouette = torch.stack([
            _sign_bit(_orient(o[:, k], v[:, (k + 1) % 3], v[:, (k + 2) % 3])) == _sign_bit(area) for k in range(3)], 1)

        # (along, across): the segment runs from the chosen centre towards the other pixel along +/- "along"
        toward = torch.where(side1, -1.0, 1.0).to(color.dtype)   # +1: the other pixel is at along = +1
        along, across = (v[..., 0], v[..., 1]) if d == 0 else (v[..., 1], v[..., 0])
        crossings, steep, crosses = [], [], []
        for k in range(3):
            i, j = (k + 1) % 3, (k + 2) % 3
            a_al, a_ac, b_al, b_ac = along[:, i], across[:, i], along[:, j], across[:, j]
            cross = _sign_bit(a_ac) != _sign_bit(b_ac)
            extent = b_ac - a_ac
            safe = torch.where(extent == 0, torch.ones_like(extent), extent)
            at = (a_al * b_ac - b_al * a_ac) / safe              # where the edge's line meets across = 0
            if grad_eps:
                reg = (a_al * b_ac - b_al * a_ac) / (safe + torch.where(_sign_bit(safe), -_GRAD_EPS, _GRAD_EPS))
                at = at.detach() + (reg - reg.detach())
            crossings.append(torch.where(cross, toward * at, torch.full_like(at, -float("inf"))))
            steep.append(extent.abs() >= (b_al - a_al).abs())
            crosses.append(cross)
        crossings = torch.stack(crossings, 1)
        edge = torch.argmax(crossings.detach(), dim=1, keepdim=True)  # first maximum: the exit edge
        dc = crossings.gather(1, edge)[:, 0]
        pick = lambda m: torch.stack(m, 1).gather(1, edge)[:, 0]  # noqa: E731
        hit = pick(crosses) & silhouette.gather(1, edge)[:, 0] & pick(steep) & (dc > -_SNAP_EPS) & (dc < 1 + _SNAP_EPS)
        # clamp to [0, 1]; a saturated crossing passes no gradient (nvdiffrast kills it at |alpha| >= 1/2)
        inner = (dc > 0) & (dc < 1)
        dc = torch.where(inner, dc, dc.detach().clamp(0, 1))
        alpha = toward * (0.5 - dc)

        bi, y0, x0, y1, x1, alpha = (q[hit] for q in (bi, y0, x0, y1, x1, alpha))
        to1 = ~(alpha > 0)
        ty, tx = torch.where(to1, y1, y0), torch.where(to1, x1, x0)
        blend = alpha[:, None] * (color[bi, y1, x1] - color[bi, y0, x0])
        out = out.index_put((bi, ty, tx), blend, accumulate=True)
    return out
