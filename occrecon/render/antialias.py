"""Analytic edge antialiasing with silhouette gradients, nvdiffrast's ``antialias``, backed by the C++/CUDA kernel.

The per-element math lives in ``csrc/common/antialias.h``; this module checks arguments and registers the
autograd formula and the fake (meta) implementations used by ``torch.compile``. A readable pure-PyTorch version
of the forward pass is :func:`occrecon.ops.reference_antialias.antialias`.
"""
from __future__ import annotations

import math

import torch

from occrecon import _C  # noqa: F401  (the extension: defines torch.ops.occrecon.antialias*)
from occrecon.ops import _checks
from occrecon.ops._autograd import first_order_only

__all__ = ["antialias", "antialias_construct_topology_hash"]

_OP = "occrecon::antialias"
_BWD = "occrecon::antialias_backward"
_TOPO = "occrecon::antialias_construct_topology_hash"


@torch.library.register_fake(_TOPO)
def _topology_fake(tri):
    return tri.new_empty((tri.shape[0], 3))


@torch.library.register_fake(_OP)
def _antialias_fake(color, rast, pos, tri, topology_hash, pos_gradient_boost=1.0):
    return torch.empty_like(color)


@torch.library.register_fake(_BWD)
def _antialias_backward_fake(grad_out, color, rast, pos, tri, topology_hash):
    return torch.empty_like(color), torch.empty_like(pos)


def _setup_context(ctx, inputs, output):
    color, rast, pos, tri, topology_hash, pos_gradient_boost = inputs
    ctx.save_for_backward(color, rast, pos, tri, topology_hash)
    ctx.pos_gradient_boost = pos_gradient_boost


@first_order_only("antialias")
def _backward(ctx, grad_out):
    color, rast, pos, tri, topology_hash = ctx.saved_tensors
    grad_color, grad_pos = torch.ops.occrecon.antialias_backward(grad_out.contiguous(), color, rast, pos, tri,
                                                                 topology_hash)
    if ctx.pos_gradient_boost != 1.0:
        grad_pos = grad_pos * ctx.pos_gradient_boost
    return (grad_color if ctx.needs_input_grad[0] else None, None,
            grad_pos if ctx.needs_input_grad[2] else None, None, None, None)


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def _check_tri(tri: object) -> torch.Tensor:
    _checks.tensor("tri", tri)
    if tri.dim() != 2 or tri.shape[1] != 3 or tri.shape[0] < 1:
        raise ValueError(f"tri must be (F, 3) with F >= 1, got shape {tuple(tri.shape)}")
    if tri.dtype != torch.int32:
        raise TypeError(f"tri must be int32, got {tri.dtype}")
    return tri


def _check_tri_values(tri: torch.Tensor, num_vertices: int | None) -> None:
    """Vertex indices in [0, num_vertices). A data-dependent check: skipped while torch.compile traces (the
    kernels themselves never read out of bounds: see the antialias docstring)."""
    if torch.compiler.is_compiling():
        return
    lo, hi = _checks.index_range(tri)
    if lo < 0:
        raise ValueError(f"tri holds a negative vertex index ({lo})")
    if num_vertices is not None and hi >= num_vertices:
        raise ValueError(f"tri holds vertex index {hi}, but pos has only {num_vertices} vertices")


