"""Shared argument checks and building blocks of the networks."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_image", "projection"]


def check_image(x: object, name: str, channels: int | None = 3) -> None:
    """Raise (naming ``name``) unless ``x`` is a floating ``(B, channels, H, W)`` tensor (any C if None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else channels
        raise ValueError(f"{name}: expected shape (B, {c}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype (values in [0, 1]), got {x.dtype}")


def projection(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """ResNet shortcut: 1×1 conv (no bias) + batch norm where the shape changes, else None (identity)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
