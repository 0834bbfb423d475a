"""The three training objectives: segmentation step, reconstruction step and robust initialisation.

Each returns ``(total, terms)``: ``terms`` maps a term name to its WEIGHTED scalar and ``total`` is their sum.
Terms with weight 0 (or switched off in the config) are neither computed nor listed. The perceptual network is
called once per objective on all images it needs, concatenated along the batch; for the face-chip alignment
every image uses the TARGET landmarks ``landmarks`` (the render is meant to be aligned with the target, and
the model's own landmarks may hold NaN for unmapped points).
"""
from __future__ import annotations

import torch

from . import _args
from .config import LossConfig
from .image import area_loss, binary_loss, neighbour_image_loss, photometric_loss
from .landmarks import landmark_loss
from .perceptual import perceptual_distance, perceptual_rec, run_perceptual
from .regulariser import regulariser
from .robust import robust_likelihood

__all__ = ["segmentation_loss", "reconstruction_loss", "init_loss"]


def _config(config: LossConfig | None) -> LossConfig:
    if config is None:
        return LossConfig.paper()
    if not isinstance(config, LossConfig):
        raise TypeError(f"config must be a LossConfig, got {type(config).__name__}")
    return config


def _need_net(net, term: str) -> None:
    if net is None:
        raise ValueError(f"net: the {term} term has a non-zero weight and needs a perceptual network "
                         f"(set its weight to 0 or switch it off to train without one)")


