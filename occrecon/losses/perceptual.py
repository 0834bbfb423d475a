"""Perceptual loss terms L_per^ex (eq. 2), L_per^in (eq. 4) and L_per^R (eq. 6).

``net`` is any module with the ``occrecon.nets.PerceptualOutput`` interface:
``net(images (B, 3, H, W) [0, 1], landmarks (B, 68, 2) | None = None) -> PerceptualOutput(features, embedding)``
where ``features`` is a list of feature maps ``(B, C_l, h_l, w_l)`` and ``embedding`` a ``(B, D)`` vector.
The paper compares F's intermediate features ("perceptual level"); the authors' code compares the identity
embedding for L_per^R. Two distances, chosen by ``kind``:

- ``"features"``: at every location of every feature map, the cosine distance ``1 − cos`` between the two
  channel vectors; averaged over the locations of a map, then over the maps. In [0, 2].
- ``"identity"``: ``1 − cos(embedding_a, embedding_b)``. In [0, 2].

Masked inputs are ``I ⊙ M`` (pixels outside the valid region Ω set to black), as in the paper.
The net is run ONCE per term on the two (or three) images concatenated along the batch, so a frozen net's
parameters see one call; its parameters are not touched here (freeze them yourself).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from occrecon.ops import _checks

from . import _args

__all__ = ["perceptual_distance", "run_perceptual", "perceptual_ex", "perceptual_in", "perceptual_rec",
           "PERCEPTUAL_KINDS"]

PERCEPTUAL_KINDS = ("features", "identity")
#: eps of the cosine similarity (as torch's default); a zero vector has cosine 0 to anything.
_COS_EPS = 1e-8


def perceptual_distance(a, b, kind: str = "features") -> torch.Tensor:
    """Per-image distance between two ``PerceptualOutput``s of the same batch size.

    Args:
        a, b: objects with ``.features`` (list of ``(B, C_l, h_l, w_l)``) and ``.embedding`` ``(B, D)``.
        kind: ``"features"`` (mean over maps of the mean over locations of ``1 − cos`` over channels) or
            ``"identity"`` (``1 − cos`` of the embeddings).

    Returns:
        ``(B,)`` tensor, each in [0, 2].
    """
    _args.choice("kind", kind, PERCEPTUAL_KINDS)
    if kind == "identity":
        ea, eb = a.embedding, b.embedding
        if ea.dim() != 2 or ea.shape != eb.shape:
            raise ValueError(f"embedding must be (B, D) and equal in both outputs, got {tuple(ea.shape)} and "
                             f"{tuple(eb.shape)}")
        return 1.0 - F.cosine_similarity(ea, eb, dim=1, eps=_COS_EPS)
    fa, fb = list(a.features), list(b.features)
    if not fa or len(fa) != len(fb):
        raise ValueError(f"features must be non-empty lists of equal length, got {len(fa)} and {len(fb)} maps")
    per_layer = []
    for i, (x, y) in enumerate(zip(fa, fb)):
        if x.dim() != 4 or x.shape != y.shape:
            raise ValueError(f"features[{i}] must be (B, C, h, w) and equal in both outputs, got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        per_layer.append((1.0 - F.cosine_similarity(x, y, dim=1, eps=_COS_EPS)).mean(dim=(1, 2)))
    return torch.stack(per_layer, dim=0).mean(dim=0)


def run_perceptual(net, images: Sequence[torch.Tensor], landmarks: Sequence[torch.Tensor | None]) -> list:
    """Run ``net`` once on the images concatenated along the batch and split the output back.

    Args:
        net: module with the ``PerceptualOutput`` interface (see the module docstring).
        images: n tensors ``(B, 3, H, W)``.
        landmarks: n entries, each ``(B, 68, 2)`` pixel coordinates or None; all None or all tensors.

    Returns:
        n ``(features, embedding)`` pairs as simple namespaces with the same attribute names.
    """
    if net is None or not callable(net):
        raise TypeError(f"net must be a callable perceptual network (PerceptualOutput interface), got {net!r}")
    n = len(images)
    b = images[0].shape[0]
    have = [lm is not None for lm in landmarks]
    if any(have) and not all(have):
        raise ValueError("landmarks: give landmarks for every image or for none")
    lms = torch.cat(list(landmarks), dim=0) if all(have) else None
    out = net(torch.cat(list(images), dim=0), landmarks=lms)
    feats = list(out.features)
    emb = out.embedding
    return [_Split([f[i * b:(i + 1) * b] for f in feats], emb[i * b:(i + 1) * b]) for i in range(n)]


class _Split:
    """One image group's slice of a ``PerceptualOutput``."""

    __slots__ = ("features", "embedding")

    def __init__(self, features: list[torch.Tensor], embedding: torch.Tensor):
        self.features = features
        self.embedding = embedding


