"""First-order-only gradients for the custom ops: a clear error instead of a silent None under double backward.

The kernels' backward formulas are themselves custom ops without a derivative. Run under ``create_graph=True``,
PyTorch would hand their outputs an autograd node that warns and returns None, so a Hessian-vector product or a
gradient penalty through a rasterizer would silently be wrong. :func:`first_order_only` wraps a backward formula
so that its outputs carry a node that raises, naming the op, as soon as anything differentiates through them;
first-order use (and create_graph=True for other parts of a graph) is unaffected.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

__all__ = ["first_order_only", "SecondOrderError"]


class SecondOrderError(RuntimeError):
    """Raised when a second-order gradient is asked of an op that has only first-order gradients."""


class _Raise(torch.autograd.Function):
    """Copies of the first ``n`` tensors in the forward pass; the remaining tensors (the op's saved inputs and the
    incoming gradients) only connect the node to the graph. The backward raises :class:`SecondOrderError`."""

    @staticmethod
    def forward(ctx, op: str, n: int, *tensors: torch.Tensor):
        ctx.op = op
        return tuple(t.clone() for t in tensors[:n])

    @staticmethod
    def backward(ctx, *_):
        raise SecondOrderError(
            f"occrecon.{ctx.op} has first-order gradients only: differentiating its gradient (create_graph=True, "
            f"double backward, Hessian-vector products) is not supported")


def first_order_only(op: str) -> Callable:
    """Decorate the backward formula ``fn(ctx, *grads)`` registered for ``op`` (see the module docstring)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def backward(ctx, *grads):
            if not torch.is_grad_enabled() or torch.compiler.is_compiling():
                return fn(ctx, *grads)
            with torch.no_grad():  # create_graph=True: compute, then mark the results as not differentiable
                out = fn(ctx, *grads)
            single = not isinstance(out, tuple)
            items = (out,) if single else out
            where = [i for i, t in enumerate(items) if isinstance(t, torch.Tensor)]
            links = [t for t in (*ctx.saved_tensors, *grads) if isinstance(t, torch.Tensor) and t.requires_grad]
            if not where or not links:
                return out
            marked = _Raise.apply(op, len(where), *(items[i] for i in where), *links)
            result = list(items)
            for i, t in zip(where, marked):
                result[i] = t
            return result[0] if single else tuple(result)

        return backward

    return wrap
