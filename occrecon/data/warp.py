"""Affine warps of float image arrays and 2D points, in the project's pixel convention.

A pixel (row i, col j) has its centre at ``(j + 0.5, i + 0.5)`` (x right, y down). An affine matrix ``M (2, 3)``
maps source coordinates to destination coordinates: ``p_dst = M[:, :2] @ p_src + M[:, 2]``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["similarity_matrix", "compose", "invert", "apply_points", "warp_array"]


def similarity_matrix(scale: float = 1.0, angle: float = 0.0, centre: tuple[float, float] = (0.0, 0.0),
                      shift: tuple[float, float] = (0.0, 0.0), flip: bool = False, width: float = 0.0) -> np.ndarray:
    """``(2, 3) float64`` map: optional horizontal flip ``x -> width - x``, then rotation by ``angle`` (radians,
    counter-clockwise on screen, i.e. with y down a positive angle turns x toward -y) and scaling by ``scale``
    about ``centre`` (pixels), then translation by ``shift`` (pixels)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    rot = np.array([[c, s], [-s, c]])
    cx, cy = centre
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = np.array([cx, cy]) - rot @ np.array([cx, cy]) + np.asarray(shift, dtype=np.float64)
    if flip:
        m = compose(m, np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0]]))
    return m


def compose(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` matrix of ``second ∘ first`` (apply ``first``, then ``second``)."""
    a = np.vstack([np.asarray(second, np.float64), [0, 0, 1]])
    b = np.vstack([np.asarray(first, np.float64), [0, 0, 1]])
    return (a @ b)[:2]


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of an invertible ``(2, 3)`` affine matrix (ValueError when singular)."""
    m = np.asarray(m, np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"m must be (2, 3), got {m.shape}")
    a = m[:, :2]
    det = np.linalg.det(a)
    if abs(det) < 1e-12:
        raise ValueError("m is singular")
    ai = np.linalg.inv(a)
    return np.hstack([ai, -ai @ m[:, 2:3]])


def apply_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points (pixels) with ``m (2, 3)``; NaN rows stay NaN. Returns ``(N, 2)`` float32."""
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got {p.shape}")
    return (p @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]).astype(np.float32)


def warp_array(image: np.ndarray, m: np.ndarray, size: tuple[int, int], mode: str = "bilinear",
               fill: float = 0.0, border: bool = False) -> np.ndarray:
    """Warp a float image ``(h, w, C)`` into a ``(H, W, C)`` float32 canvas (``size = (H, W)``) with the
    source→destination matrix ``m (2, 3)``. ``mode``: ``"bilinear"`` or ``"nearest"``; outside the source, ``fill``
    (or the nearest edge pixel when ``border``). Sampling is exact at pixel centres (an identity ``m`` returns the
    image unchanged)."""
    if image.ndim != 3:
        raise ValueError(f"image must be (h, w, C), got shape {image.shape}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    h_out, w_out = int(size[0]), int(size[1])
    h, w = image.shape[:2]
    inv = invert(m)
    ys, xs = np.meshgrid(np.arange(h_out) + 0.5, np.arange(w_out) + 0.5, indexing="ij")
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    # grid_sample (align_corners=False): normalised -1 / +1 are the outer edges of the image
    grid = np.stack([sx / w * 2 - 1, sy / h * 2 - 1], -1).astype(np.float32)
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None] - fill
    out = torch.nn.functional.grid_sample(src, torch.from_numpy(grid)[None], mode=mode,
                                          padding_mode="border" if border else "zeros",
                                          align_corners=False)
    return (out[0].permute(1, 2, 0) + fill).numpy()