def _landmarks(name: str, value: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
    if value is None:
        return None
    _checks.tensor(name, value)
    if value.dim() != 3 or value.shape[0] != ref.shape[0] or value.shape[2] != 2:
        raise ValueError(f"{name} must be (B, N, 2) with B = {ref.shape[0]}, got {tuple(value.shape)}")
    _checks.floating(name, value)
    return value


def _inputs(target, render, mask, landmarks, render_landmarks):
    _args.pair(target, render)
    m = _args.mask("mask", mask, target) if mask is not None else None
    lt = _landmarks("landmarks", landmarks, target)
    lr = _landmarks("render_landmarks", render_landmarks, target)
    if lr is None:
        lr = lt
    return m, lt, lr


def perceptual_ex(net, target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor,
                  landmarks: torch.Tensor | None = None, render_landmarks: torch.Tensor | None = None,
                  kind: str = "features", reduction: str = "mean") -> torch.Tensor:
    """L_per^ex (eq. 2): distance between F(I_T ⊙ M) and F(I_R ⊙ M) (the authors' "dist" term).

    Args:
        net: perceptual network (``PerceptualOutput`` interface).
        target: I_T ``(B, 3, H, W)`` float in [0, 1]; render: I_R, same shape/dtype/device.
        mask: M ``(B, 1, H, W)`` or ``(B, H, W)`` float in [0, 1].
        landmarks: ``(B, 68, 2)`` target landmarks (pixels) for the net's face-chip alignment, or None.
        render_landmarks: landmarks for the render's chip (default: ``landmarks``; pass the target's when the
            model's landmarks contain NaN, e.g. unmapped points).
        kind: ``"features"`` or ``"identity"`` (see :func:`perceptual_distance`).
        reduction: ``"mean"`` over the batch, or ``"none"`` ``(B,)``.
    """
    m, lt, lr = _inputs(target, render, mask, landmarks, render_landmarks)
    ft, fr = run_perceptual(net, [target * m, render * m], [lt, lr])
    return _args.reduce(perceptual_distance(ft, fr, kind), reduction)


def perceptual_in(net, target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor,
                  landmarks: torch.Tensor | None = None, render_landmarks: torch.Tensor | None = None,
                  kind: str = "features", form: str = "paper", reduction: str = "mean") -> torch.Tensor:
    """L_per^in (eq. 4): masking must keep the target's face features.

    ``form="paper"``: distance between F(I_T) and F(I_R ⊙ M) (eq. 4 as printed).
    ``form="code"``: the authors' "preserve" term, distance between F(I_T) and F(I_T ⊙ M).
    Arguments as for :func:`perceptual_ex`.
    """
    _args.choice("form", form, _args.FORMS)
    m, lt, lr = _inputs(target, render, mask, landmarks, render_landmarks)
    if form == "paper":
        ft, fm = run_perceptual(net, [target, render * m], [lt, lr])
    else:
        ft, fm = run_perceptual(net, [target, target * m], [lt, lt])
    return _args.reduce(perceptual_distance(ft, fm, kind), reduction)


def perceptual_rec(net, target: torch.Tensor, render: torch.Tensor, landmarks: torch.Tensor | None = None,
                   render_landmarks: torch.Tensor | None = None, kind: str = "features",
                   reduction: str = "mean") -> torch.Tensor:
    """L_per^R (eq. 6): distance between F(I_T) and F(I_R), unmasked (the paper uses intermediate features,
    ``kind="features"``; the authors' code the identity embedding, ``kind="identity"``).
    Arguments as for :func:`perceptual_ex` (no mask).
    """
    _, lt, lr = _inputs(target, render, None, landmarks, render_landmarks)
    ft, fr = run_perceptual(net, [target, render], [lt, lr])
    return _args.reduce(perceptual_distance(ft, fr, kind), reduction)
