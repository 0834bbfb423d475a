"""nvdiffrast-compatible rasterize and interpolate, backed by the C++/CUDA kernels (csrc/common/rasterize.h,
csrc/common/interpolate.h). ``import occrecon.render as dr`` works where ``import nvdiffrast.torch as dr`` did; the
tensors' device decides where the kernels run, so code written for nvdiffrast also runs on a CPU-only machine.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..ops import _checks
from ..ops._autograd import first_order_only
from ..ops.triangle_id import MAX_FLOAT_TRIANGLES

__all__ = ["RasterizeCudaContext", "RasterizeGLContext", "rasterize", "interpolate", "DepthPeeler"]


class RasterizeCudaContext:
    """nvdiffrast's rasterizer context. Here it holds no state: kernels run where the tensors are (CPU or CUDA).

    Args:
        device: accepted for compatibility (``torch.device``, ``'cuda:1'``, int or None); only recorded.
    """

    def __init__(self, device: torch.device | str | int | None = None):
        self.device = None if device is None else torch.device(device if not isinstance(device, int) else
                                                                f"cuda:{device}")
        self.active_depth_peeler = None


class RasterizeGLContext(RasterizeCudaContext):
    """Deprecated alias of :class:`RasterizeCudaContext`, as in nvdiffrast 0.4 (Deep3D-style code constructs it)."""

    def __init__(self, output_db: bool = True, mode: str = "automatic", device=None):
        warnings.warn("RasterizeGLContext is deprecated; it is RasterizeCudaContext (works for CPU tensors too)",
                      DeprecationWarning, stacklevel=2)
        super().__init__(device=device)

    def set_context(self) -> None:
        """No-op (there is no OpenGL context)."""

    def release_context(self) -> None:
        """No-op (there is no OpenGL context)."""


# ------------------------------------------------------------------------------------------- op registrations
@torch.library.register_fake("occrecon::rasterize")
def _rasterize_fake(pos, tri, height, width, ranges, grad_db, peel=None):
    b = pos.shape[0] if pos.dim() == 3 else ranges.shape[0]
    return pos.new_empty((b, height, width, 4)), pos.new_empty((b, height, width, 4))


@torch.library.register_fake("occrecon::rasterize_backward")
def _rasterize_backward_fake(pos, tri, rast, grad_rast, grad_db):
    return torch.empty_like(pos)


def _rasterize_setup(ctx, inputs, output):
    pos, tri, _h, _w, _ranges, grad_db = inputs[:6]  # (inputs[6]: the peel layer, no gradient)
    rast, _db = output
    ctx.save_for_backward(pos, tri, rast)
    ctx.grad_db = grad_db
    ctx.set_materialize_grads(False)  # an unused rast_db output must not cost a zero-filled [B,H,W,4] gradient


@first_order_only("rasterize")
def _rasterize_backward(ctx, grad_rast, grad_db):
    pos, tri, rast = ctx.saved_tensors
    if grad_rast is None and (grad_db is None or not ctx.grad_db):
        return None, None, None, None, None, None, None
    if grad_rast is None:
        grad_rast = torch.zeros_like(rast)
    g_db = grad_db if ctx.grad_db else None
    grad_pos = torch.ops.occrecon.rasterize_backward(pos, tri, rast, grad_rast, g_db)
    return grad_pos, None, None, None, None, None, None


torch.library.register_autograd("occrecon::rasterize", _rasterize_backward, setup_context=_rasterize_setup)


@torch.library.register_fake("occrecon::interpolate")
def _interpolate_fake(attr, rast, tri, rast_db, diff_attrs):
    b, h, w, _ = rast.shape
    return attr.new_empty((b, h, w, attr.shape[2])), attr.new_empty((b, h, w, 2 * len(diff_attrs)))


@torch.library.register_fake("occrecon::interpolate_backward")
def _interpolate_backward_fake(attr, rast, tri, rast_db, diff_attrs, grad_out, grad_da):
    g_db = torch.empty_like(rast_db) if len(diff_attrs) > 0 else rast.new_empty((0,))
    return torch.empty_like(attr), torch.empty_like(rast), g_db


def _interpolate_setup(ctx, inputs, output):
    attr, rast, tri, rast_db, diff_attrs = inputs
    ctx.save_for_backward(attr, rast, tri, rast_db)
    ctx.diff_attrs = diff_attrs
    ctx.set_materialize_grads(False)


@first_order_only("interpolate")
def _interpolate_backward(ctx, grad_out, grad_da):
    attr, rast, tri, rast_db = ctx.saved_tensors
    if grad_out is None and grad_da is None:
        return None, None, None, None, None
    if grad_out is None:
        b, h, w, _ = rast.shape
        grad_out = attr.new_zeros((b, h, w, attr.shape[2]))
    g_attr, g_rast, g_db = torch.ops.occrecon.interpolate_backward(attr, rast, tri, rast_db, ctx.diff_attrs,
                                                                     grad_out, grad_da)
    return g_attr, g_rast, None, (g_db if len(ctx.diff_attrs) > 0 else None), None


torch.library.register_autograd("occrecon::interpolate", _interpolate_backward, setup_context=_interpolate_setup)


# ------------------------------------------------------------------------------------------- public API
def _check_tri(tri: object, num_vertices: int, device: torch.device) -> torch.Tensor:
    _checks.tensor("tri", tri)
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be [F, 3], got shape {tuple(tri.shape)}")
    if tri.dtype != torch.int32:
        raise TypeError(f"tri must be int32 (as in nvdiffrast), got {tri.dtype}")
    if tri.device != device:
        raise ValueError(f"tri is on {tri.device} but pos/attr is on {device}")
    if tri.shape[0] > MAX_FLOAT_TRIANGLES:
        raise ValueError(f"tri has {tri.shape[0]} triangles; rast's triangle ids hold at most {MAX_FLOAT_TRIANGLES}")
    # Value checks read the data: done in eager mode here (with this message) and always in C++ inside the op, so a
    # compiled graph (which cannot branch on data) is still protected.
    if tri.numel() > 0 and not torch.compiler.is_compiling():
        lo, hi = _checks.index_range(tri)
        if lo < 0 or hi >= num_vertices:
            raise ValueError(f"tri indices must lie in [0, {num_vertices}), got [{lo}, {hi}]")
    return tri.contiguous()


def rasterize(glctx: RasterizeCudaContext | None, pos: torch.Tensor, tri: torch.Tensor,
              resolution: Sequence[int], ranges: torch.Tensor | None = None,
              grad_db: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize triangles (nvdiffrast's ``rasterize``).

    Args:
        glctx: a :class:`RasterizeCudaContext` / :class:`RasterizeGLContext`, or None.
        pos: clip-space vertex positions (x, y, z, w), float32 (float64 also works, e.g. for gradcheck).
            ``[B, V, 4]``: instanced mode, one mesh per image. ``[V, 4]``: range mode with ``ranges``.
        tri: ``[F, 3]`` int32 vertex indices, in ``[0, V)`` (checked; and should a write that bypasses PyTorch's
            version counter, such as ``tri.data[...] = ...``, slip past the memoised check, the kernels skip any
            triangle naming a vertex outside ``[0, V)``: never an out-of-bounds read).
        resolution: ``(height, width)``, each in [1, 16384].
        ranges: range mode only: int32 ``[B, 2]`` (first triangle, triangle count) per image, on the CPU. Triangle ids
            in the output are global indices into ``tri``. Ignored in instanced mode.
        grad_db: whether gradients arriving at ``rast_db`` flow into ``pos``.

    Returns:
        ``rast [B, H, W, 4]`` = (u, v, z/w, triangle_id + 1), zeros on empty pixels, row 0 = bottom row (OpenGL).
        Ids are stored bit-exactly as nvdiffrast stores them: up to 2^24 as the float value, above that (float32)
        as the float whose bit pattern is ``0x4a800000 + id + 1``; read them with
        :func:`occrecon.render.triangle_index` (meshes of up to 889,192,446 triangles);
        ``rast_db [B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY) in pixels (Y = row direction, up).

    Conventions are nvdiffrast's (``../shared/golden/README.md``): pixel centres at NDC ((2i+1)/W - 1, (2j+1)/H - 1),
    perspective-correct barycentrics where u weights ``tri[:,0]`` and v ``tri[:,1]``, coverage on 1/16-px snapped
    vertices with the left/bottom fill rule (watertight), both windings drawn, nearest z/w wins. Differences from
    nvdiffrast, all documented: a triangle with any vertex at ``w <= 0`` or non-finite is dropped (nvdiffrast clips
    it); near/far clipping is exact per fragment (z/w outside [-1, 1] is discarded); exact depth ties go to the lower
    triangle index (nvdiffrast: implementation-defined). Gradients flow to ``pos`` through u, v (and ``rast_db`` when
    ``grad_db``), exactly (no epsilon); z/w and ids get none. No silhouette gradients here: see ``antialias``.
    CPU results are deterministic and independent of the thread count; CUDA forward results are deterministic, the
    CUDA position gradient is accumulated with atomics (order-dependent rounding).
    """
    if glctx is not None and not isinstance(glctx, RasterizeCudaContext):
        raise TypeError(f"glctx must be a RasterizeCudaContext, RasterizeGLContext or None, got {type(glctx).__name__}")
    if glctx is not None and glctx.active_depth_peeler is not None:
        raise RuntimeError("rasterize: this context has an active DepthPeeler; call its rasterize_next_layer() "
                           "(or leave its with-block first)")
    pos, tri, height, width, ranges = _check_rasterize_args(pos, tri, resolution, ranges, grad_db)
    return torch.ops.occrecon.rasterize(pos, tri, height, width, ranges, grad_db)


