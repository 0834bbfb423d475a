"""The θ regressor: a plain-torch ResNet (ResNet-50, ResNet-18 or a compact CPU variant) with a zero-initialised head.

The architectures follow torchvision's ResNet v1.5 (stride on the 3×3 conv of a bottleneck, 1×1 projection
shortcuts with batch norm where the shape changes), written here without torchvision. The head is a linear layer
whose weight and bias start at zero, so θ = 0 (mean face, mean albedo, frontal pose, no light offset) at step 0;
its raw output is multiplied per parameter group by fixed scale factors that act as learning-rate scalings
(see :func:`default_scales`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..morphable.layout import ParamLayout
from ._checks import check_image, projection

__all__ = ["Encoder", "ResNetBackbone", "default_scales", "ARCHS", "IMAGENET_MEAN", "IMAGENET_STD",
           "ORIG_TEX_SCALE", "ORIG_ANGLE_SCALE", "ORIG_TZ_SCALE", "TRANS_UNIT_SCALE"]

#: ImageNet normalisation (RGB, images in [0, 1]) applied inside :class:`Encoder`.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Output scales of the authors' ORIG code (method.md): albedo ×3, rotation ×0.3.
ORIG_TEX_SCALE = 3.0
ORIG_ANGLE_SCALE = 0.3
#: ORIG's t_z ×0.005 (method.md). Not used by default: it belongs to ORIG's own camera parametrisation, not to
#: our renderer, whose translation is in model units (see :data:`TRANS_UNIT_SCALE`).
ORIG_TZ_SCALE = 0.005

#: Translation scale per model unit: one raw output unit = 1 dm (Deep3D regresses the BFM translation in dm with
#: the camera at 10 dm, unscaled). So sfm (mm) → ×100, ict (cm) → ×10, BFM (dm) → ×1, metres → ×0.1.
TRANS_UNIT_SCALE = {"m": 0.1, "dm": 1.0, "cm": 10.0, "mm": 100.0}

#: name -> (block kind, blocks per stage, stage widths, stem width)
ARCHS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int]] = {
    "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64),
    # CPU variant: ResNet-18 topology with one basic block per stage at a quarter of the width.
    "compact": ("basic", (1, 1, 1, 1), (16, 32, 64, 128), 16),
}


def default_scales(layout: ParamLayout, units: str | None = None) -> dict[str, float | list[float]]:
    """Default per-group output scales: tex ×3, angle ×0.3 (ORIG), trans × unit scale, others ×1.

    Args:
        layout: the θ layout; only groups it has are returned.
        units: the face model's length unit ('m', 'dm', 'cm', 'mm') or None for 'dm' (×1). The translation
            scale is :data:`TRANS_UNIT_SCALE` [units] for x, y and z, so a unit raw step moves the face by 1 dm
            whatever the model's units.

    Returns:
        ``{group: scale}`` (floats; ``trans`` as a 3-list when present).
    """
    if units is not None and units not in TRANS_UNIT_SCALE:
        raise ValueError(f"units: expected one of {sorted(TRANS_UNIT_SCALE)}, got {units!r}")
    t = TRANS_UNIT_SCALE[units or "dm"]
    base: dict[str, float | list[float]] = {"tex": ORIG_TEX_SCALE, "angle": ORIG_ANGLE_SCALE}
    out: dict[str, float | list[float]] = {}
    for name, size in layout.entries:
        if name == "trans":
            out[name] = [t] * size
        else:
            out[name] = base.get(name, 1.0)
    return out


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: stride on the 3×3
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


class ResNetBackbone(nn.Module):
    """ResNet trunk up to the global average pool: ``(B, 3, H, W)`` normalised → ``(B, out_features)``.

    Args:
        arch: a key of :data:`ARCHS` ('resnet50', 'resnet18', 'compact').
    """

    def __init__(self, arch: str = "resnet50"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {arch!r}")
        kind, blocks, widths, stem = ARCHS[arch]
        block = _Bottleneck if kind == "bottleneck" else _Basic
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = _bn(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class Encoder(nn.Module):
    """Image → θ regressor.

    Args:
        layout: the model's :class:`ParamLayout` (``model.layout``); the head emits ``layout.size`` values.
        arch: 'resnet50' (paper/FOCUS), 'resnet18' or 'compact' (quarter-width, one block per stage; for CPU
            training at 128–224 px).
        scales: per-group output scales ``{group: float | list of len(group)}``; groups not named keep ×1.
            None → :func:`default_scales` ``(layout, units)``.
        units: the face model's unit, used only for the default translation scale (None → 'dm', ×1).

    ``forward(image (B, 3, H, W) float in [0, 1]) -> theta (B, layout.size)`` (same dtype). The ImageNet
    normalisation is done inside. The head (``self.head``) is zero-initialised, so θ = 0 at initialisation.
    """

    def __init__(self, layout: ParamLayout, arch: str = "resnet50",
                 scales: Mapping[str, float | Sequence[float]] | None = None, units: str | None = None):
        super().__init__()
        if not isinstance(layout, ParamLayout):
            raise TypeError(f"layout: expected a ParamLayout, got {type(layout).__name__}")
        self.layout = layout
        self.arch = arch
        self.backbone = ResNetBackbone(arch)
        self.head = nn.Linear(self.backbone.out_features, layout.size)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if scales is None:
            scales = default_scales(layout, units)
        self.scales = self._resolve_scales(layout, scales)
        self.register_buffer("scale_vector", self._scale_vector(layout, self.scales), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _resolve_scales(layout: ParamLayout, scales: Mapping[str, float | Sequence[float]]
                        ) -> dict[str, float | list[float]]:
        if not isinstance(scales, Mapping):
            raise TypeError(f"scales: expected a dict, got {type(scales).__name__}")
        out: dict[str, float | list[float]] = {}
        for name, s in scales.items():
            if name not in layout.names:
                raise ValueError(f"scales: unknown group {name!r}; layout has {list(layout.names)}")
            size = layout.slice(name).stop - layout.slice(name).start
            if isinstance(s, (int, float)):
                out[name] = float(s)
            else:
                vals = [float(v) for v in s]
                if len(vals) != size:
                    raise ValueError(f"scales: group {name!r} has {size} entries, got {len(vals)} scales")
                out[name] = vals
        return out

    @staticmethod
    def _scale_vector(layout: ParamLayout, scales: Mapping[str, float | list[float]]) -> torch.Tensor:
        vec = torch.ones(layout.size)
        for name, s in scales.items():
            vec[layout.slice(name)] = torch.as_tensor(s, dtype=vec.dtype)
        return vec

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image (B, 3, H, W)`` float RGB in [0, 1] → θ ``(B, layout.size)``."""
        check_image(image, "image")
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        raw = self.head(self.backbone(x))
        return raw * self.scale_vector.to(raw.dtype)
