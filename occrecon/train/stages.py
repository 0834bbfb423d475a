"""One optimisation step of each training stage (forward pass and loss; the loop does backward and the update).

Stages ("To fit or not to fit", Sec. 3.3 and 4):

* ``init`` — robust initialisation of the encoder: ``init_loss`` (the occlusion-robust likelihood of eqs. 8-9 on
  the pseudo-mask pixels + landmarks + regulariser + perceptual).
* ``unet_pretrain`` — the UNet learns the pseudo-masks of the initialised encoder (eq. 9) with binary cross
  entropy on its LOGITS, restricted to the rendered region Φ; the encoder is frozen.
* ``em`` — alternation: UNet steps with ``segmentation_loss`` (encoder frozen, I_R detached) and encoder steps
  with ``reconstruction_loss`` (UNet frozen; M = Φ·σ(S(I_T, I_R)) still depends on θ through I_R, so the area term
  keeps the encoder from fitting nothing).
* ``mofa`` — the baseline without segmentation: ``reconstruction_loss`` with M = Φ.

A frozen network runs in eval mode (batch-norm statistics fixed, dropout off) with ``requires_grad`` off.
"""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..losses import (init_loss, pseudo_mask, reconstruction_loss, segmentation_loss, skin_mask, teacher_loss,
                      teacher_targets)
from ..nets.unet import face_mask
from .data import Batch

__all__ = ["Nets", "StepOutput", "STAGE_NETS", "em_phase", "set_trainable", "init_step", "unet_pretrain_step",
           "em_unet_step", "em_encoder_step", "mofa_step", "step_function", "region_bce_with_logits"]

#: The networks each stage optimises (one optimiser and scheduler per name).
STAGE_NETS: dict[str, tuple[str, ...]] = {"init": ("encoder",), "unet_pretrain": ("unet",),
                                           "em": ("encoder", "unet"), "mofa": ("encoder",)}


@dataclass
class Nets:
    """The networks of a run.

    Attributes:
        encoder, unet: the modules (``unet`` None when no stage needs it).
        encoder_train, unet_train: what a step of the owning optimiser calls: the
            ``DistributedDataParallel`` wrapper in a multi-process run, else the module itself.
        renderer: ``occrecon.render.FaceRenderer``.
        perceptual: frozen perceptual network (``PerceptualOutput`` interface) or None.
    """

    encoder: torch.nn.Module
    unet: torch.nn.Module | None
    renderer: torch.nn.Module
    perceptual: torch.nn.Module | None
    encoder_train: torch.nn.Module
    unet_train: torch.nn.Module | None

    @property
    def layout(self):
        return self.renderer.layout


@dataclass
class StepOutput:
    """Result of one step's forward pass.

    Attributes:
        loss: scalar to minimise (has a graph to the optimised network's parameters).
        terms: ``{name: scalar}`` weighted loss terms (their sum is ``loss``), for the NaN check and the logs.
        optimise: names of the optimisers to step (a subset of :data:`STAGE_NETS` of the stage).
        target, render, mask: ``(B, 3|1, H, W)`` detached images for the sample overlays.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    optimise: tuple[str, ...]
    target: torch.Tensor
    render: torch.Tensor
    mask: torch.Tensor


def set_trainable(module: torch.nn.Module | None, trainable: bool) -> None:
    """Train mode and ``requires_grad`` on, or eval mode and ``requires_grad`` off (frozen)."""
    if module is None:
        return
    module.train(trainable)
    for p in module.parameters():
        p.requires_grad_(trainable)


def em_phase(iteration: int, encoder_iters: int, unet_iters: int, unet_first: bool = True) -> str:
    """Which network EM step ``iteration`` (0-based) trains: ``"unet"`` or ``"encoder"``.

    A cycle is ``unet_iters + encoder_iters`` steps (paper: 5k + 25k = 30k), the UNet's block first when
    ``unet_first`` (the authors' code), e.g. ``em_phase(4999, 25000, 5000) == "unet"``, ``em_phase(5000, ...) ==
    "encoder"``.
    """
    if iteration < 0:
        raise ValueError(f"iteration: must be >= 0, got {iteration}")
    if encoder_iters < 0 or unet_iters < 0 or encoder_iters + unet_iters == 0:
        raise ValueError(f"encoder_iters/unet_iters: need non-negative counts with a positive sum, got "
                         f"{encoder_iters}/{unet_iters}")
    pos = iteration % (encoder_iters + unet_iters)
    if unet_first:
        return "unet" if pos < unet_iters else "encoder"
    return "encoder" if pos < encoder_iters else "unet"


def region_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean binary cross entropy over the pixels of the region: ``Σ Φ·BCE(logits, labels) / Σ Φ``.

    Computed from LOGITS (``binary_cross_entropy_with_logits``, numerically stable), never from a sigmoid output.

    Args:
        logits: ``(B, 1, H, W)`` UNet logits; labels: same shape, {0, 1} (1 = face); region: Φ, same shape.
    Returns:
        scalar (nats per region pixel); 0 when the region is empty.
    """
    if logits.shape != labels.shape or logits.shape != region.shape:
        raise ValueError(f"logits/labels/region: shapes must match, got {tuple(logits.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(region.shape)}")
    per_pixel = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per_pixel * region).sum() / region.sum().clamp_min(1.0)


