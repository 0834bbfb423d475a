"""Triangle ids in ``rast[..., 3]``, encoded as nvdiffrast encodes them (and as ``csrc/common/triangle_id.h`` does).

The channel holds ``id + 1`` (0 = empty pixel). float32 represents every integer up to 2^24 exactly, and such
values are stored as they are; a larger ``id + 1`` is stored as the float32 whose bit pattern is
``0x4a800000 + id + 1`` (finite, unique, increasing with the id), which holds meshes of up to
:data:`MAX_FLOAT_TRIANGLES` triangles. float64 stores ``id + 1`` as its value. Reading never trusts the value:
0, negative, NaN and inf read as empty (-1); fractions truncate, as in nvdiffrast.
"""
from __future__ import annotations

import torch

__all__ = ["triangle_index", "encode_triangle_id", "MAX_FLOAT_TRIANGLES"]

FLOAT_ID_LIMIT = 16777216  # 2^24: larger ids + 1 are stored as bit patterns in float32
MAX_FLOAT_TRIANGLES = 889192446  # the largest id + 1 whose encoding is finite is 889192447
_BIAS = 0x4A800000


def triangle_index(ids: torch.Tensor) -> torch.Tensor:
    """``rast[..., 3]`` (any shape, float) -> triangle index as int64, -1 where the pixel is empty or the value is
    not an encoded id (0, negative, NaN, inf). Indices are not checked against a mesh: compare with ``F``."""
    if not ids.is_floating_point():
        raise TypeError(f"triangle ids must be a floating-point rast channel, got {ids.dtype}")
    valid = (ids >= 1) & torch.isfinite(ids)
    if ids.dtype == torch.float32:
        bits = ids.view(torch.int32).to(torch.int64) - _BIAS
        plain = ids.clamp(0, FLOAT_ID_LIMIT).trunc().to(torch.int64)
        one_based = torch.where(ids <= FLOAT_ID_LIMIT, plain, bits)
    else:
        valid = valid & (ids < 2.0 ** 53)
        one_based = ids.clamp(0, 2.0 ** 53).trunc().to(torch.int64)
    return torch.where(valid, one_based, torch.zeros_like(one_based)) - 1


def encode_triangle_id(index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triangle index (int, -1 = empty) -> the ``rast[..., 3]`` value of that dtype (the inverse of
    :func:`triangle_index`)."""
    one_based = index.to(torch.int64) + 1
    if dtype != torch.float32:
        return one_based.to(dtype)
    if bool((one_based > MAX_FLOAT_TRIANGLES).any()):
        raise ValueError(f"triangle ids above {MAX_FLOAT_TRIANGLES - 1} have no float32 encoding")
    big = (one_based + _BIAS).to(torch.int32).view(torch.float32)
    return torch.where(one_based <= FLOAT_ID_LIMIT, one_based.to(torch.float32), big)
