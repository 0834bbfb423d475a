"""nvdiffrast-compatible texture sampling (``texture``, ``texture_construct_mip``), backed by the C++/CUDA kernel.

The per-pixel math lives in ``csrc/common/texture.h`` (conventions in docs/rendering.md, "Texture sampling"); the
op is ``csrc/ops/texture.cpp``. This module checks arguments with messages that name them, builds the mip stack
(a 2 × 2 box filter per level, exactly nvdiffrast's), and registers the autograd formula and the fake (meta)
implementation used by ``torch.compile``. The pure-PyTorch reference is :mod:`occrecon.ops.reference_texture`.

Gradients reach ``tex`` through the mip levels too: a stack built inside the call, or a :class:`TextureMip` from
:func:`texture_construct_mip`, hands each level's gradient back to ``tex`` through the adjoint of the box filter
(as nvdiffrast does, even when the stored levels are stale); a custom stack (a list of tensors) receives its own
gradients and passes none to ``tex``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..ops import _checks
from ..ops._autograd import first_order_only
from .log import logger

__all__ = ["texture", "texture_construct_mip", "TextureMip", "FILTER_MODES", "BOUNDARY_MODES", "MAX_MIP_LEVELS"]

#: nvdiffrast's filter and boundary mode codes (the op's ints).
FILTER_MODES = {"nearest": 0, "linear": 1, "linear-mipmap-nearest": 2, "linear-mipmap-linear": 3}
BOUNDARY_MODES = {"cube": 0, "wrap": 1, "clamp": 2, "zero": 3}
#: levels of the largest texture (65536² down to 1²), the kernel's limit on a stack.
MAX_MIP_LEVELS = 17
_MAX_SIZE = 65536


# ------------------------------------------------------------------------------------------- op registrations
@torch.library.register_fake("occrecon::texture")
def _texture_fake(levels, uv, uv_da, bias, filter, boundary):
    return uv.new_empty((uv.shape[0], uv.shape[1], uv.shape[2], levels[0].shape[-1]))


@torch.library.register_fake("occrecon::texture_backward")
def _texture_backward_fake(levels, uv, uv_da, bias, filter, boundary, grad_out):
    empty = uv.new_empty((0,))
    return ([torch.empty_like(t) for t in levels] + [torch.empty_like(uv)]
            + [torch.empty_like(uv_da) if uv_da is not None and uv_da.numel() > 0 else empty]
            + [torch.empty_like(bias) if bias is not None and bias.numel() > 0 else empty])


def _texture_setup(ctx, inputs, output):
    levels, uv, uv_da, bias, filter, boundary = inputs
    ctx.n_levels = len(levels)
    ctx.has_da, ctx.has_bias = uv_da is not None, bias is not None
    ctx.save_for_backward(*levels, uv, *([uv_da] if uv_da is not None else []), *([bias] if bias is not None else []))
    ctx.filter, ctx.boundary = filter, boundary
    ctx.set_materialize_grads(False)


@first_order_only("texture")
def _texture_backward(ctx, grad_out):
    saved = ctx.saved_tensors
    n = ctx.n_levels
    levels, uv, rest = list(saved[:n]), saved[n], list(saved[n + 1:])
    uv_da = rest.pop(0) if ctx.has_da else None
    bias = rest.pop(0) if ctx.has_bias else None
    if grad_out is None:
        return [None] * n, None, None, None, None, None
    g = torch.ops.occrecon.texture_backward(levels, uv, uv_da, bias, ctx.filter, ctx.boundary, grad_out.contiguous())
    need = ctx.needs_input_grad
    g_levels = list(g[:n])
    g_uv = g[n] if need[1] else None  # zeros in 'nearest' (piecewise constant in uv)
    g_da = g[n + 1] if ctx.has_da and need[2] else None
    g_bias = g[n + 2] if ctx.has_bias and need[3] else None
    return g_levels, g_uv, g_da, g_bias, None, None


torch.library.register_autograd("occrecon::texture", _texture_backward, setup_context=_texture_setup)


# ------------------------------------------------------------------------------------------- mip stack
def _mip_sizes(h: int, w: int, max_mip_level: int | None) -> list[tuple[int, int]]:
    """Sizes of levels 1.. (nvdiffrast's rule): halve each extent > 1 until 1 × 1 or ``max_mip_level`` levels; an
    odd extent > 1 cannot be halved (ValueError)."""
    sizes: list[tuple[int, int]] = []
    limit = -1 if max_mip_level is None else max_mip_level
    while (h > 1 or w > 1) and limit != len(sizes):
        if (h > 1 and h % 2) or (w > 1 and w % 2):
            raise ValueError(
                f"tex: cannot build mip level {len(sizes) + 1} from a {h} x {w} level (an odd extent > 1 cannot be "
                f"halved); resize the texture so that both extents are powers of two, or limit the levels with "
                f"max_mip_level={len(sizes)}")
        h, w = max(h // 2, 1), max(w // 2, 1)
        sizes.append((h, w))
    return sizes


def _box_down(t: torch.Tensor) -> torch.Tensor:
    """One mip level from the previous one ``[N, h, w, C]`` or, for a cube map, ``[N, 6, S, S, C]`` (each face
    alone; 2 × 2 box; 2 × 1 where an extent is 1)."""
    if t.dim() == 5:
        n, f, h, w, c = t.shape
        return _box_down(t.reshape(n * f, h, w, c)).reshape(n, f, max(h // 2, 1), max(w // 2, 1), c)
    n, h, w, c = t.shape
    if h > 1:
        t = 0.5 * (t[:, 0::2] + t[:, 1::2])
    if w > 1:
        t = 0.5 * (t[:, :, 0::2] + t[:, :, 1::2])
    return t


def _box_up_adjoint(g: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adjoint of :func:`_box_down` from ``[..., h // 2, w // 2, C]`` back to ``[..., h, w, C]``: each texel's
    gradient, scaled by the box weight, copied to the texels it averaged (one pass over the larger level)."""
    fh, fw = (2 if h > 1 else 1), (2 if w > 1 else 1)
    *lead, hh, ww, c = g.shape
    g = g * (1.0 / (fh * fw))
    return g.reshape(*lead, hh, 1, ww, 1, c).expand(*lead, hh, fh, ww, fw, c).reshape(*lead, hh * fh, ww * fw, c)


class _MipFromTex(torch.autograd.Function):
    """The stored levels in the forward pass; their gradients to ``tex`` by the box filter's adjoint."""

    @staticmethod
    def forward(ctx, tex, *levels):
        ctx.shapes = [tuple(tex.shape)] + [tuple(t.shape) for t in levels]
        return tuple(t.view_as(t) for t in levels)

    @staticmethod
    @first_order_only("texture_construct_mip")
    def backward(ctx, *grads):
        acc = None
        for l in range(len(grads), 0, -1):  # level l's gradient, plus what the levels above it handed down
            g = grads[l - 1]
            if g is not None:
                acc = g if acc is None else acc + g
            if acc is not None:
                h, w = ctx.shapes[l - 1][-3:-1]
                acc = _box_up_adjoint(acc, h, w)
        return (acc,) + (None,) * len(grads)


class TextureMip:
    """A mip stack built by :func:`texture_construct_mip` (nvdiffrast's ``TextureMipWrapper``).

    Attributes:
        levels: the levels 1.. as tensors ``[Nt, h_l, w_l, C]`` (level 0 is the texture itself).
        texture_size: the shape of the texture it was built from; :func:`texture` refuses another.
        max_mip_level: the limit it was built with (None: down to 1 × 1).
        cube_mode: whether the texture is a cube map ``[Nt, 6, S, S, C]`` (each face filtered alone).
    """

    def __init__(self, levels: Sequence[torch.Tensor], texture_size: tuple, max_mip_level: int | None,
                 cube_mode: bool = False):
        self.levels = tuple(levels)
        self.texture_size = tuple(texture_size)
        self.max_mip_level = max_mip_level
        self.cube_mode = cube_mode

    def __repr__(self) -> str:
        return (f"TextureMip(texture_size={self.texture_size}, levels={len(self.levels)}, "
                f"max_mip_level={self.max_mip_level})")


def _check_max_mip_level(max_mip_level) -> int | None:
    if max_mip_level is None:
        return None
    if isinstance(max_mip_level, bool) or int(max_mip_level) != max_mip_level or max_mip_level < 0:
        raise ValueError(f"max_mip_level must be None or an int >= 0, got {max_mip_level!r}")
    return int(max_mip_level)


def _check_tex(tex, cube: bool) -> None:
    _checks.tensor("tex", tex)
    _checks.floating("tex", tex)
    if cube:
        if tex.dim() != 5 or tex.shape[1] != 6 or tex.shape[2] != tex.shape[3] or min(tex.shape) <= 0:
            raise ValueError(f"tex must be [minibatch, 6, size, size, channels] in cube map mode (square faces "
                             f"+X, -X, +Y, -Y, +Z, -Z), got {tuple(tex.shape)}")
    elif tex.dim() != 4 or min(tex.shape) <= 0:
        raise ValueError(f"tex must be [minibatch, height, width, channels] with every size > 0, got "
                         f"{tuple(tex.shape)}" + (" (a 5-D tex is a cube map: boundary_mode='cube')"
                                                  if tex.dim() == 5 else ""))
    if tex.shape[-3] > _MAX_SIZE or tex.shape[-2] > _MAX_SIZE:
        raise ValueError(f"tex: texture size too large ({tex.shape[-3]} x {tex.shape[-2]}; at most {_MAX_SIZE})")


def texture_construct_mip(tex: torch.Tensor, max_mip_level: int | None = None, cube_mode: bool = False) -> TextureMip:
    """Build a mip stack of ``tex`` once, for several :func:`texture` calls (nvdiffrast's ``texture_construct_mip``).

    Each level is the 2 × 2 box average of the previous one (2 × 1 once an extent is 1), down to 1 × 1 or
    ``max_mip_level`` levels. The stack is a snapshot (no autograd graph is kept); :func:`texture` still sends the
    levels' gradients to ``tex`` as if they were derived from it.

    Raises:
        ValueError: an odd extent > 1 would have to be halved (limit ``max_mip_level`` or resize), bad arguments.
    """
    if not isinstance(cube_mode, bool):
        raise TypeError(f"cube_mode must be True or False, got {cube_mode!r}")
    _check_tex(tex, cube_mode)
    limit = _check_max_mip_level(max_mip_level)
    sizes = _mip_sizes(tex.shape[-3], tex.shape[-2], limit)
    levels = []
    with torch.no_grad():
        t = tex.detach()
        for _ in sizes:
            t = _box_down(t).contiguous()
            levels.append(t)
    return TextureMip(levels, tuple(tex.shape), limit, cube_mode)


def texture(tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor | None = None,
            mip_level_bias: torch.Tensor | None = None, mip: TextureMip | Sequence[torch.Tensor] | None = None,
            filter_mode: str = "auto", boundary_mode: str = "wrap", max_mip_level: int | None = None) -> torch.Tensor:
    """Sample a texture at per-pixel coordinates (nvdiffrast's ``texture``; conventions in docs/rendering.md).

    Args:
        tex: ``[Nt, H, W, C]`` float32/float64 texture, Nt = 1 (shared by every image) or N; row 0 is v = 0.
        uv: ``[N, h, w, 2]`` texture coordinates, same dtype and device (texel centres at ``(i + 0.5) / W``).
        uv_da: optional ``[N, h, w, 4]`` image-space derivatives ``(du/dX, du/dY, dv/dX, dv/dY)`` (what
            ``interpolate(..., diff_attrs=...)`` gives) deciding the mip level: ``log2`` of the footprint's largest
            singular value in base texels.
        mip_level_bias: optional ``[N, h, w]`` added to the level (alone, it is the level).
        mip: a :class:`TextureMip` from :func:`texture_construct_mip`, or a custom stack: a list of the levels 1..
            ``[Nt, max(H >> l, 1), max(W >> l, 1), C]`` (they get their own gradients; ``tex`` gets none through them).
            None: built here from ``tex`` when a mipmap filter needs it.
        filter_mode: ``'auto'`` (``'linear-mipmap-linear'`` when ``uv_da`` or ``mip_level_bias`` is given, else
            ``'linear'``), ``'nearest'``, ``'linear'``, ``'linear-mipmap-nearest'`` (level ``floor(lod)``) or
            ``'linear-mipmap-linear'`` (the two levels around ``lod``, blended).
        boundary_mode: ``'wrap'``, ``'clamp'``, ``'zero'``, or ``'cube'``: ``tex`` is then a cube map
            ``[Nt, 6, S, S, C]`` (faces +X, −X, +Y, −Y, +Z, −Z), ``uv`` a direction ``[N, h, w, 3]`` (any length) and
            ``uv_da`` its derivatives ``[N, h, w, 6]`` (dx/dX, dx/dY, dy/dX, dy/dY, dz/dX, dz/dY).
        max_mip_level: at most this many levels above the base in a stack built here (0: no mipmapping).

    Returns:
        ``[N, h, w, C]``. Differentiable in ``tex`` (and the mip levels), ``uv`` (not in ``'nearest'``: zero),
        ``uv_da`` and ``mip_level_bias`` (in ``'linear-mipmap-linear'``). Non-finite ``uv`` samples read 0 with no
        gradient. CPU results are deterministic and independent of the thread count; CUDA adds texture gradients
        with atomics (rounding may vary run to run).
    """
    if filter_mode not in ("auto", *FILTER_MODES):
        raise ValueError(f"filter_mode must be one of {('auto', *FILTER_MODES)}, got {filter_mode!r}")
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"boundary_mode must be one of {tuple(BOUNDARY_MODES)}, got {boundary_mode!r}")
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if (uv_da is not None or mip_level_bias is not None) else "linear"
    limit = _check_max_mip_level(max_mip_level)
    _check_tex(tex, boundary_mode == "cube")
    _checks.tensor("uv", uv)
    if uv.dtype != tex.dtype:
        raise TypeError(f"uv dtype {uv.dtype} must equal tex dtype {tex.dtype}")
    _checks.same_device("uv", uv, "tex", tex)
    cube = boundary_mode == "cube"
    uvc, dac = (3, 6) if cube else (2, 4)
    if uv.dim() != 4 or uv.shape[-1] != uvc or min(uv.shape) <= 0:
        raise ValueError(f"uv must be [minibatch, height, width, {uvc}] with every size > 0"
                         f"{' (a direction, cube map mode)' if cube else ''}, got {tuple(uv.shape)}")
    n, h, w = uv.shape[:3]
    if tex.shape[0] not in (1, n):
        raise ValueError(f"tex minibatch {tex.shape[0]} must be 1 or uv's minibatch {n}")
    mipmapped = "mipmap" in filter_mode
    if mipmapped and uv_da is None and mip_level_bias is None:
        raise ValueError(f"filter_mode={filter_mode!r} needs uv_da and/or mip_level_bias")
    if mipmapped and limit == 0:
        filter_mode, mipmapped = "linear", False
    levels = [tex]
    if mipmapped:
        for name, t, shape in (("uv_da", uv_da, (n, h, w, dac)), ("mip_level_bias", mip_level_bias, (n, h, w))):
            if t is None:
                continue
            _checks.tensor(name, t)
            if t.dtype != tex.dtype:
                raise TypeError(f"{name} dtype {t.dtype} must equal tex dtype {tex.dtype}")
            _checks.same_device(name, t, "tex", tex)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(t.shape)}")
        levels += _mip_levels(tex, mip, limit, cube)
    else:
        uv_da = mip_level_bias = None
    return torch.ops.occrecon.texture([t.contiguous() for t in levels], uv.contiguous(),
                                      None if uv_da is None else uv_da.contiguous(),
                                      None if mip_level_bias is None else mip_level_bias.contiguous(),
                                      FILTER_MODES[filter_mode], BOUNDARY_MODES[boundary_mode])