def _check_rasterize_args(pos, tri, resolution, ranges, grad_db):
    """rasterize's argument checks: ``(pos, tri, height, width, ranges)`` ready for the op."""
    _checks.tensor("pos", pos)
    if pos.dim() not in (2, 3) or pos.shape[-1] != 4:
        raise ValueError(f"pos must be [B, V, 4] (instanced) or [V, 4] (range mode), got shape {tuple(pos.shape)}")
    _checks.floating("pos", pos)
    if not isinstance(grad_db, bool):
        raise TypeError(f"grad_db must be a bool, got {type(grad_db).__name__}")
    try:
        height, width = (int(v) for v in resolution)
    except (TypeError, ValueError):
        raise TypeError(f"resolution must be a (height, width) pair of ints, got {resolution!r}") from None
    if not (1 <= height <= 16384 and 1 <= width <= 16384):
        raise ValueError(f"resolution must be in [1, 16384] each, got {height}x{width}")
    tri = _check_tri(tri, pos.shape[-2], pos.device)
    if pos.dim() == 2:
        if ranges is None:
            raise ValueError("range mode (pos [V, 4]) needs ranges, an int32 [B, 2] CPU tensor")
        _checks.tensor("ranges", ranges)
        if ranges.dim() != 2 or ranges.shape[1] != 2 or ranges.dtype != torch.int32 or ranges.device.type != "cpu":
            raise ValueError(f"ranges must be an int32 CPU tensor [B, 2], got {tuple(ranges.shape)} {ranges.dtype} "
                             f"on {ranges.device}")
        if ranges.numel() and not torch.compiler.is_compiling() and (
                bool((ranges < 0).any()) or int((ranges[:, 0] + ranges[:, 1]).max()) > tri.shape[0]):
            raise ValueError(f"ranges must be non-negative (first, count) pairs within the {tri.shape[0]} triangles")
        ranges = ranges.contiguous()
    else:
        ranges = None
    return pos.contiguous(), tri, height, width, ranges


