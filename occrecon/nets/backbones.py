"""``load_backbone``: a frozen perceptual face network by name, with the :class:`PerceptualOutput` interface."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .face_resnets import IResNet50, VGGFace2ResNet50
from .perceptual import DlibFaceNet

__all__ = ["load_backbone", "BACKBONES", "BackboneWeightsError"]

#: Names accepted by :func:`load_backbone`.
BACKBONES = ("dlib", "arcface_iresnet50", "vggface2_resnet50")
_KEY_PREFIXES = ("module.", "backbone.")


class BackboneWeightsError(KeyError):
    """A weights file whose keys or shapes do not match the architecture."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def _state_dict_from(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneWeightsError(f"weights: {path} does not hold a state_dict (a dict of tensors)")
    out = {}
    for k, v in obj.items():
        for p in _KEY_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _load_into(net: nn.Module, path: Path) -> nn.Module:
    sd = _state_dict_from(path)
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise BackboneWeightsError(f"weights: {path} does not match {type(net).__name__}: "
                                   f"{len(missing)} missing keys {missing[:5]}, "
                                   f"{len(unexpected)} unexpected keys {unexpected[:5]}")
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise BackboneWeightsError(f"weights: {path}: shape mismatch for {len(bad)} keys, e.g. {bad[:3]}")
    net.load_state_dict(sd, strict=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.train(False)


def load_backbone(name: str = "dlib", weights: str | Path | None = None) -> nn.Module:
    """A frozen, eval-mode face network: ``forward(images (B,3,H,W) [0,1], landmarks=None) -> PerceptualOutput``.

    Args:
        name: 'dlib' (dlib's face-recognition ResNet, 128-D; weights = its ``.dat``, default the one of
            face_recognition_models), 'arcface_iresnet50' (insightface iResNet-50, 512-D) or
            'vggface2_resnet50' (VGGFace2 ResNet-50, pooled 2048-D). See :mod:`occrecon.nets.face_resnets` for the
            accepted state_dict key layouts ('module.'/'backbone.' prefixes and a {'state_dict': ...} wrapper are
            accepted).
        weights: the weights file; required for the two state_dict networks (``torch.save`` of a state_dict).

    Raises:
        ValueError: unknown name, or missing weights. FileNotFoundError: no such file.
        BackboneWeightsError (a KeyError): missing/unexpected keys or wrong shapes.
    """
    if name not in BACKBONES:
        raise ValueError(f"name: expected one of {BACKBONES}, got {name!r}")
    if name == "dlib":
        return DlibFaceNet.from_file(weights)
    if weights is None:
        raise ValueError(f"weights: {name} needs a weights file (state_dict); none is bundled")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no such file {path}")
    net = IResNet50() if name == "arcface_iresnet50" else VGGFace2ResNet50()
    return _load_into(net, path)
