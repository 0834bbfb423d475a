"""A deterministic front-face region for models that include scalp, ears and neck (ICT), from the 68 landmarks.

Rule (model frame: +x to the subject's left, i.e. image right; +y up; +z towards the viewer; the mean shape is
used). With the iBUG landmark numbering (0-based) on the mean shape:

- ``x_lo, x_hi`` = min/max of the x of the jaw ends (landmarks 0 and 16), ``W = x_hi − x_lo``;
- ``y_chin`` = y of the chin (landmark 8), ``y_brow`` = mean y of the eyebrows (17–26), ``H = y_brow − y_chin``;
- ``z_ear`` = min z of landmarks 0 and 16.

A vertex is **front face** if ``x_lo − 0.02·W ≤ x ≤ x_hi + 0.02·W``, ``y_chin − 0.02·H ≤ y ≤ y_brow + 0.35·H``
and ``z ≥ z_ear − 0.05·W``: the box spanned by the jaw contour, extended up over a third of the face height for
the forehead; ears, scalp, the back of the head and the neck fall outside. The margins are fractions of the
face's own size, so the rule does not depend on units. ``MorphableModel.crop(mask)`` then keeps the faces whose
three vertices are kept. On ICT's ``ict_face`` this keeps 6,768 of 9,409 vertices.
"""
from __future__ import annotations

import numpy as np

__all__ = ["front_face_mask", "FRONT_FACE_MARGINS"]

#: (x margin ·W, top margin ·H above the brows, bottom margin ·H below the chin, depth margin ·W behind the jaw ends)
FRONT_FACE_MARGINS = (0.02, 0.35, 0.02, 0.05)


def front_face_mask(mean: np.ndarray, landmarks: np.ndarray, margins=FRONT_FACE_MARGINS) -> np.ndarray:
    """``(V,)`` bool front-face mask of ``mean`` ``(V, 3)`` by the rule above.

    Raises ValueError naming ``landmarks`` when one of the landmarks the rule needs (0, 8, 16, 17–26) is −1.
    """
    mean = np.asarray(mean, np.float64)
    lm = np.asarray(landmarks, np.int64)
    need = [0, 8, 16, *range(17, 27)]
    if lm.shape != (68,) or np.any(lm[need] < 0) or np.any(lm[need] >= mean.shape[0]):
        raise ValueError("landmarks: the front-face rule needs landmarks 0, 8, 16 and 17-26 mapped to vertices")
    p = mean[lm[need]]
    mx, mt, mb, mz = margins
    x_lo, x_hi = sorted((p[0, 0], p[2, 0]))
    w = x_hi - x_lo
    y_chin, y_brow = p[1, 1], p[3:, 1].mean()
    h = y_brow - y_chin
    if w <= 0 or h <= 0:
        raise ValueError("landmarks: degenerate face box (expected +y up, jaw ends apart); check the model frame")
    z_ear = min(p[0, 2], p[2, 2])
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    return ((x >= x_lo - mx * w) & (x <= x_hi + mx * w) & (y >= y_chin - mb * h) & (y <= y_brow + mt * h)
            & (z >= z_ear - mz * w))