class DepthPeeler:
    """Order-independent layers (nvdiffrast's ``DepthPeeler``): each :meth:`rasterize_next_layer` returns, per pixel,
    the nearest surface behind the previous layer's.

    ``with DepthPeeler(glctx, pos, tri, resolution) as peeler:`` then ``rast, rast_db = peeler.rasterize_next_layer()``
    any number of times: the first call is :func:`rasterize`; call k keeps, at each pixel, only fragments behind
    the one layer k − 1 holds there (a larger (depth, triangle id) key: strictly behind it, or at the same depth
    with a higher triangle id, so coincident triangles come out one per layer, in id order; nvdiffrast shows only
    one of them). A pixel empty in one layer stays empty; once every surface is peeled the layers are zeros.
    Gradients flow to ``pos`` as from :func:`rasterize`. Arguments as :func:`rasterize`'s, read at each call (so
    ``pos`` may not change between the layers of one peel). While a peeler is active its context refuses
    :func:`rasterize` and a second peeler; a peeler cannot be entered twice.
    """

    def __init__(self, glctx: RasterizeCudaContext | None, pos: torch.Tensor, tri: torch.Tensor,
                 resolution: Sequence[int], ranges: torch.Tensor | None = None, grad_db: bool = True):
        if glctx is not None and not isinstance(glctx, RasterizeCudaContext):
            raise TypeError(f"glctx must be a RasterizeCudaContext, RasterizeGLContext or None, "
                            f"got {type(glctx).__name__}")
        self.glctx = glctx
        self._args = _check_rasterize_args(pos, tri, resolution, ranges, grad_db)
        self.grad_db = grad_db
        self._prev: torch.Tensor | None = None
        self._state = "new"  # new -> active -> done

    def __enter__(self) -> DepthPeeler:
        if self._state == "done":
            raise RuntimeError("Cannot re-enter a terminated depth peeling operation")
        if self._state == "active":
            raise RuntimeError("this DepthPeeler is already active")
        if self.glctx is not None:
            if self.glctx.active_depth_peeler is not None:
                raise RuntimeError("Cannot have multiple depth peelers active simultaneously in a rasterization "
                                   "context")
            self.glctx.active_depth_peeler = self
        self._state = "active"
        return self

    def __exit__(self, *exc) -> None:
        if self.glctx is not None and self.glctx.active_depth_peeler is self:
            self.glctx.active_depth_peeler = None
        self._state = "done"
        self._prev = None
        self._args = None
        return None

    def rasterize_next_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next layer: ``(rast, rast_db)`` as :func:`rasterize` returns them."""
        if self._state != "active":
            raise RuntimeError("rasterize_next_layer() needs an active DepthPeeler (inside its with-block)")
        pos, tri, height, width, ranges = self._args
        rast, rast_db = torch.ops.occrecon.rasterize(pos, tri, height, width, ranges, self.grad_db, self._prev)
        self._prev = rast.detach()
        return rast, rast_db


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, rast_db: torch.Tensor | None = None,
                diff_attrs: str | Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate vertex attributes over a rasterized image (nvdiffrast's ``interpolate``).

    Args:
        attr: ``[B, V, C]``, ``[1, V, C]`` or ``[V, C]`` (broadcast over the batch; the form for range mode), float.
        rast: ``[B, H, W, 4]`` from :func:`rasterize`.
        tri: ``[F, 3]`` int32, the same triangles.
        rast_db: ``[B, H, W, 4]`` from :func:`rasterize`; needed with ``diff_attrs``.
        diff_attrs: ``'all'`` or a list of attribute indices whose image-space derivatives to return.

    Returns:
        ``out [B, H, W, C]`` = u·A[t0] + v·A[t1] + (1−u−v)·A[t2], zero on empty pixels, and ``out_da``:
        ``[B, H, W, 2·len(diff_attrs)]`` with (dA/dX, dA/dY) of each selected attribute in order, or an empty
        ``[B, H, W, 0]`` tensor. Differentiable w.r.t. ``attr``, ``rast`` (u, v) and ``rast_db``.
    """
    _checks.tensor("attr", attr)
    _checks.tensor("rast", rast)
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    if attr.dim() != 3:
        raise ValueError(f"attr must be [B, V, C], [1, V, C] or [V, C], got shape {tuple(attr.shape)}")
    _checks.floating("attr", attr)
    if rast.dim() != 4 or rast.shape[3] != 4:
        raise ValueError(f"rast must be [B, H, W, 4], got shape {tuple(rast.shape)}")
    _checks.same_device("rast", rast, "attr", attr)
    if rast.dtype != attr.dtype:
        raise TypeError(f"rast dtype {rast.dtype} must equal attr dtype {attr.dtype}")
    if attr.shape[0] not in (1, rast.shape[0]):
        raise ValueError(f"attr batch {attr.shape[0]} must be 1 or rast's batch {rast.shape[0]}")
    tri = _check_tri(tri, attr.shape[1], attr.device)
    c = attr.shape[2]
    if diff_attrs is None:
        diff: list[int] = []
    elif isinstance(diff_attrs, str):
        if diff_attrs != "all":
            raise ValueError(f"diff_attrs must be 'all', a list of indices or None, got {diff_attrs!r}")
        diff = list(range(c))
    else:
        diff = [int(i) for i in diff_attrs]
        bad = [i for i in diff if not 0 <= i < c]
        if bad:
            raise ValueError(f"diff_attrs indices {bad} out of range for {c} attributes")
    if diff:
        if rast_db is None:
            raise ValueError("diff_attrs needs rast_db (the second output of rasterize)")
        _checks.tensor("rast_db", rast_db)
        if rast_db.shape != rast.shape:
            raise ValueError(f"rast_db shape {tuple(rast_db.shape)} must equal rast shape {tuple(rast.shape)}")
        rast_db = rast_db.contiguous()
    else:
        rast_db = None
    return torch.ops.occrecon.interpolate(attr.contiguous(), rast.contiguous(), tri, rast_db, diff)
