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


# ------------------------------------------------------------------------------------- index range, memoised
# Reading min/max of an index tensor is a device synchronisation on CUDA (an aminmax kernel plus a copy back),
# paid on every call although a mesh's triangles rarely change. The result is remembered per tensor object and
# version counter: any in-place write bumps the version (views share it), so a changed tensor is re-read. The
# cache holds strong references (a few small index tensors), so an object's id cannot be reused while cached.
# Inference-mode tensors have no version counter and are always re-read. Writes that bypass PyTorch (through a
# NumPy or DLPack view) are not seen: re-create the tensor after such writes.
_RANGE_CACHE: list[tuple[torch.Tensor, int, int, int]] = []
_RANGE_CACHE_SIZE = 8


def index_range(index: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor, remembered while the tensor is unmodified."""
    version = None if index.is_inference() else index._version
    if version is not None:
        for i, (t, v, lo, hi) in enumerate(_RANGE_CACHE):
            if t is index and v == version:
                if i:
                    _RANGE_CACHE.insert(0, _RANGE_CACHE.pop(i))
                return lo, hi
    lo, hi = (int(v) for v in index.aminmax())
    if version is not None:
        _RANGE_CACHE[:] = [e for e in _RANGE_CACHE if e[0] is not index][: _RANGE_CACHE_SIZE - 1]
        _RANGE_CACHE.insert(0, (index, version, lo, hi))
    return lo, hi
