"""Pure-PyTorch reference implementations of the compiled ops: readable, slow, obviously correct.

Tests compare the kernels against these; benchmarks measure the kernels beside them. Each reference follows the
same documented conventions as its kernel (tie-breaking, empty-candidate handling, NaN propagation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["neighbour_min"]


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
    d2 = torch.where(any_valid, d2, torch.zeros_like(d2))
    idx = torch.where(any_valid, idx, torch.full_like(idx, -1))
    return d2, idx
