"""Spherical-harmonics Lambertian shading (Deep3D's convention), backed by the C++/CUDA kernel.

The per-element math lives in ``csrc/common/sh.h``; this module checks arguments, accepts the flat ``(B, 27)``
lighting layout, registers the autograd formula and the fake (meta) implementation used by ``torch.compile``.
"""
from __future__ import annotations

import math

import torch

from . import _checks
from ._autograd import first_order_only

__all__ = ["sh_shade", "SH_CONSTANTS"]

_OP = "occrecon::sh_shade"
_BWD = "occrecon::sh_shade_backward"

#: Deep3D's Lambertian SH constants (a: band attenuation, c: normalisation), folded into the basis by the kernel.
SH_CONSTANTS = {
    "a": (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)),
    "c": (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)),
}


@torch.library.register_fake(_OP)
def _sh_shade_fake(normals, albedo, gamma):
    return torch.empty_like(normals, memory_format=torch.contiguous_format)


@torch.library.register_fake(_BWD)
def _sh_shade_backward_fake(grad_out, normals, albedo, gamma):
    return (torch.empty_like(normals, memory_format=torch.contiguous_format),
            torch.empty_like(albedo, memory_format=torch.contiguous_format),
            torch.empty_like(gamma, memory_format=torch.contiguous_format))


def _setup_context(ctx, inputs, output):
    normals, albedo, gamma = inputs
    ctx.save_for_backward(normals, albedo, gamma)


@first_order_only("sh_shade")
def _backward(ctx, grad_out):
    normals, albedo, gamma = ctx.saved_tensors
    if grad_out is None:
        return None, None, None
    gn, ga, gg = torch.ops.occrecon.sh_shade_backward(grad_out.contiguous(), normals, albedo, gamma)
    need = ctx.needs_input_grad
    return gn if need[0] else None, ga if need[1] else None, gg if need[2] else None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def sh_shade(normals: torch.Tensor, albedo: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Lambertian shading under 9-coefficient (band <= 2) spherical-harmonics lighting, per colour channel.

    ``out[b, ..., c] = albedo[b, ..., c] * sum_k gamma[b, k, c] * Y_k(normals[b, ...])`` with Deep3D's basis
    (constants folded in, order and signs of ``compute_color``; see the table in docs/rendering.md and ``csrc/common/sh.h``).

    Args:
        normals: ``(B, ..., 3)`` float32/float64 normals, e.g. per vertex ``(B, V, 3)`` or per pixel
            ``(B, H, W, 3)``. Used as given: pass unit normals (a non-unit normal is not renormalised; the basis
            polynomials are evaluated at it as they stand).
        albedo: same shape as ``normals``, or shared by the batch: ``(1, ..., 3)`` or ``(..., 3)``. Same dtype and
            device as ``normals``.
        gamma: lighting, ``(B, 9, 3)`` (band function k, RGB) or Deep3D's flat ``(B, 27)`` = [R0..R8 | G0..G8 |
            B0..B8]. No ambient offset is added here: Deep3D's initial 0.8 on each channel's DC coefficient belongs
            to the parameterisation (add it to ``gamma[:, 0, :]`` before calling).

    Returns:
        ``(B, ..., 3)`` shaded colour, dtype of ``normals``. Differentiable (exactly) in all three inputs; a
        shared albedo's gradient is summed over the batch. On the CPU every result is bitwise reproducible and
        independent of the thread count; on CUDA the reductions use fixed trees (no atomics), so results are
        reproducible run to run as well.
    """
    _checks.tensor("normals", normals)
    _checks.tensor("albedo", albedo)
    _checks.tensor("gamma", gamma)
    _checks.floating("normals", normals)
    if normals.dim() < 2 or normals.shape[-1] != 3:
        raise ValueError(f"normals must be (B, ..., 3), got shape {tuple(normals.shape)}")
    for name, t in (("albedo", albedo), ("gamma", gamma)):
        if t.dtype != normals.dtype:
            raise TypeError(f"{name} dtype {t.dtype} must equal normals dtype {normals.dtype}")
        _checks.same_device(name, t, "normals", normals)
    b = normals.shape[0]
    inner = tuple(normals.shape[1:-1])
    n = math.prod(inner)
    if tuple(albedo.shape) == tuple(normals.shape):
        alb = albedo.reshape(b, n, 3)
    elif tuple(albedo.shape) in ((1,) + inner + (3,), inner + (3,)):
        alb = albedo.reshape(1, n, 3)
    else:
        raise ValueError(f"albedo must be {tuple(normals.shape)} (like normals) or shared by the batch, "
                         f"{(1,) + inner + (3,)} or {inner + (3,)}; got {tuple(albedo.shape)}")
    if tuple(gamma.shape) == (b, 9, 3):
        g = gamma
    elif tuple(gamma.shape) == (b, 27):
        g = gamma.reshape(b, 3, 9).transpose(1, 2)  # [R9 | G9 | B9] -> (band, RGB)
    else:
        raise ValueError(f"gamma must be (B, 9, 3) or (B, 27) with B = {b}, got {tuple(gamma.shape)}")
    out = torch.ops.occrecon.sh_shade(normals.reshape(b, n, 3).contiguous(), alb.contiguous(), g.contiguous())
    return out.reshape(normals.shape)
