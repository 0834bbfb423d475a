"""Argument checks and reductions shared by the loss terms (errors name the offending argument)."""
from __future__ import annotations

import torch

from occrecon.ops import _checks

REDUCTIONS = ("mean", "none")
FORMS = ("paper", "code")


def image(name: str, value: object, channels: int | None = 3) -> torch.Tensor:
    """Check a float image ``(B, C, H, W)``; ``channels`` fixes C (None: any C >= 1)."""
    t = _checks.tensor(name, value)
    if t.dim() != 4 or (channels is not None and t.shape[1] != channels):
        c = "C" if channels is None else str(channels)
        raise ValueError(f"{name} must be (B, {c}, H, W), got shape {tuple(t.shape)}")
    _checks.floating(name, t)
    return t


def pair(target: torch.Tensor, render: torch.Tensor, t_name: str = "target", r_name: str = "render") -> None:
    """``target`` and ``render`` must be (B, 3, H, W) float images of one shape, dtype and device."""
    image(t_name, target)
    image(r_name, render)
    if render.shape != target.shape:
        raise ValueError(f"{r_name} shape {tuple(render.shape)} must equal {t_name} shape {tuple(target.shape)}")
    if render.dtype != target.dtype:
        raise TypeError(f"{r_name} dtype {render.dtype} must equal {t_name} dtype {target.dtype}")
    _checks.same_device(r_name, render, t_name, target)


def mask(name: str, value: object, ref: torch.Tensor, ref_name: str = "target") -> torch.Tensor:
    """A float per-pixel mask for the image ``ref`` (B, C, H, W): accepts (B, 1, H, W) or (B, H, W) and returns
    it as (B, 1, H, W) in ``ref``'s dtype. Bool masks are accepted and converted (they carry no gradient)."""
    b, _, h, w = ref.shape
    m = _checks.image_mask(name, _checks.tensor(name, value), b, h, w)
    _checks.same_device(name, m, ref_name, ref)
    return m.to(ref.dtype).unsqueeze(1)


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value  # type: ignore[return-value]


def reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    """``(B,)`` per-image values -> their batch mean (``"mean"``) or themselves (``"none"``)."""
    choice("reduction", reduction, REDUCTIONS)
    return per_image if reduction == "none" else per_image.mean()


def ratio(num: torch.Tensor, den: torch.Tensor, reduction: str) -> torch.Tensor:
    """``num / den`` per image (``"none"``) or ``sum(num) / sum(den)`` over the batch (``"mean"``), the
    denominator clamped to >= 1 so that an empty region gives 0, not NaN."""
    choice("reduction", reduction, REDUCTIONS)
    if reduction == "none":
        return num / den.clamp_min(1.0)
    return num.sum() / den.sum().clamp_min(1.0)

