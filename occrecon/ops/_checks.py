"""Argument checks shared by the ops: one place that turns bad input into a clear, named Python exception."""
from __future__ import annotations

import threading
import weakref

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
# version counter: in-place writes through PyTorch bump the version (views share it), so a changed tensor is
# re-read. It only decides which error message a bad mesh gets, never memory safety: writes that bypass the
# version counter (``tri.data[...] = ...``, a NumPy or DLPack view) make it stale, and the kernels themselves skip
# any triangle that names a vertex outside [0, V). The cache holds weak references, so it never keeps a tensor
# alive. Inference-mode tensors have no version counter and are always re-read.
_RANGE_CACHE: list[tuple[weakref.ref, int, int, int]] = []
_RANGE_CACHE_SIZE = 8
_RANGE_LOCK = threading.Lock()


def index_range(index: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor, remembered while the tensor is unmodified."""
    version = None if index.is_inference() else index._version
    if version is not None:
        with _RANGE_LOCK:
            for i, (ref, v, lo, hi) in enumerate(_RANGE_CACHE):
                if ref() is index and v == version:
                    if i:
                        _RANGE_CACHE.insert(0, _RANGE_CACHE.pop(i))
                    return lo, hi
    lo, hi = (int(v) for v in index.aminmax())
    if version is not None:
        with _RANGE_LOCK:
            keep = [e for e in _RANGE_CACHE if e[0]() is not None and e[0]() is not index]
            _RANGE_CACHE[:] = [(weakref.ref(index), version, lo, hi)] + keep[: _RANGE_CACHE_SIZE - 1]
    return lo, hi
