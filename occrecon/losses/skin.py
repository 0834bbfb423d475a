"""A skin-colour face mask: the segmentation of the "Deep3D-style" baseline (issue 15, the paper's Table 3).

Deep3D (Deng et al. 2019) weighs its photometric loss by a skin probability, so that pixels whose colour is not
skin (hair, glasses, most occluders) count less. Without their colour model this uses the classic explicit
skin-colour rule in YCbCr of Chai & Ngan (1999): a pixel is skin when 77 ≤ Cb ≤ 127 and 133 ≤ Cr ≤ 173 (ITU-R
BT.601, 8-bit scale), brightness free. It knows nothing of the render: a hand is skin, a shadow may not be.
"""
from __future__ import annotations

import torch

__all__ = ["skin_mask", "CB_RANGE", "CR_RANGE"]

#: Chai & Ngan's skin ranges of Cb and Cr (8-bit, BT.601).
CB_RANGE = (77.0, 127.0)
CR_RANGE = (133.0, 173.0)


def skin_mask(image: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` {0, 1}: 1 where the colour of ``image`` ``(B, 3, H, W)`` RGB in [0, 1] is skin (module
    docstring). Not differentiable (a label, as the pseudo-masks are)."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image: expected (B, 3, H, W) RGB, got {tuple(image.shape)}")
    rgb = image.detach().clamp(0, 1) * 255.0
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    skin = (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1]) & (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1])
    return skin.to(image.dtype)