def antialias_construct_topology_hash(tri: torch.Tensor) -> torch.Tensor:
    """Edge adjacency of a triangle list, for :func:`antialias` (build it once when ``tri`` is constant).

    Args:
        tri: ``(F, 3)`` int32 vertex indices, >= 0; on the CPU or a CUDA device.

    Returns:
        ``(F, 3)`` int32 on ``tri``'s device. Entry ``[f, k]`` is the vertex opposite edge ``k`` of triangle
        ``f`` (the edge that does not touch corner ``k``: from ``tri[f, k+1]`` to ``tri[f, k+2]``, mod 3) in the
        neighbouring triangle across that edge, or -1 when there is none. With more than two triangles on an
        edge, the edge keeps the first two distinct opposite vertices in triangle order (as nvdiffrast's hash
        keeps the first two inserted); a triangle whose own opposite vertex is not one of them, and any edge
        of a degenerate triangle (a repeated vertex), reads -1: always a silhouette. Duplicated triangles see
        each other's edges as boundaries.

    Unlike nvdiffrast's opaque hash object this is a plain tensor, built by a stable sort of the edge keys and
    a binary search per half-edge: the same result on every run and on every device. Silhouettes are found by
    vertex index: a vertex shared by several triangles must have one index (as in nvdiffrast).
    """
    _check_tri(tri)
    _check_tri_values(tri, None)
    return torch.ops.occrecon.antialias_construct_topology_hash(tri.contiguous())


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology_hash: torch.Tensor | None = None, pos_gradient_boost: float = 1.0) -> torch.Tensor:
    """Analytic antialiasing of silhouette and occlusion edges (nvdiffrast's ``antialias``).

    For every pair of horizontally or vertically adjacent pixels whose triangle ids in ``rast`` differ, the
    nearer triangle (smaller z/w; an empty pixel never wins, equal depth picks the right/upper pixel) is
    intersected with the line through both pixel centres. If it leaves that line through a silhouette edge (an
    edge with no neighbour triangle, or whose neighbour folds behind it; found via ``topology_hash``), the edge
    is steeper than 45 degrees to the segment and crosses it at distance ``dc`` in (-1/16, 17/16) px from the
    triangle's pixel centre, the pixel on whose half the edge lies is blended towards the other by
    ``|1/2 - clamp(dc, 0, 1)|``: ``out[p] = color[p] + alpha * (color[q] - color[p])``. Several segments can
    blend one pixel; their effects add.

    Args:
        color: ``(B, H, W, C)`` float32 or float64 image, rows bottom-up (nvdiffrast memory order).
        rast: ``(B, H, W, 4)`` float32 (or float64, read as float32) output of rasterize: ``(u, v, z/w, triangle_id + 1)``, 0 = empty.
            Only channels 2 and 3 are read.
        pos: clip-space vertex positions ``(x, y, z, w)``, same dtype as ``color``: ``(B, V, 4)`` (instanced
            mode, one vertex set per image) or ``(V, 4)`` (range mode: the triangle ids in ``rast`` index the
            whole ``tri``, all images share the vertices).
        tri: ``(F, 3)`` int32 vertex indices in ``[0, V)``.
        topology_hash: ``(F, 3)`` int32 from :func:`antialias_construct_topology_hash`; built here if None.
        pos_gradient_boost: multiplier for the gradient that flows to ``pos``.

    Returns:
        ``(B, H, W, C)``, dtype of ``color``. Pixels not next to a silhouette crossing are copied unchanged.

    Gradients flow to ``color`` (exact) and to the x, y and w of the crossing edge's two vertices in ``pos``
    (z gets none), with nvdiffrast's regularised ``1 / (dy + copysign(1e-3 px, dy))`` and no position gradient
    where alpha saturates at 1/2; ``rast`` gets none. On the CPU both passes are deterministic: gathers for the
    image and colour gradient, a serial per-image scatter for the position gradient (images in parallel, summed
    in index order in range mode). On CUDA the image and colour gradient are deterministic gathers; the
    position gradient uses ``atomicAdd``, so its last bits may vary from run to run.

    Out-of-range data never causes an out-of-bounds read: a pixel whose id is not in ``[1, F]`` counts as
    empty or is skipped (no blend, no gradient), as in nvdiffrast, and a topology entry outside ``[0, V)``
    counts as "no neighbour". ``tri`` itself is checked here (not while ``torch.compile`` traces).

    Differences from nvdiffrast: float64 is supported; inputs need not be contiguous (they are copied); the
    topology is a plain tensor; an edge crossing exactly at the midpoint (alpha = +0.0) also passes its
    position gradient (nvdiffrast drops it for alpha = +0.0 only, a measure-zero case).
    """
    _checks.tensor("color", color)
    _checks.tensor("rast", rast)
    _checks.tensor("pos", pos)
    _check_tri(tri)
    if color.dim() != 4 or min(color.shape) < 1:
        raise ValueError(f"color must be (B, H, W, C) with all sizes >= 1, got shape {tuple(color.shape)}")
    _checks.floating("color", color)
    b, h, w, _ = color.shape
    if rast.dim() != 4 or tuple(rast.shape) != (b, h, w, 4):
        raise ValueError(f"rast must be (B, H, W, 4) = ({b}, {h}, {w}, 4), got shape {tuple(rast.shape)}")
    if rast.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"rast must be float32 or float64, got {rast.dtype}")
    rast = rast.float()  # the kernel reads (z/w, id) in float32: ids are exact up to 2^24 triangles
    if not ((pos.dim() == 3 and pos.shape[0] == b and pos.shape[2] == 4) or (pos.dim() == 2 and pos.shape[1] == 4)):
        raise ValueError(f"pos must be (B, V, 4) with B = {b}, or (V, 4), got shape {tuple(pos.shape)}")
    num_vertices = pos.shape[-2]
    if num_vertices < 1:
        raise ValueError("pos must hold at least one vertex")
    if pos.dtype != color.dtype:
        raise TypeError(f"pos dtype {pos.dtype} must equal color dtype {color.dtype}")
    _checks.same_device("rast", rast, "color", color)
    _checks.same_device("pos", pos, "color", color)
    _checks.same_device("tri", tri, "color", color)
    # under torch.compile(dynamic=True) the boost is a symbolic float: its value is not known while tracing
    symbolic = torch.compiler.is_compiling() or isinstance(pos_gradient_boost, (torch.SymFloat, torch.SymInt))
    if not symbolic:
        if isinstance(pos_gradient_boost, bool) or not isinstance(pos_gradient_boost, (int, float)):
            raise TypeError(f"pos_gradient_boost must be a float, got {type(pos_gradient_boost).__name__}")
        if not math.isfinite(pos_gradient_boost):
            raise ValueError(f"pos_gradient_boost must be finite, got {pos_gradient_boost}")
    _check_tri_values(tri, num_vertices)
    if topology_hash is None:
        topology_hash = torch.ops.occrecon.antialias_construct_topology_hash(tri.contiguous())
    else:
        _checks.tensor("topology_hash", topology_hash)
        if topology_hash.dtype != torch.int32 or tuple(topology_hash.shape) != (tri.shape[0], 3):
            raise ValueError(f"topology_hash must be an int32 ({tri.shape[0]}, 3) tensor from "
                             f"antialias_construct_topology_hash(tri), got {topology_hash.dtype} "
                             f"{tuple(topology_hash.shape)}")
        _checks.same_device("topology_hash", topology_hash, "color", color)
    return torch.ops.occrecon.antialias(color.contiguous(), rast.contiguous(), pos.contiguous(), tri.contiguous(),
                                        topology_hash.contiguous(),
                                        pos_gradient_boost if symbolic else float(pos_gradient_boost))
