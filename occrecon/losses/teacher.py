"""The fitting-engine teacher term of the initialisation stage (issue 15): the encoder's projected mesh against the
teacher's, in dense-correspondence image space rather than in raw θ.

θ is a poor space to compare two reconstructions in: identity and expression bases overlap, scale trades against
depth, and the same face can be reached from different coefficients, so a loss on θ fights ambiguities that do not
change the face. The term compares what the face looks like instead: the 2D positions of every vertex, as the
camera projects them (``FaceRenderer`` / ``PerspectiveCamera.project``), normalised by the image side,

    L_teacher = Σ_v w_v ‖π_v(θ) − t_v‖² / (Σ_v w_v · S²),   t_v = A(π_{m(v)}(θ*)),

averaged over the faces that have a teacher. A data augmentation that warps the photo by the 2D affine ``A``
(and possibly mirrors it) moves the teacher's vertices with it: ``teacher_targets`` applies ``A`` to the teacher's
projected vertices and, for a mirrored sample, relabels them through the model's left-right vertex
correspondence ``m`` (:func:`occrecon.morphable.mirror_map`), because the mirrored photo shows vertex v where the
original showed m(v). Landmark-space distance is the same term restricted to the landmark vertices (``weights``).
"""
from __future__ import annotations

import torch

__all__ = ["teacher_targets", "teacher_loss"]


def teacher_targets(teacher_2d: torch.Tensor, affine: torch.Tensor | None = None, flip: torch.Tensor | None = None,
                    mirror: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's projected vertices in the (augmented) training image: ``(B, V, 2)``.

    Args:
        teacher_2d: ``(B, V, 2)`` the teacher's projected vertices in the un-augmented image, pixels.
        affine: ``(B, 2, 3)`` or ``(2, 3)`` augmentation, un-augmented → augmented pixels (None: identity).
        flip: ``(B,)`` bool, True where the augmentation mirrored the photo (None: none did).
        mirror: ``(V,)`` long, the model's left-right vertex correspondence; needed when any ``flip`` is True.
    """
    if teacher_2d.dim() != 3 or teacher_2d.shape[-1] != 2:
        raise ValueError(f"teacher_2d: expected (B, V, 2), got {tuple(teacher_2d.shape)}")
    b, v, _ = teacher_2d.shape
    t = teacher_2d
    if flip is not None and bool(flip.any()):
        if mirror is None:
            raise ValueError("mirror: a flipped sample needs the model's left-right vertex correspondence")
        mirror = torch.as_tensor(mirror, device=t.device).long()
        if mirror.shape != (v,) or int(mirror.min()) < 0 or int(mirror.max()) >= v:
            raise ValueError(f"mirror: expected ({v},) vertex indices in [0, {v}), got {tuple(mirror.shape)}")
        flip = flip.to(t.device).bool().view(b, 1, 1)
        t = torch.where(flip, t[:, mirror], t)
    if affine is not None:
        a = torch.as_tensor(affine, dtype=t.dtype, device=t.device)
        if a.dim() == 2:
            a = a.expand(b, 2, 3)
        if tuple(a.shape) != (b, 2, 3):
            raise ValueError(f"affine: expected (B, 2, 3) or (2, 3), got {tuple(a.shape)}")
        t = t @ a[:, :, :2].transpose(1, 2) + a[:, None, :, 2]
    return t


def teacher_loss(vertices_2d: torch.Tensor, targets: torch.Tensor, image_size: float,
                 weights: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """``L_teacher`` (module docstring): weighted mean squared distance of projected vertices, over ``image_size²``.

    Args:
        vertices_2d: ``(B, V, 2)`` the encoder's projected vertices, pixels (gradients flow here).
        targets: ``(B, V, 2)`` :func:`teacher_targets` (treated as constants).
        image_size: the image side S in pixels.
        weights: ``(V,)`` non-negative vertex weights (e.g. the front face, or the landmark vertices); None: all 1.
        valid: ``(B,)`` bool, False for faces without a teacher (they add nothing).
        reduction: ``"mean"`` over the valid faces (0 when there is none), or ``"none"``: ``(B,)`` (0 where not
            valid).
    """
    if vertices_2d.shape != targets.shape or vertices_2d.dim() != 3 or vertices_2d.shape[-1] != 2:
        raise ValueError(f"vertices_2d / targets: expected matching (B, V, 2), got {tuple(vertices_2d.shape)} and "
                         f"{tuple(targets.shape)}")
    if not image_size > 0:
        raise ValueError(f"image_size: expected a positive size, got {image_size!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    b, v, _ = vertices_2d.shape
    w = torch.ones(v, dtype=vertices_2d.dtype, device=vertices_2d.device) if weights is None else \
        torch.as_tensor(weights, dtype=vertices_2d.dtype, device=vertices_2d.device)
    if w.shape != (v,) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError(f"weights: expected ({v},) non-negative values, not all zero")
    ok = torch.ones(b, dtype=torch.bool, device=vertices_2d.device) if valid is None else \
        valid.to(vertices_2d.device).bool()
    # faces without a teacher compare with themselves: no value, and no NaN gradient from a NaN target
    t = torch.where(ok.view(b, 1, 1), targets.detach(), vertices_2d.detach())
    d2 = ((vertices_2d - t) ** 2).sum(-1)  # (B, V)
    per_face = (d2 * w).sum(-1) / (w.sum() * float(image_size) ** 2)
    if reduction == "none":
        return per_face
    return per_face.sum() / ok.sum().clamp_min(1).to(per_face.dtype)
