"""Image-level loss terms of "To fit or not to fit" (Li et al. 2023): L_img^ex (eq. 1), L_img^in (eq. 3), L_bi
and L_img^R (eq. 5).

Conventions: images ``(B, 3, H, W)`` float32/float64 RGB in [0, 1]; ``mask`` is the segmentation M = Φ·S,
``(B, 1, H, W)`` (or ``(B, H, W)``) in [0, 1], 1 = visible face; ``region`` is the rendered region Φ
(``FaceRender.region``), float in [0, 1] (antialiased edges allowed). The area of Φ is S_Φ = ΣΦ (soft). All terms
are dimensionless; ``reduction="mean"`` gives a scalar, ``"none"`` one value per image ``(B,)``.
"""
from __future__ import annotations

import torch

from occrecon.ops import _checks, neighbour_loss
from occrecon.ops.neighbour import _sqrt_safe

from . import _args

__all__ = ["neighbour_image_loss", "area_loss", "binary_loss", "photometric_loss", "PAPER_NEIGHBOUR_K",
           "FOCUS_NEIGHBOUR_K"]

#: Neighbourhood size k of L_img^ex in the authors' 2021 release (3×3 window).
PAPER_NEIGHBOUR_K = 3
#: Neighbourhood size of the 2022-23 rework FOCUS (5×5 window).
FOCUS_NEIGHBOUR_K = 5
#: L_bi pushes M away from this value (the decision boundary of a probability).
_BINARY_CENTRE = 0.5


def neighbour_image_loss(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, region: torch.Tensor,
                         k: int = PAPER_NEIGHBOUR_K, squared: bool = True, reduction: str = "mean") -> torch.Tensor:
    """L_img^ex (eq. 1), the neighbourhood-min loss: ``Σ_p M(p)·d(p)² / S_Φ`` with
    ``d(p)² = min_{q ∈ N_k(p) ∩ Φ} ‖I_T(p) − I_R(q)‖²`` over RGB.

    Wraps :func:`occrecon.ops.neighbour_loss` (C++/CUDA kernel). ``k = 1`` is the plain per-pixel loss (the
    ablation "Baseline"). Here S_Φ counts the pixels with Φ > 0.5 (the op's convention) and neighbour candidates
    are the pixels with Φ > 0.5.

    Args:
        target: I_T ``(B, 3, H, W)`` float32/float64 in [0, 1].
        render: I_R, same shape/dtype/device.
        mask: M ``(B, 1, H, W)`` or ``(B, H, W)`` float, receives gradients.
        region: Φ ``(B, 1, H, W)`` or ``(B, H, W)``, bool or float.
        k: odd window size (paper/ORIG 3, FOCUS 5).
        squared: True (paper) uses d², False the unsquared RGB distance d (authors' code).
        reduction: ``"mean"``: batch sum over batch S_Φ (scalar); ``"none"``: ``(B,)``, per image.

    Returns:
        scalar or ``(B,)`` tensor, dtype of ``target``.
    """
    _args.pair(target, render)
    if region is None:
        raise ValueError("region must be the rendered region Φ (B, 1, H, W), got None")
    _args.choice("reduction", reduction, _args.REDUCTIONS)
    return neighbour_loss(target, render, mask, region, k=k, squared=squared, reduction=reduction)


