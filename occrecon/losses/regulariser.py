"""Statistical regulariser L_reg of the 3DMM coefficients."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from occrecon.ops import _checks

from . import _args

__all__ = ["regulariser", "REGULARISED_GROUPS", "CODE_REG_DIVISOR"]

#: θ groups the prior acts on: shape (identity), expression and albedo coefficients (in standard deviations).
REGULARISED_GROUPS = ("id", "exp", "tex")
#: The authors' code divides the summed squares by the image width 224 (on top of the batch mean).
CODE_REG_DIVISOR = 224.0


def regulariser(theta: torch.Tensor, layout, groups: Sequence[str] = REGULARISED_GROUPS, form: str = "paper",
                reduction: str = "mean") -> torch.Tensor:
    """L_reg = ‖θ_id‖² + ‖θ_exp‖² + ‖θ_tex‖² per image (``form="paper"``), or that divided by 224 (``"code"``).

    Coefficients are in standard deviations of the model's prior, so this is the negative log prior up to a
    factor 1/2. Groups of size 0 (a model without albedo) contribute 0.

    Args:
        theta: ``(B, layout.size)`` float θ.
        layout: the model's ``occrecon.morphable.ParamLayout``.
        groups: group names to regularise (each must exist in ``layout``).
        form: ``"paper"`` or ``"code"``.
        reduction: ``"mean"`` over the batch (the code's sum / B) or ``"none"`` ``(B,)``.
    """
    _checks.tensor("theta", theta)
    if theta.dim() != 2 or theta.shape[1] != layout.size:
        raise ValueError(f"theta must be (B, {layout.size}) for {layout!r}, got {tuple(theta.shape)}")
    _checks.floating("theta", theta)
    _args.choice("form", form, _args.FORMS)
    if isinstance(groups, str):
        raise TypeError(f"groups must be a sequence of group names, got the string {groups!r}")
    unknown = [g for g in groups if g not in layout.names]
    if unknown:
        raise ValueError(f"groups: {unknown} not in the layout's groups {layout.names}")
    per = theta.new_zeros(theta.shape[0])
    for g in groups:
        per = per + (theta[:, layout.slice(g)] ** 2).sum(dim=1)
    if form == "code":
        per = per / CODE_REG_DIVISOR
    return _args.reduce(per, reduction)
