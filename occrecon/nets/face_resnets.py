"""Architectures of two published face-recognition networks, for users who bring their own weights.

Neither set of weights is obtainable offline here; these modules reproduce the architectures and state_dict key
layouts so the published PyTorch checkpoints load with ``load_state_dict(strict=True)``:

- :class:`IResNet50` — insightface's ``iresnet50`` (ArcFace, ``arcface_torch/backbones/iresnet.py``): 112×112 RGB
  input scaled to [−1, 1]; keys ``conv1.weight, bn1.*, prelu.weight, layer{1-4}.{i}.{bn1, conv1, bn2, prelu,
  conv2, bn3, downsample.0, downsample.1}.*, bn2.*, fc.{weight, bias}, features.*`` (fc 512·7·7 → 512, then a
  BatchNorm1d ``features``); embedding = the 512-D output of ``features``.
- :class:`VGGFace2ResNet50` — the VGGFace2 ResNet-50 (Cao et al. 2018; Caffe-style: stride on the first 1×1 conv
  of a bottleneck, ceil-mode max-pool), as in the common PyTorch port (``resnet50_ft`` / ``resnet50_scratch``):
  224×224 input, BGR, minus the mean (91.4953, 103.8827, 131.0912) on the 0–255 scale; keys ``conv1.weight,
  bn1.*, layer{1-4}.{i}.{conv1, bn1, conv2, bn2, conv3, bn3, downsample.0, downsample.1}.*, fc.{weight, bias}``
  (2048 → 8631 identities); embedding = the 2048-D global-average-pooled feature (before fc).

Both return :class:`PerceptualOutput` with ``features`` = the outputs of layer1–layer4. With landmarks, the input
is a dlib-geometry chip (:func:`face_chip`, padding 0.25) of the network's input size — an approximation of each
network's own alignment; without, the image is resized. Parameters frozen, always in eval mode.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_image, projection
from .chip import DLIB_CHIP_PADDING, face_chip
from .perceptual import PerceptualOutput

__all__ = ["IResNet50", "VGGFace2ResNet50", "VGGFACE2_MEAN_BGR", "VGGFACE2_CLASSES"]

#: VGGFace2 training-set mean, BGR, 0–255.
VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
#: Identities of the VGGFace2 training set (size of the classifier).
VGGFACE2_CLASSES = 8631
_IRESNET_EPS = 1e-5


class _Frozen(nn.Module):
    """Frozen, always-eval feature network with the PerceptualOutput interface."""

    input_size = 0

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> _Frozen:
        """Stays in eval mode whatever ``mode``."""
        return super().train(False)

    def _prepare(self, images: torch.Tensor, landmarks: torch.Tensor | None) -> torch.Tensor:
        check_image(images, "images")
        s = self.input_size
        if landmarks is not None:
            return face_chip(images, landmarks, s, DLIB_CHIP_PADDING)
        if images.shape[-2:] != (s, s):
            return F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False,
                                 antialias=min(images.shape[-2:]) > s)
        return images


class _IBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=_IRESNET_EPS)
        self.conv1 = nn.Conv2d(cin, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=_IRESNET_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=_IRESNET_EPS)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes, eps=_IRESNET_EPS))
                           if stride != 1 or cin != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet50(_Frozen):
    """insightface's iResNet-50 (ArcFace): ``forward(images (B,3,H,W) [0,1], landmarks=None)`` → 512-D embedding."""

    input_size = 112
    LAYERS = (3, 4, 14, 3)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=_IRESNET_EPS)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (n, planes) in enumerate(zip(self.LAYERS, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(_IBlock(cin, planes, 2 if j == 0 else 1))
                cin = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(512, eps=_IRESNET_EPS)
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.features = nn.BatchNorm1d(512, eps=_IRESNET_EPS)
        self.freeze()

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> PerceptualOutput:
        x = self._prepare(images, landmarks) * 2.0 - 1.0  # (x·255 − 127.5)/127.5
        x = self.prelu(self.bn1(self.conv1(x)))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        emb = self.features(self.fc(torch.flatten(self.bn2(x), 1)))
        return PerceptualOutput(feats, emb)


class _CaffeBottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, stride, bias=False)  # Caffe ResNet: stride on the 1×1
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class VGGFace2ResNet50(_Frozen):
    """VGGFace2 ResNet-50 (8631 classes): ``forward(images, landmarks=None)`` → pooled 2048-D embedding."""

    input_size = 224
    LAYERS = (3, 4, 6, 3)

    def __init__(self, num_classes: int = VGGFACE2_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (n, width) in enumerate(zip(self.LAYERS, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(_CaffeBottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = 4 * width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(2048, num_classes)
        self.register_buffer("mean_bgr", torch.tensor(VGGFACE2_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> PerceptualOutput:
        x = self._prepare(images, landmarks).flip(1) * 255.0 - self.mean_bgr.to(images.dtype)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, ceil_mode=True)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return PerceptualOutput(feats, x.mean(dim=(2, 3)))
