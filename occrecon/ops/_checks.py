"""Argument checks shared by the ops: one place that turns bad input into a clear, named Python exception."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(name: str, value: torch.Tensor) -> None:
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {value.dtype}")


def same_device(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but {ref_name} is on {ref.device}; move them to one device")


def image_mask(name: str, value: torch.Tensor | None, batch: int, height: int, width: int) -> torch.Tensor | None:
    """Accept a per-pixel mask as (B, 1, H, W) or (B, H, W); return it as (B, H, W) (no copy when possible)."""
    if value is None:
        return None
    tensor(name, value)
    if value.dim() == 4 and value.shape[1] == 1:
        value = value[:, 0]
    if value.dim() != 3 or tuple(value.shape) != (batch, height, width):
        raise ValueError(
            f"{name} must be (B, 1, H, W) or (B, H, W) = ({batch}, {height}, {width}), got {tuple(value.shape)}")
    if value.dtype != torch.bool and not value.is_floating_point():
        raise TypeError(f"{name} must be bool or floating point, got {value.dtype}")
    return value
