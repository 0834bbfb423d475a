"""Similarity matrices for placing occluders and augmenting samples, in the project's pixel convention.

A pixel (row i, col j) has its centre at ``(j + 0.5, i + 0.5)`` (x right, y down). An affine matrix ``M (2, 3)``
maps source coordinates to destination coordinates: ``p_dst = M[:, :2] @ p_src + M[:, 2]`` — the convention of
``occrecon.data.align`` (``warp_affine``, ``transform_points``, ``invert_affine``), which applies them.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["similarity_matrix", "compose"]


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