def _total(terms: dict[str, torch.Tensor], ref: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    total = ref.new_zeros(())
    for v in terms.values():
        total = total + v
    return total, terms


def segmentation_loss(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, region: torch.Tensor,
                      net=None, landmarks: torch.Tensor | None = None,
                      config: LossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_S = 15·L_img^ex + 3·L_per^ex + 0.5·L_img^in + 2.5·L_per^in + 10·L_bi (paper weights; encoder frozen).

    Args:
        target: I_T ``(B, 3, H, W)`` float in [0, 1].
        render: I_R, same shape/dtype/device (detach it: the encoder is frozen in this step).
        mask: M = Φ·S ``(B, 1, H, W)`` float in [0, 1], from the UNet (receives the gradients).
        region: Φ ``(B, 1, H, W)``.
        net: perceptual network (``PerceptualOutput`` interface); needed when a perceptual term is on.
        landmarks: ``(B, 68, 2)`` target landmarks for the net's face chip, or None.
        config: :class:`LossConfig` (default ``LossConfig.paper()``).

    Returns:
        ``(total, {"neighbour", "perceptual_ex", "area", "perceptual_in", "binary"})`` weighted scalars.
    """
    cfg = _config(config)
    w = cfg.segmentation
    terms: dict[str, torch.Tensor] = {}
    if w.neighbour:
        terms["neighbour"] = w.neighbour * neighbour_image_loss(target, render, mask, region, k=cfg.neighbour_k,
                                                                squared=cfg.neighbour_squared)
    use_ex = cfg.perceptual_ex and w.perceptual_ex > 0
    use_in = cfg.perceptual_in and w.perceptual_in > 0
    if use_ex or use_in:
        _need_net(net, "perceptual_ex" if use_ex else "perceptual_in")
        _args.pair(target, render)
        m = _args.mask("mask", mask, target)
        # F(I_T ⊙ M) is needed by L_per^ex and the code form of L_per^in, F(I_R ⊙ M) by L_per^ex and the paper
        # form of L_per^in, F(I_T) by L_per^in: compute just those, in one call.
        images = {}
        if use_ex or cfg.perceptual_in_form == "code":
            images["target_masked"] = target * m
        if use_ex or cfg.perceptual_in_form == "paper":
            images["render_masked"] = render * m
        if use_in:
            images["target"] = target
        outs = dict(zip(images, run_perceptual(net, list(images.values()), [landmarks] * len(images))))
        kind = cfg.segmentation_perceptual_kind
        if use_ex:
            d = perceptual_distance(outs["target_masked"], outs["render_masked"], kind)
            terms["perceptual_ex"] = w.perceptual_ex * d.mean()
        if use_in:
            other = outs["render_masked"] if cfg.perceptual_in_form == "paper" else outs["target_masked"]
            terms["perceptual_in"] = w.perceptual_in * perceptual_distance(outs["target"], other, kind).mean()
    if w.area:
        terms["area"] = w.area * area_loss(mask, region, form=cfg.area_form)
    if w.binary:
        terms["binary"] = w.binary * binary_loss(mask, region, form=cfg.binary_form)
    return _total(terms, target)


def _landmark_and_prior(terms, weights, cfg, theta, layout, landmarks, render_landmarks, landmark_valid):
    if weights.landmark:
        if landmarks is None or render_landmarks is None:
            raise ValueError("landmarks and render_landmarks are required when the landmark weight is non-zero")
        terms["landmark"] = weights.landmark * landmark_loss(render_landmarks, landmarks, valid=landmark_valid,
                                                             form=cfg.landmark_form)
    if weights.regulariser:
        terms["regulariser"] = weights.regulariser * regulariser(theta, layout, form=cfg.regulariser_form)


def reconstruction_loss(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, region: torch.Tensor,
                        theta: torch.Tensor, layout, landmarks: torch.Tensor | None,
                        render_landmarks: torch.Tensor | None, net=None,
                        landmark_valid: torch.Tensor | None = None,
                        config: LossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_R = 4·L_img^R + 0.5·L_per^R + 0.5·L_img^in + 0.01·L_lm + 0.067·L_reg (paper weights; UNet frozen).

    Args:
        target: I_T ``(B, 3, H, W)`` float in [0, 1]; render: I_R (differentiable w.r.t. θ).
        mask: M = Φ·S ``(B, 1, H, W)`` (S from the frozen UNet; M still depends on θ through Φ and I_R).
        region: Φ ``(B, 1, H, W)``.
        theta: ``(B, layout.size)``; layout: the model's ``ParamLayout``.
        landmarks: ``(B, 68, 2)`` target landmarks (pixels); render_landmarks: the model's projected ones
            (``FaceRender.landmarks``, NaN where unmapped).
        net: perceptual network, needed when the perceptual weight is non-zero.
        landmark_valid: optional ``(B, 68)`` bool of usable target landmarks.
        config: :class:`LossConfig` (default ``LossConfig.paper()``).

    Returns:
        ``(total, {"photometric", "perceptual", "area", "landmark", "regulariser"})`` weighted scalars.
    """
    cfg = _config(config)
    w = cfg.reconstruction
    terms: dict[str, torch.Tensor] = {}
    if w.photometric:
        terms["photometric"] = w.photometric * photometric_loss(target, render, mask,
                                                                squared=cfg.photometric_squared)
    if w.perceptual:
        _need_net(net, "perceptual")
        terms["perceptual"] = w.perceptual * perceptual_rec(net, target, render, landmarks, landmarks,
                                                            kind=cfg.reconstruction_perceptual_kind)
    if w.area:
        terms["area"] = w.area * area_loss(mask, region, form=cfg.area_form)
    _landmark_and_prior(terms, w, cfg, theta, layout, landmarks, render_landmarks, landmark_valid)
    return _total(terms, target)


def init_loss(target: torch.Tensor, render: torch.Tensor, region: torch.Tensor, theta: torch.Tensor, layout,
              landmarks: torch.Tensor | None, render_landmarks: torch.Tensor | None, net=None,
              landmark_valid: torch.Tensor | None = None,
              config: LossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Robust initialisation of the encoder (sec. 3.3): likelihood (eqs. 8-9) + L_lm + L_reg + L_per^R.

    Weights from ``config.init`` (paper default 0.5 / 0.01 / 0.067 / 0.25, see :class:`InitWeights`).
    Arguments as for :func:`reconstruction_loss`, without the mask (the pseudo-mask of eq. 9 is computed
    inside from ``config.xi``; call :func:`occrecon.losses.pseudo_mask` to get it as a label).

    Returns:
        ``(total, {"likelihood", "landmark", "regulariser", "perceptual"})`` weighted scalars.
    """
    cfg = _config(config)
    w = cfg.init
    terms: dict[str, torch.Tensor] = {}
    if w.likelihood:
        terms["likelihood"] = w.likelihood * robust_likelihood(target, render, region, sigma=cfg.sigma, xi=cfg.xi,
                                                               background=cfg.likelihood_background)
    _landmark_and_prior(terms, w, cfg, theta, layout, landmarks, render_landmarks, landmark_valid)
    if w.perceptual:
        _need_net(net, "perceptual")
        terms["perceptual"] = w.perceptual * perceptual_rec(net, target, render, landmarks, landmarks,
                                                            kind=cfg.init_perceptual_kind)
    return _total(terms, target)