def _mip_levels(tex: torch.Tensor, mip, limit: int | None, cube: bool) -> list[torch.Tensor]:
    """Levels 1.. for a mipmapped call: from ``mip`` or built here; differentiable as the module docstring says."""
    if mip is None:
        mip = texture_construct_mip(tex, limit, cube)
        if not torch.compiler.is_compiling():
            logger.info("texture: built a mip stack of %d levels for a %s texture (pass mip= to reuse one)",
                        len(mip.levels), list(tex.shape))
    if isinstance(mip, TextureMip):
        if mip.texture_size != tuple(tex.shape) or mip.cube_mode != cube:
            raise ValueError(f"mip was built for a {'cube map' if mip.cube_mode else 'texture'} of shape "
                             f"{list(mip.texture_size)}, not this {'cube map' if cube else 'texture'} of shape "
                             f"{list(tex.shape)}")
        if not mip.levels:
            return []
        for t in mip.levels:
            _checks.same_device("mip", t, "tex", tex)
        return list(_MipFromTex.apply(tex, *mip.levels))
    if not isinstance(mip, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in mip):
        raise TypeError(f"mip must be a TextureMip (texture_construct_mip) or a list of tensors, got "
                        f"{type(mip).__name__}")
    if len(mip) + 1 > MAX_MIP_LEVELS:
        raise ValueError(f"mip holds {len(mip)} levels; at most {MAX_MIP_LEVELS - 1}")
    nt, hh, ww, c = tex.shape[0], tex.shape[-3], tex.shape[-2], tex.shape[-1]
    for i, t in enumerate(mip, start=1):
        want = (nt, *((6,) if cube else ()), max(hh >> i, 1), max(ww >> i, 1), c)
        if tuple(t.shape) != want:
            raise ValueError(f"mip[{i - 1}] (level {i}) must be {list(want)}, got {list(t.shape)}")
        if t.dtype != tex.dtype:
            raise TypeError(f"mip[{i - 1}] dtype {t.dtype} must equal tex dtype {tex.dtype}")
        _checks.same_device(f"mip[{i - 1}]", t, "tex", tex)
    return list(mip)
