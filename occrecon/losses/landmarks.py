"""Landmark loss L_lm (eq. 7) with the paper's per-landmark weights.

Units: pixels of the (224 × 224) image, no normalisation by the image size. The paper's weight i = 0.01 is
meant for pixel units: a 3 px mean error gives 0.01·9 = 0.09, the same order as 4·L_img^R. (The authors' code
also works in pixels.) Point order: iBUG 68 (jaw 0-16, eyebrows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
"""
from __future__ import annotations

import torch

from occrecon.ops import _checks

from . import _args

__all__ = ["landmark_loss", "LANDMARK_WEIGHTS_68", "CONTOUR_WEIGHT", "EYEBROW_WEIGHT", "INNER_WEIGHT"]

#: Paper, sec. 3.2: weight of the 17 jaw-contour landmarks (iBUG 0-16).
CONTOUR_WEIGHT = 0.2
#: Paper, sec. 3.2: weight of the 10 eyebrow landmarks (iBUG 17-26).
EYEBROW_WEIGHT = 0.1
#: Paper, sec. 3.2: weight of every other landmark (nose, eyes, mouth).
INNER_WEIGHT = 1.0

_CONTOUR = range(0, 17)
_EYEBROWS = range(17, 27)


def _weights_68() -> torch.Tensor:
    w = torch.full((68,), INNER_WEIGHT, dtype=torch.float64)
    w[list(_CONTOUR)] = CONTOUR_WEIGHT
    w[list(_EYEBROWS)] = EYEBROW_WEIGHT
    return w


#: ``(68,)`` float64 per-landmark weights: 0.2 contour, 0.1 eyebrows, 1 elsewhere (read-only by convention).
LANDMARK_WEIGHTS_68 = _weights_68()


def landmark_loss(predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                  valid: torch.Tensor | None = None, form: str = "paper", reduction: str = "mean") -> torch.Tensor:
    """L_lm (eq. 7): weighted squared distance between projected model landmarks and target landmarks.

    ``form="paper"``: ``Σ_i w_i·‖lm_R,i − lm_T,i‖² / N`` over the N usable landmarks.
    ``form="code"``: the authors' ``mean over (i, x|y) of (w_i·(lm_T − lm_R))²`` = ``Σ_i w_i²‖·‖² / (2N)``.

    A landmark is usable when both its predicted and target coordinates are finite and ``valid`` (if given) is
    True. NaN predicted points (model points with no vertex, see ``FaceRender.landmarks``) and missing target
    points (NaN, or ``valid`` False) are excluded from both the sum and N, and give no NaN gradient.

    Args:
        predicted: lm_R ``(B, N_lm, 2)`` float pixel coordinates (x right, y down), e.g. ``FaceRender.landmarks``.
        target: lm_T, same shape, e.g. detected landmarks.
        weights: ``(N_lm,)`` per-landmark weights; default :data:`LANDMARK_WEIGHTS_68` (needs N_lm = 68).
        valid: optional ``(B, N_lm)`` bool, False for missing target landmarks.
        form: ``"paper"`` or ``"code"``.
        reduction: ``"mean"``: batch sum over the batch's usable count (scalar); ``"none"``: ``(B,)`` per image.
            Count clamped to >= 1, so an image without usable landmarks gives 0.

    Returns:
        scalar or ``(B,)`` in squared pixels, dtype of ``predicted``.
    """
    _checks.tensor("predicted", predicted)
    _checks.tensor("target", target)
    if predicted.dim() != 3 or predicted.shape[2] != 2:
        raise ValueError(f"predicted must be (B, N, 2), got {tuple(predicted.shape)}")
    if target.shape != predicted.shape:
        raise ValueError(f"target shape {tuple(target.shape)} must equal predicted shape {tuple(predicted.shape)}")
    _checks.floating("predicted", predicted)
    _checks.floating("target", target)
    _checks.same_device("target", target, "predicted", predicted)
    _args.choice("form", form, _args.FORMS)
    b, n, _ = predicted.shape
    if weights is None:
        if n != 68:
            raise ValueError(f"weights: the default LANDMARK_WEIGHTS_68 needs 68 landmarks, got {n}")
        weights = LANDMARK_WEIGHTS_68
    _checks.tensor("weights", weights)
    if weights.shape != (n,):
        raise ValueError(f"weights must be ({n},), got {tuple(weights.shape)}")
    w = weights.to(device=predicted.device, dtype=predicted.dtype)
    usable = torch.isfinite(predicted).all(dim=2) & torch.isfinite(target).all(dim=2)
    if valid is not None:
        _checks.tensor("valid", valid)
        if valid.shape != (b, n) or valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor of shape ({b}, {n}), got {valid.dtype} "
                             f"{tuple(valid.shape)}")
        usable = usable & valid.to(predicted.device)
    diff = torch.where(usable.unsqueeze(2), predicted - target.to(predicted.dtype), torch.zeros_like(predicted))
    sq = (diff * diff).sum(dim=2)
    if form == "paper":
        per_point, per_count = w * sq, 1.0
    else:
        per_point, per_count = w * w * sq, 2.0
    num = per_point.sum(dim=1)
    count = usable.to(predicted.dtype).sum(dim=1) * per_count
    return _args.ratio(num, count, reduction)
