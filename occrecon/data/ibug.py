"""The iBUG 68-point scheme: its horizontal-flip permutation.

Order: jaw 0–16, eyebrows 17–26, nose 27–35, eyes 36–47, mouth 48–67 (outer 48–59, inner 60–67).
"""
from __future__ import annotations

import numpy as np

__all__ = ["IBUG_FLIP", "flip_landmarks"]


def _flip_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]                      # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                # eyebrows
    pairs += [(31, 35), (32, 34)]                                # nostrils (27-30, 33 on the midline)
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]   # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip (51, 57 on the midline)
    pairs += [(60, 64), (61, 63), (65, 67)]                      # inner lip (62, 66 on the midline)
    perm = np.arange(68)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``IBUG_FLIP[i]`` is the landmark that point ``i`` becomes in a horizontally mirrored image.
IBUG_FLIP: np.ndarray = _flip_permutation()


def flip_landmarks(points: np.ndarray, width: float) -> np.ndarray:
    """Landmarks ``(..., 68, 2)`` (pixel-centre convention) of the image mirrored left-right: ``x -> width - x``,
    then re-indexed with :data:`IBUG_FLIP` so that, e.g., index 36 is again the image-left eye corner."""
    p = np.asarray(points)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"points must be (..., 68, 2), got {p.shape}")
    out = p[..., IBUG_FLIP, :].copy()
    out[..., 0] = width - out[..., 0]
    return out