_TEACHER_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {device: weights}


def _teacher_weights(renderer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(front-face vertex weights, landmark-vertex weights, left-right vertex map)`` of the renderer's model,
    computed once per model and device."""
    model = renderer.model
    per_device = _TEACHER_CACHE.setdefault(model, {})
    key = str(model.mean.device)
    if key not in per_device:
        from ..morphable.appearance import mirror_map

        v = model.n_vertices
        front = model.front_face.to(model.mean.dtype) if model.front_face is not None else torch.ones(v)
        lm = torch.zeros(v, dtype=model.mean.dtype, device=model.mean.device)
        lm[model.landmarks[model.landmarks >= 0].long()] = 1.0
        mirror = torch.from_numpy(mirror_map(model.mean.detach().cpu().numpy())[0]).to(model.mean.device)
        per_device[key] = (front.to(model.mean.device), lm, mirror)
    return per_device[key]


def teacher_terms(nets: Nets, batch: Batch, v_cam: torch.Tensor, weights: Any) -> dict[str, torch.Tensor]:
    """The fitting-engine teacher terms of one step (``weights.teacher_vertex`` / ``teacher_landmark``; none when
    both are 0): the encoder's projected vertices ``v_cam`` against the teacher's θ* of the batch, moved with
    the sample's augmentation (:func:`occrecon.losses.teacher_targets`). Samples without a θ* add nothing."""
    wv, wl = float(getattr(weights, "teacher_vertex", 0.0)), float(getattr(weights, "teacher_landmark", 0.0))
    if not (wv or wl):
        return {}
    if batch.teacher_theta is None:
        raise ValueError("losses: a teacher weight is set but the batch has no teacher θ (set data.teacher: true "
                         "and run occrecon data fit on every training folder)")
    theta_t = batch.teacher_theta
    valid = torch.isfinite(theta_t).all(1)
    safe = torch.where(valid[:, None], theta_t, torch.zeros_like(theta_t))
    cam = nets.renderer.camera
    with torch.no_grad():
        p_t = cam.project(nets.renderer.camera_vertices(safe))
    front, lm, mirror = _teacher_weights(nets.renderer)
    targets = teacher_targets(p_t, batch.affine, batch.flip, mirror)
    p = cam.project(v_cam)
    size = float(cam.image_size[0])
    out = {}
    if wv:
        out["teacher_vertex"] = wv * teacher_loss(p, targets, size, weights=front, valid=valid)
    if wl:
        out["teacher_landmark"] = wl * teacher_loss(p, targets, size, weights=lm, valid=valid)
    return out


def _with_teacher(total: torch.Tensor, terms: dict, extra: dict) -> torch.Tensor:
    for k, v in extra.items():
        terms[k] = v
        total = total + v
    return total


def init_step(nets: Nets, batch: Batch, loss_config: Any) -> StepOutput:
    """Stage 1: ``init_loss`` of the encoder's render (pseudo-mask shown in the samples), plus the fitting-engine
    teacher terms when the config weighs them (:func:`teacher_terms`)."""
    set_trainable(nets.encoder, True)
    theta = nets.encoder_train(batch.image)
    r = nets.renderer(theta)
    total, terms = init_loss(batch.image, r.image, r.region, theta, nets.layout, batch.landmarks, r.landmarks,
                             net=nets.perceptual, landmark_valid=batch.landmark_valid, config=loss_config)
    total = _with_teacher(total, terms, teacher_terms(nets, batch, r.vertices, loss_config.init))
    pseudo = pseudo_mask(batch.image, r.image.detach(), r.region, xi=loss_config.xi)
    return StepOutput(total, terms, ("encoder",), batch.image, r.image.detach(), pseudo)


def _frozen_render(nets: Nets, batch: Batch):
    set_trainable(nets.encoder, False)
    with torch.no_grad():
        return nets.renderer(nets.encoder(batch.image))


def unet_pretrain_step(nets: Nets, batch: Batch, loss_config: Any) -> StepOutput:
    """Stage 2: UNet logits vs the pseudo-mask of the frozen encoder's render, BCE inside Φ."""
    r = _frozen_render(nets, batch)
    labels = pseudo_mask(batch.image, r.image, r.region, xi=loss_config.xi)
    set_trainable(nets.unet, True)
    logits = nets.unet_train(batch.image, r.image)
    bce = region_bce_with_logits(logits, labels, r.region)
    mask = face_mask(r.region, logits.detach())
    return StepOutput(bce, {"bce": bce}, ("unet",), batch.image, r.image, mask)


def em_unet_step(nets: Nets, batch: Batch, loss_config: Any) -> StepOutput:
    """Stage 3, UNet step: ``segmentation_loss`` with M = Φ·σ(S(I_T, I_R)); encoder frozen."""
    r = _frozen_render(nets, batch)
    set_trainable(nets.unet, True)
    mask = face_mask(r.region, nets.unet_train(batch.image, r.image))
    total, terms = segmentation_loss(batch.image, r.image, mask, r.region, net=nets.perceptual,
                                     landmarks=batch.landmarks, config=loss_config)
    return StepOutput(total, {f"seg_{k}": v for k, v in terms.items()}, ("unet",), batch.image, r.image,
                      mask.detach())


def _reconstruction(nets: Nets, batch: Batch, loss_config: Any, use_unet: bool, mask_source: str = "region") -> tuple:
    set_trainable(nets.encoder, True)
    theta = nets.encoder_train(batch.image)
    r = nets.renderer(theta)
    if use_unet:
        set_trainable(nets.unet, False)
        mask = face_mask(r.region, nets.unet(batch.image, r.image))
    elif mask_source == "ground_truth":
        mask = r.region * batch.mask
    elif mask_source == "skin":
        mask = r.region * skin_mask(batch.image)
    elif mask_source == "region":
        mask = r.region
    else:
        raise ValueError(f"mask_source: expected 'region', 'ground_truth' or 'skin', got {mask_source!r}")
    total, terms = reconstruction_loss(batch.image, r.image, mask, r.region, theta, nets.layout, batch.landmarks,
                                       r.landmarks, net=nets.perceptual, landmark_valid=batch.landmark_valid,
                                       config=loss_config)
    total = _with_teacher(total, terms, teacher_terms(nets, batch, r.vertices, loss_config.reconstruction))
    return total, terms, r, mask


def em_encoder_step(nets: Nets, batch: Batch, loss_config: Any) -> StepOutput:
    """Stage 3, encoder step: ``reconstruction_loss`` with the frozen UNet's M (gradients reach θ through I_R)."""
    total, terms, r, mask = _reconstruction(nets, batch, loss_config, use_unet=True)
    return StepOutput(total, {f"rec_{k}": v for k, v in terms.items()}, ("encoder",), batch.image,
                      r.image.detach(), mask.detach())


def mofa_step(nets: Nets, batch: Batch, loss_config: Any, mask_source: str = "region") -> StepOutput:
    """Baselines without segmentation: ``reconstruction_loss`` with M = Φ (MoFA: every rendered pixel is fitted,
    occluders included), Φ · the ground-truth visible face (``"ground_truth"``: Supervised MoFA) or Φ · skin colour
    (``"skin"``: the Deep3D-style mask); see ``stages.mofa.mask``."""
    total, terms, r, mask = _reconstruction(nets, batch, loss_config, use_unet=False, mask_source=mask_source)
    return StepOutput(total, terms, ("encoder",), batch.image, r.image.detach(), mask.detach())


def step_function(stage: str, iteration: int, em_config: Any,
                  mofa_mask: str = "region") -> Callable[[Nets, Batch, Any], StepOutput]:
    """The step of ``stage`` at its 0-based ``iteration`` (EM alternates by :func:`em_phase`; ``mofa_mask``:
    ``stages.mofa.mask``)."""
    if stage == "init":
        return init_step
    if stage == "unet_pretrain":
        return unet_pretrain_step
    if stage == "mofa":
        return mofa_step if mofa_mask == "region" else functools.partial(mofa_step, mask_source=mofa_mask)
    if stage == "em":
        phase = em_phase(iteration, em_config.encoder_iters, em_config.unet_iters, em_config.unet_first)
        return em_unet_step if phase == "unet" else em_encoder_step
    raise ValueError(f"stage: unknown stage {stage!r}")
