"""Neighbourhood-min distance and loss (eq. 1 of "To fit or not to fit"), backed by the C++/CUDA kernel.

The per-element math lives in ``csrc/common/neighbour_min.h``; this module checks arguments, registers the
autograd formula and the fake (meta) implementation used by ``torch.compile``, and builds the loss on top.
"""
from __future__ import annotations

import torch

from . import _checks
from ._autograd import first_order_only

__all__ = ["neighbour_min", "neighbour_loss", "decode_offset"]

_OP = "occrecon::neighbour_min"
_BWD = "occrecon::neighbour_min_backward"


@torch.library.register_fake(_OP)
def _neighbour_min_fake(target, render, region, k):
    b, _, h, w = target.shape
    return target.new_empty((b, h, w)), target.new_empty((b, h, w), dtype=torch.int32)


@torch.library.register_fake(_BWD)
def _neighbour_min_backward_fake(grad_d2, target, render, idx, k):
    return torch.empty_like(target), torch.empty_like(render)


def _setup_context(ctx, inputs, output):
    target, render, _region, k = inputs
    _d2, idx = output
    ctx.save_for_backward(target, render, idx)
    ctx.k = k
    ctx.mark_non_differentiable(idx)


@first_order_only("neighbour_min")
def _backward(ctx, grad_d2, _grad_idx):
    target, render, idx = ctx.saved_tensors
    if grad_d2 is None:
        return None, None, None, None
    grad_target, grad_render = torch.ops.occrecon.neighbour_min_backward(grad_d2.contiguous(), target, render, idx,
                                                                         ctx.k)
    return (grad_target if ctx.needs_input_grad[0] else None, grad_render if ctx.needs_input_grad[1] else None,
            None, None)


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def neighbour_min(target: torch.Tensor, render: torch.Tensor, k: int = 3,
                  region: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum squared colour distance to a k x k neighbourhood of the render.

    For every pixel p, ``d2[b, p] = min_q sum_c (target[b, c, p] - render[b, c, q])**2`` over the pixels q of the
    k x k window centred on p that lie inside the image and, if ``region`` is given, inside the region.

    Args:
        target: ``(B, C, H, W)`` float32/float64 image I_T (the paper uses C = 3, RGB; any C >= 1 works).
        render: ``(B, C, H, W)`` image I_R, same dtype and device as ``target``.
        k: odd window size >= 1, at most min(H, W). ``k = 1`` is the plain per-pixel squared distance.
        region: optional rendered region Phi, ``(B, 1, H, W)`` or ``(B, H, W)``, bool or float. A neighbour q is a
            candidate only if ``region[q]`` is True (bool) or > 0.5 (float; NaN counts as outside). It selects
            candidates only; the distance is still computed at every pixel p, inside the region or not.

    Returns:
        ``d2``: ``(B, H, W)`` minimum squared distance, dtype of ``target``. A pixel with no candidate (all of
        its window outside ``region``) gets ``d2 = 0`` and ``idx = -1``.
        ``idx``: ``(B, H, W)`` int32 window index of the winner, ``(dy + r) * k + (dx + r)`` with ``r = k // 2``
        (see :func:`decode_offset`), or -1 when there is no candidate. Not differentiable.

    Ties go to the first candidate in row-major window order (smallest dy, then smallest dx). NaN in the inputs
    propagates: if any candidate distance is NaN, ``d2`` is NaN and ``idx`` points at the first such candidate
    (as ``torch.min`` does); ``inf`` is an ordinary value. Gradients flow to ``target`` and ``render`` (only to
    the winning neighbour), are exact, deterministic (gathers, no atomics) and work in float64. Non-contiguous
    inputs are accepted (copied to contiguous). Memory is O(B*H*W): no k*k intermediates.
    """
    _checks.tensor("target", target)
    _checks.tensor("render", render)
    if target.dim() != 4:
        raise ValueError(f"target must be (B, C, H, W), got shape {tuple(target.shape)}")
    if render.shape != target.shape:
        raise ValueError(f"render shape {tuple(render.shape)} must equal target shape {tuple(target.shape)}")
    _checks.floating("target", target)
    _checks.floating("render", render)
    if render.dtype != target.dtype:
        raise TypeError(f"render dtype {render.dtype} must equal target dtype {target.dtype}")
    _checks.same_device("render", render, "target", target)
    b, c, h, w = target.shape
    if c < 1:
        raise ValueError("target must have at least one channel")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"k must be odd and >= 1, got {k}")
    if k > h or k > w:
        raise ValueError(f"k = {k} is larger than the image ({h}x{w})")
    reg = _checks.image_mask("region", region, b, h, w)
    if reg is not None:
        _checks.same_device("region", reg, "target", target)
        reg = reg if reg.dtype == torch.bool else reg > 0.5
        reg = reg.contiguous()
    return torch.ops.occrecon.neighbour_min(target.contiguous(), render.contiguous(), reg, k)


def decode_offset(idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``idx`` from :func:`neighbour_min` into pixel offsets ``(dy, dx)`` of the winning neighbour.

    Entries with ``idx == -1`` (no candidate) decode to ``(0, 0)``.
    """
    r = k // 2
    valid = idx >= 0
    dy = torch.where(valid, idx // k - r, 0)
    dx = torch.where(valid, idx % k - r, 0)
    return dy, dx


def _sqrt_safe(d2: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not inf/NaN) at d2 = 0."""
    positive = d2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, d2, torch.ones_like(d2))), torch.zeros_like(d2))


def neighbour_loss(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, region: torch.Tensor | None,
                   k: int = 3, squared: bool = True, reduction: str = "mean") -> torch.Tensor:
    """Neighbourhood-min loss L_img^ex: ``sum(mask * d2) / sum(region)`` (paper, eq. 1).

    Args:
        target, render: ``(B, C, H, W)`` images, as for :func:`neighbour_min`.
        mask: ``(B, 1, H, W)`` or ``(B, H, W)`` float weights M (the segmentation, M = Phi * S). Receives
            gradients.
        region: rendered region Phi, ``(B, 1, H, W)`` or ``(B, H, W)``, bool or float, or None (every pixel).
            It restricts the neighbour candidates, and its pixel count (True, or > 0.5 for float) is the
            denominator.
        k: odd window size.
        squared: True (paper) sums ``d2``; False sums ``sqrt(d2)`` (the authors' code), with a zero gradient at
            ``d2 = 0`` instead of NaN.
        reduction: ``"mean"`` gives one scalar, ``sum`` over the batch divided by the batch's region size;
            ``"none"`` gives ``(B,)``, each image normalised by its own region size.

    The denominator is clamped to >= 1 pixel, so an empty region gives 0 rather than NaN.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    d2, _ = neighbour_min(target, render, k=k, region=region)
    b, h, w = d2.shape
    m = _checks.image_mask("mask", mask, b, h, w)
    if not m.is_floating_point():
        raise TypeError(f"mask must be floating point (it receives gradients), got {m.dtype}")
    _checks.same_device("mask", m, "target", target)
    dist = d2 if squared else _sqrt_safe(d2)
    num = (m.to(dist.dtype) * dist).sum(dim=(1, 2))
    reg = _checks.image_mask("region", region, b, h, w)
    if reg is None:
        den = torch.full((b,), float(h * w), dtype=dist.dtype, device=dist.device)
    else:
        den = (reg > 0.5 if reg.dtype != torch.bool else reg).to(dist.dtype).sum(dim=(1, 2))
    if reduction == "none":
        return num / den.clamp_min(1.0)
    return num.sum() / den.sum().clamp_min(1.0)
