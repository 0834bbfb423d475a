"""Area-weighted vertex normals of triangle meshes, backed by the C++/CUDA kernel (``csrc/common/normals.h``).

The kernel builds a vertex → triangle adjacency on every call and gathers the face vectors per vertex (no
scatter, no atomics): forward and backward are deterministic on both devices and independent of the CPU thread
count. The pure-PyTorch reference is :func:`occrecon.ops.reference.vertex_normals` (``index_add``).
"""
from __future__ import annotations

import torch

from . import _checks
from ._autograd import first_order_only

__all__ = ["vertex_normals"]

_OP = "occrecon::vertex_normals"
_BWD = "occrecon::vertex_normals_backward"


@torch.library.register_fake(_OP)
def _vertex_normals_fake(vertices, tri, eps):
    b, v, _ = vertices.shape
    return vertices.new_empty((b, v, 3)), vertices.new_empty((b, v))


@torch.library.register_fake(_BWD)
def _vertex_normals_backward_fake(grad_normals, vertices, tri, normals, norms, eps):
    return torch.empty_like(vertices, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    vertices, tri, eps = inputs
    normals, norms = output
    ctx.save_for_backward(vertices, tri, normals, norms)
    ctx.eps = eps
    ctx.mark_non_differentiable(norms)
    ctx.set_materialize_grads(False)


@first_order_only("vertex_normals")
def _backward(ctx, grad_normals, _grad_norms):
    vertices, tri, normals, norms = ctx.saved_tensors
    if grad_normals is None or not ctx.needs_input_grad[0]:
        return None, None, None
    grad = torch.ops.occrecon.vertex_normals_backward(grad_normals.contiguous(), vertices, tri, normals, norms,
                                                      ctx.eps)
    return grad, None, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def vertex_normals(vertices: torch.Tensor, tri: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals, differentiable, batched.

    Args:
        vertices: ``(B, V, 3)`` or ``(V, 3)`` float32/float64.
        tri: ``(F, 3)`` integer vertex indices in ``[0, V)`` (counter-clockwise triangles give outward normals);
            int32 is used as is, other integer dtypes are converted.
        eps: floor of the norm: a vertex without triangles (or whose face vectors cancel) gets
            ``sum / eps`` — a zero normal for an isolated vertex — rather than NaN.

    Returns:
        ``(B, V, 3)`` (or ``(V, 3)``): ``n_v = Σ_f c_f / max(|Σ_f c_f|, eps)`` over the triangles f of vertex v,
        ``c_f = (p1 − p0) × (p2 − p0)`` (twice the area times the unit face normal). Differentiable once in
        ``vertices`` (exact; the clamp passes the gradient where the norm is ≥ eps, like ``clamp_min``).
        Works under ``torch.compile`` and passes ``torch.library.opcheck``.

    Raises:
        TypeError / ValueError naming the argument: not tensors, wrong shapes or dtypes, different devices, an
        index outside ``[0, V)``, ``eps`` not positive.
    """
    _checks.tensor("vertices", vertices)
    _checks.tensor("tri", tri)
    _checks.floating("vertices", vertices)
    squeeze = vertices.dim() == 2
    v = vertices.unsqueeze(0) if squeeze else vertices
    if v.dim() != 3 or v.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3) or (V, 3), got shape {tuple(vertices.shape)}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be (F, 3), got shape {tuple(tri.shape)}")
    if tri.dtype.is_floating_point or tri.dtype == torch.bool or tri.dtype.is_complex:
        raise TypeError(f"tri must be an integer tensor, got {tri.dtype}")
    _checks.same_device("tri", tri, "vertices", vertices)
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0 and eps < float("inf")):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    info = torch.finfo(v.dtype)
    if not info.tiny <= eps <= info.max:  # e.g. 1e-300 is 0 in float32: 0/0 = NaN normals
        raise ValueError(f"eps = {eps!r} is not a normal {v.dtype} number (must lie in [{info.tiny}, {info.max}])")
    if tri.numel() > 0 and not torch.compiler.is_compiling():
        lo, hi = _checks.index_range(tri)
        if lo < 0 or hi >= v.shape[1]:
            raise ValueError(f"tri indices must lie in [0, {v.shape[1]}), got [{lo}, {hi}]")
    t = tri if tri.dtype == torch.int32 else tri.to(torch.int32)
    n, _ = torch.ops.occrecon.vertex_normals(v.contiguous(), t.contiguous(), float(eps))
    return n[0] if squeeze else n
