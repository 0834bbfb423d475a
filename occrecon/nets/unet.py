"""The segmentation UNet S(I_T, I_R) of the paper: 6-channel input (target RGB, render RGB) → 1 logit per pixel.

Five levels with widths 64-128-256-512-1024; each level is 2 × (conv 3×3, batch norm, ReLU); dropout 0.5 after
the blocks of the two deepest levels; 2×2 max-pool down; nearest ×2 upsample + conv 3×3 (+BN, ReLU) up,
concatenation with the skip, a block; a 1×1 conv to one logit. Inputs whose H, W are not multiples of 16 are
padded (replicate) at the bottom/right and the logits cropped back.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_image

__all__ = ["UNet", "face_mask", "PAPER_WIDTHS", "COMPACT_WIDTHS", "PAPER_DROPOUT", "INPUT_ORDER"]

#: Filter counts per level (paper).
PAPER_WIDTHS = (64, 128, 256, 512, 1024)
#: CPU variant: the same topology at an eighth of the width (a B=8 training step takes ~0.45 s at 224², ~0.16 s
#: at 128² on 2 cores; widths 16..256 took ~1.5 s / 0.5 s).
COMPACT_WIDTHS = (8, 16, 32, 64, 128)
#: Dropout probability on the two deepest levels (paper).
PAPER_DROPOUT = 0.5
#: Channel order of the network input — fixed everywhere: target RGB, then render RGB.
INPUT_ORDER = ("target_r", "target_g", "target_b", "render_r", "render_g", "render_b")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Up(nn.Module):
    """Nearest ×2 upsample, conv 3×3 (halving channels) + BN + ReLU, concat skip, block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up_conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                     nn.ReLU(inplace=True))
        self.block = _block(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Segmentation network; 1 = visible face (fit it), 0 = occluder / not face after the sigmoid.

    Args:
        widths: 5 filter counts, shallow → deep (paper: 64, 128, 256, 512, 1024).
        dropout: dropout probability after the blocks of the two deepest levels (paper 0.5).

    ``forward(target, render)``: both ``(B, 3, H, W)`` float RGB in [0, 1], any H, W ≥ 1 → logits ``(B, 1, H, W)``.
    The network input is ``cat([target, render], dim=1)`` (:data:`INPUT_ORDER`).
    """

    def __init__(self, widths: Sequence[int] = PAPER_WIDTHS, dropout: float = PAPER_DROPOUT):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(f"widths: expected 5 positive filter counts, got {widths}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        self.widths = widths
        self.down = nn.ModuleList()
        cin = len(INPUT_ORDER)
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        # the two deepest levels (4th and 5th) get dropout
        self.drop4 = nn.Dropout(dropout)
        self.drop5 = nn.Dropout(dropout)
        self.up = nn.ModuleList([_Up(widths[i + 1], widths[i]) for i in reversed(range(4))])
        self.out = nn.Conv2d(widths[0], 1, 1)

    @classmethod
    def compact(cls, dropout: float = PAPER_DROPOUT, base: int = COMPACT_WIDTHS[0]) -> UNet:
        """The CPU variant: widths ``base · (1, 2, 4, 8, 16)``, default :data:`COMPACT_WIDTHS` (8..128)."""
        if int(base) != base or base < 1:
            raise ValueError(f"base: expected a positive integer, got {base}")
        return cls(tuple(int(base) * m for m in (1, 2, 4, 8, 16)), dropout)

    def forward(self, target: torch.Tensor, render: torch.Tensor) -> torch.Tensor:
        """``target, render (B, 3, H, W)`` in [0, 1] → logits ``(B, 1, H, W)``."""
        check_image(target, "target")
        check_image(render, "render")
        if target.shape != render.shape:
            raise ValueError(f"render: shape {tuple(render.shape)} differs from target {tuple(target.shape)}")
        h, w = target.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        x = torch.cat([target, render], dim=1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            if i == 3:
                x = self.drop4(x)
            elif i == 4:
                x = self.drop5(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(x, skip)
        return self.out(x)[..., :h, :w]

    def mask(self, target: torch.Tensor, render: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """M = Φ · sigmoid(logits) (:func:`face_mask`) of this UNet's logits for ``(target, render)``."""
        return face_mask(region, self(target, render))


def face_mask(region: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The face mask M = Φ · sigmoid(S) of segmentation logits ``S (B, 1, H, W)`` inside the rendered region
    ``Φ`` (same shape, in [0, 1]): the one place this product is written (training, fitting and inference)."""
    if not isinstance(region, torch.Tensor) or region.shape != logits.shape:
        shape = tuple(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__
        raise ValueError(f"region: expected shape {tuple(logits.shape)}, got {shape}")
    return region * torch.sigmoid(logits)