def area_loss(mask: torch.Tensor, region: torch.Tensor, form: str = "paper", reduction: str = "mean") -> torch.Tensor:
    """L_img^in (eq. 3), the area term rewarding kept pixels.

    ``form="paper"``: ``−Σ M² / S_Φ`` (in [−1, 0]; −1 when M = Φ everywhere with binary Φ).
    ``form="code"``: the authors' occluded fraction ``Σ Φ(1 − M) / S_Φ`` (in [0, 1]); it equals the paper form
    plus 1 when M is binary, so both have the same minimiser.

    Args:
        mask: M ``(B, 1, H, W)`` or ``(B, H, W)`` float in [0, 1].
        region: Φ, same shape, float (or bool) in [0, 1]; S_Φ = ΣΦ per image, clamped to >= 1.
        form: ``"paper"`` or ``"code"``.
        reduction: ``"mean"`` (mean over images of the per-image ratio) or ``"none"`` ``(B,)``.
    """
    m, phi = _mask_and_region(mask, region)
    _args.choice("form", form, _args.FORMS)
    area = phi.sum(dim=(1, 2, 3)).clamp_min(1.0)
    if form == "paper":
        num = -(m * m).sum(dim=(1, 2, 3))
    else:
        num = (phi * (1.0 - m)).sum(dim=(1, 2, 3))
    return _args.reduce(num / area, reduction)


def binary_loss(mask: torch.Tensor, region: torch.Tensor, form: str = "paper", reduction: str = "mean") -> torch.Tensor:
    """L_bi, pushing M towards 0 or 1.

    ``form="paper"``: ``−Σ_Φ (M − 0.5)² / S_Φ``, i.e. the paper's ``−Σ(M − 0.5)²`` taken over the rendered region
    and normalised by its area S_Φ (our choice: unnormalised it would scale with the image size and swamp every
    other term at the paper's weight 10). In [−0.25, 0]; −0.25 for a binary mask.
    ``form="code"``: the authors' ``0.5 − mean_{all pixels} |M − 0.5|`` (in [0, 0.5]; 0 for a binary mask). Pixels
    outside Φ (where M = 0) count in the mean, as in their code.

    Args:
        mask: M ``(B, 1, H, W)`` or ``(B, H, W)`` float in [0, 1].
        region: Φ, same shape (used by the paper form).
        form, reduction: as for :func:`area_loss`.
    """
    m, phi = _mask_and_region(mask, region)
    _args.choice("form", form, _args.FORMS)
    if form == "paper":
        per = -(phi * (m - _BINARY_CENTRE) ** 2).sum(dim=(1, 2, 3)) / phi.sum(dim=(1, 2, 3)).clamp_min(1.0)
    else:
        per = _BINARY_CENTRE - (m - _BINARY_CENTRE).abs().mean(dim=(1, 2, 3))
    return _args.reduce(per, reduction)


def photometric_loss(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, squared: bool = True,
                     reduction: str = "mean") -> torch.Tensor:
    """L_img^R (eq. 5), the photometric error inside the valid region Ω: ``Σ_p M(p)·e(p) / max(Σ M, 1)``.

    ``e(p) = ‖I_T(p) − I_R(p)‖²`` over RGB (paper, ``squared=True``) or the unsquared norm ``‖·‖`` (authors'
    code, ``squared=False``; gradient 0 where the images agree exactly).

    Args:
        target: I_T ``(B, 3, H, W)`` float32/float64 in [0, 1].
        render: I_R, same shape/dtype/device.
        mask: M = Φ·S ``(B, 1, H, W)`` or ``(B, H, W)`` float in [0, 1] (the region Ω, soft).
        squared: see above.
        reduction: ``"mean"``: batch sum over batch ΣM (as the authors' code); ``"none"``: ``(B,)`` per image.
    """
    _args.pair(target, render)
    m = _args.mask("mask", mask, target)
    e = ((target - render) ** 2).sum(dim=1, keepdim=True)
    if not squared:
        e = _sqrt_safe(e)
    return _args.ratio((m * e).sum(dim=(1, 2, 3)), m.sum(dim=(1, 2, 3)), reduction)


def _mask_and_region(mask: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check M and Φ, return both as (B, 1, H, W) in M's float dtype."""
    m = _checks.tensor("mask", mask)
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W) or (B, H, W), got shape {tuple(mask.shape)}")
    _checks.floating("mask", m)
    phi = _args.mask("region", region, m, "mask")
    return m, phi
