"""Robust image fit: every θ group of a morphable model fitted to a photo by EM, the paper's idea run per image.

Schedule (:class:`~occrecon.fit.ImageFitConfig`), batched over faces, no Python loop over images:

1. **Landmarks** (when given): :func:`~occrecon.fit.fit_landmarks` for pose, identity and expression, starting
   from ``init`` (an encoder's prediction) or the mean face.
2. **Light**: the photo's colours at the visible vertices give a RANSAC estimate of the 27 SH coefficients
   (:func:`~occrecon.fit.light.ransac_light`), so that an occluder does not drive the light; the estimate is
   also the mean of the M-step's light prior.
3. **EM rounds.** E-step: which pixels are face. Without a UNet, eq. 8-9's robust likelihood: a pixel of Φ is
   face when the squared RGB error is below ξ; the log-likelihood ratio ``ξ − ‖I_T − I_R‖²`` is first averaged
   over a ``mask_window``² box (a mean-field stand-in for an MRF prior: a thin, moderately unexplained structure —
   brows, lips, eyelids — is outvoted by the skin around it; a large coherent occluder is not). The M-step's pixel
   weights use the stricter ``xi_fit`` (leaving a doubtful pixel out costs the fit little, fitting an occluder's
   colour costs it the light and the albedo); the returned mask uses ξ. With a UNet: ``M = Φ · σ(UNet(I_T, I_R))``.
   After the E-step each detected landmark is trusted by the share of face pixels around it
   (:func:`landmark_trust`), and the landmark fit runs again with those weights (a detection inside an occluder
   stops pulling the geometry; the prior fills in). M-step: ``steps`` Adam steps on θ through the differentiable
   renderer with the masked photometric term (plain, or eq. 1's neighbourhood-min), the robust landmark term,
   Gaussian priors on identity, expression and albedo, the model's expression range (projection), and the light
   prior towards the RANSAC estimate.
4. **Final E-step** on the final render: the returned mask.

Divergence: a face whose loss becomes non-finite, or rises above its best loss of the round by more than
``explode × max(best, 1)`` (nats), reverts to
its last good θ and is frozen and flagged (``FitResult.diverged``); it never poisons the rest of the batch (every
face's loss and gradient are its own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..nets.eval_view import eval_view
from ..nets.unet import face_mask
from ..ops import neighbour_loss
from ..render.camera import PerspectiveCamera
from ..render.face import FaceRenderer
from .config import ImageFitConfig, fit_preset
from .landmarks import LandmarkFit, _check_landmark_args, _robust_weights, face_scale, fit_landmarks
from .light import gamma_to_theta, ransac_light, visible_vertices

__all__ = ["FitResult", "fit_image", "robust_mask", "scaled_renderer", "landmark_trust", "check_images"]

_BAND = (0, 1, 1, 1, 2, 2, 2, 2, 2)  # SH band of each of the 9 coefficients
#: Adam's epsilon of the M-step (the median gradient of a coefficient is ~1e-2 to 1e1 at the start of a fit).
ADAM_EPS = 1e-4


@dataclass
class FitResult:
    """What :func:`fit_image` returns for B faces (tensors detached, on the images' device).

    Attributes:
        theta: ``(B, P)`` fitted θ in the model's layout.
        image: ``(B, 3, S, S)`` the final render I_R (0 outside Φ), S the fit's image size.
        region: ``(B, 1, S, S)`` Φ, the rendered region.
        mask: ``(B, 1, S, S)`` M, the final E-step's face mask in [0, 1] (binary without a UNet).
        landmarks: ``(B, 68, 2)`` projected model landmarks in the fit's pixels (NaN where unmapped).
        target: ``(B, 3, S, S)`` the photo as fitted (resized to S when the config asks for another size).
        loss: ``(B, rounds · steps)`` the M-step objective per face and step.
        converged: ``(B,)`` bool: not diverged, and the last round's loss changed by < 1 % over its last quarter.
        diverged: ``(B,)`` bool: a step exploded; θ is the face's last good θ.
        landmark_fit: the :class:`~occrecon.fit.LandmarkFit` of step 1, or None without landmarks.
        light_inliers: ``(B,)`` the share of the visible vertices the RANSAC light explains.
        initial_theta: ``(B, P)`` θ before the EM rounds: the landmark fit with the RANSAC light.
        scale: S / (the input's size): multiply the fit's pixel coordinates by ``1 / scale`` for the input's.
    """

    theta: torch.Tensor
    image: torch.Tensor
    region: torch.Tensor
    mask: torch.Tensor
    landmarks: torch.Tensor
    target: torch.Tensor
    loss: torch.Tensor
    converged: torch.Tensor
    diverged: torch.Tensor
    landmark_fit: LandmarkFit | None
    light_inliers: torch.Tensor
    initial_theta: torch.Tensor
    scale: float = 1.0

    @property
    def occlusion_fraction(self) -> torch.Tensor:
        """``(B,)`` ``1 − Σ M / Σ Φ`` (NaN where Φ is empty)."""
        phi = self.region.sum((1, 2, 3))
        frac = (1 - self.mask.sum((1, 2, 3)) / phi.clamp_min(1e-12)).clamp(0, 1)
        return torch.where(phi > 0, frac, torch.full_like(frac, float("nan")))


def scaled_renderer(renderer: FaceRenderer, size: int) -> FaceRenderer:
    """``renderer`` for a ``size``² image: the same model, distance and options, the camera scaled (focal and
    principal point by ``size / W``). Returns ``renderer`` itself when the size already matches."""
    h, w = renderer.camera.image_size
    if (h, w) == (size, size):
        return renderer
    if h != w:
        raise ValueError(f"config.image_size: the renderer's image is not square ({h}x{w}); pass image_size=None")
    k = size / w
    cam = renderer.camera
    cx, cy = cam.principal_point
    new = PerspectiveCamera(focal=cam.focal * k, image_size=(size, size), principal_point=(cx * k, cy * k),
                            near=cam.near, far=cam.far)
    return FaceRenderer(renderer.model, camera=new, distance=renderer.distance, ambient=renderer.ambient,
                        use_antialias=renderer.use_antialias,
                        front_face_only=renderer.front_face_only).to(renderer.tri.device)


def box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over the k × k window around each pixel (zero outside the image), ``(B, C, H, W)``; O(H·W) for any k
    (cumulative sums, separable), exact to float rounding."""
    if k <= 1:
        return x
    r = k // 2
    out = x
    for dim in (2, 3):
        n = out.shape[dim]
        pad = [0, 0, 0, 0]
        pad[(3 - dim) * 2] = r + 1  # before
        pad[(3 - dim) * 2 + 1] = r  # after
        c = torch.nn.functional.pad(out, pad).cumsum(dim)
        out = c.narrow(dim, k, n) - c.narrow(dim, 0, n)
    return out


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k × k window of the pixels inside the image."""
    if k <= 1:
        return x
    return box_sum(x, k) / box_sum(torch.ones_like(x[:, :1]), k)


def robust_mask(target: torch.Tensor, render: torch.Tensor, region: torch.Tensor, xi: float = 0.17,
                window: int = 1) -> torch.Tensor:
    """The E-step without a UNet (eq. 9, smoothed): ``M = Φ · [box_window(Φ·(ξ − ‖I_T − I_R‖²)) > 0]``.

    Args:
        target, render: ``(B, 3, H, W)`` in [0, 1]; region: Φ ``(B, 1, H, W)``.
        xi: eq. 9's threshold on the squared RGB error.
        window: odd box size; 1 is eq. 9 itself. The box averages over the pixels of Φ only.
    Returns:
        ``(B, 1, H, W)`` binary float mask, inside Φ.
    """
    inside = (region > 0.5).to(target.dtype)
    llr = (xi - ((target - render) ** 2).sum(1, keepdim=True)) * inside
    if window > 1:
        num = _box_mean(llr, window)
        den = _box_mean(inside, window)
        llr = num / den.clamp_min(1e-6)
    return ((llr > 0).to(target.dtype)) * inside


def check_images(images, size: tuple[int, int]) -> None:
    """The one check of a batch of photos: a float ``(B, 3, H, W)`` tensor, ``(H, W) == size``, B ≥ 1, finite,
    values in [0, 1]; TypeError / ValueError naming ``images`` otherwise."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a float tensor in [0, 1], got {images.dtype} (divide uint8 by 255)")
    h, w = size
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (B, 3, {h}, {w}) RGB, got {tuple(images.shape)}")
    if tuple(images.shape[2:]) != (h, w):
        raise ValueError(f"images: size {tuple(images.shape[2:])} does not match the renderer's {(h, w)}")
    if images.shape[0] == 0:
        raise ValueError("images: empty batch")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images: contains NaN or Inf values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"images: values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")


def _lr_vector(layout, lr: dict, dtype, device) -> torch.Tensor:
    v = torch.zeros(layout.size, dtype=dtype, device=device)
    for name in layout.names:
        v[layout.slice(name)] = float(lr.get(name, 0.0))
    return v


def _learned_light_mean(model) -> torch.Tensor | None:
    """The learned illumination prior's mean as a full ``(9, 3)`` light, or None (the model has no prior).
    ``sh_mean`` already includes the ambient (see MorphableModel)."""
    if model.sh_mean is None:
        return None
    return model.sh_mean.reshape(3, 9).transpose(0, 1)


class _Objective:
    """The M-step objective, per face: masked photometric + robust landmarks + priors."""

    def __init__(self, renderer: FaceRenderer, cfg: ImageFitConfig, targets, lm_targets, lm_weights, lm_used,
                 light_prior: torch.Tensor):
        self.r, self.cfg = renderer, cfg
        self.lay = renderer.layout
        self.targets = targets
        self.lm = None
        if lm_targets is not None:
            self.lm = torch.nan_to_num(lm_targets, nan=0.0)
            self.base_lm_w = lm_weights * lm_used.to(lm_weights.dtype)
            self.lm_scale = face_scale(lm_targets, lm_used).clamp_min(1e-6)
            self.lm_used = lm_used
            self.set_landmark_trust(None)
        band_w = torch.tensor([cfg.light_band_weights[k] for k in _BAND], dtype=targets.dtype, device=targets.device)
        self.light_w = band_w.repeat(3)  # θ's [R9 | G9 | B9] order
        self.light_prior = light_prior
        self.sh_mean = self.sh_prec = None
        model = renderer.model
        if model.sh_mean is not None and cfg.w_light_prior > 0:  # the learned illumination prior, in θ's terms
            dc = torch.zeros(27, dtype=targets.dtype, device=targets.device)
            dc[[0, 9, 18]] = renderer.ambient
            self.sh_mean = model.sh_mean.to(targets) - dc
            self.sh_prec = torch.linalg.inv(model.sh_cov.to(targets).double()).to(targets.dtype)

    def set_landmark_trust(self, trust: torch.Tensor | None) -> None:
        """Scale the landmark weights by ``trust (B, 68)`` in [0, 1] (None: full trust)."""
        if self.lm is None:
            return
        self.lm_w = self.base_lm_w if trust is None else self.base_lm_w * trust
        self.lm_norm = self.base_lm_w.sum(1).clamp_min(1e-12)  # the term's scale does not shrink with the trust

    def __call__(self, theta: torch.Tensor, mask: torch.Tensor):
        cfg, lay = self.cfg, self.lay
        out = self.r(theta)
        if cfg.photometric == "neighbour":
            d2 = neighbour_loss(self.targets, out.image, mask, out.region, k=cfg.neighbour_k, squared=True,
                                reduction="none")
            photo = d2 * out.region.gt(0.5).sum((1, 2, 3)).clamp_min(1) / mask.sum((1, 2, 3)).clamp_min(1)
        else:
            e2 = ((self.targets - out.image) ** 2).sum(1, keepdim=True)
            photo = (mask * e2).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)
        loss = cfg.w_photo * photo / (2 * cfg.sigma ** 2)  # nats per kept pixel (eq. 8's Gaussian)
        if self.lm is not None and cfg.w_landmarks > 0:
            res = (torch.nan_to_num(out.landmarks, nan=0.0) - self.lm) / self.lm_scale[:, None, None]
            e2l = torch.where(self.lm_used, (res ** 2).sum(-1), torch.zeros_like(res[..., 0]))
            _, rho = _robust_weights(e2l, cfg.landmarks.robust_scale, cfg.landmarks.robust)
            per_lm = (self.lm_w * rho).sum(1) / self.lm_norm / (2 * cfg.landmark_sigma ** 2)  # nats per landmark
            loss = loss + cfg.w_landmarks * per_lm
        parts = lay.split(theta)
        loss = loss + cfg.w_id * (parts["id"] ** 2).sum(1) + cfg.w_exp * (parts["exp"] ** 2).sum(1)
        loss = loss + cfg.w_tex * (parts["tex"] ** 2).sum(1)
        loss = loss + cfg.w_light * (self.light_w * (parts["gamma"] - self.light_prior) ** 2).sum(1)
        if self.sh_mean is not None:
            d = parts["gamma"] - self.sh_mean
            loss = loss + 0.5 * cfg.w_light_prior * ((d @ self.sh_prec) * d).sum(1)
        return loss, out


def landmark_trust(mask: torch.Tensor, region: torch.Tensor, landmarks: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, 68)`` in [0, 1]: how far to trust each detected landmark after an E-step — the share of face pixels
    (``mask``) among the rendered pixels (``region``) in a ``window``² box around it, doubled and clipped (a
    landmark half surrounded by occluder keeps full weight; one inside an occluder gets none). Landmarks with
    no rendered pixel nearby (off the face) keep full trust; NaN landmarks get 0."""
    b, _, h, w = mask.shape
    inside = (region > 0.5).to(mask.dtype)
    face = box_sum(mask * inside, window)
    drawn = box_sum(inside, window)
    frac = torch.where(drawn > 0.5, face / drawn.clamp_min(1e-6), torch.ones_like(drawn))
    lm = torch.nan_to_num(landmarks, nan=-1e6)
    grid = torch.stack([lm[..., 0] / w * 2 - 1, lm[..., 1] / h * 2 - 1], -1)[:, :, None]
    val = torch.nn.functional.grid_sample(frac, grid.to(frac.dtype), mode="bilinear", padding_mode="border",
                                          align_corners=False)[:, 0, :, 0]
    val = torch.where(torch.isfinite(landmarks).all(-1), val, torch.zeros_like(val))
    return (2 * val).clamp(0, 1)


def _e_step(cfg: ImageFitConfig, model, targets, out, unet, size: int, fitting: bool = False) -> torch.Tensor:
    """The E-step mask: the UNet's when given, else :func:`robust_mask` with ξ (the returned mask) or, for the
    M-step's pixel weights (``fitting``), the stricter ``xi_fit``."""
    with torch.no_grad():
        if unet is not None:
            return face_mask(out.region, eval_view(unet)(targets, out.image.clamp(0, 1)))
        window = max(1, int(round(cfg.mask_window * size / 128)) | 1)
        xi = cfg.xi_fit if fitting and cfg.xi_fit is not None else cfg.xi_for(model)
        return robust_mask(targets, out.image, out.region, xi, window)


def fit_image(renderer: FaceRenderer, images: torch.Tensor, landmarks: torch.Tensor | None = None, *,
              init: torch.Tensor | None = None, config: ImageFitConfig | str | None = None,
              landmark_weights: torch.Tensor | None = None, unet: torch.nn.Module | None = None) -> FitResult:
    """Fit every θ group to photos, robustly (see the module docstring).

    Args:
        renderer: a :class:`~occrecon.render.FaceRenderer` whose camera frames ``images``.
        images: ``(B, 3, S, S)`` float RGB in [0, 1] (aligned crops), S × S the renderer's image size.
        landmarks: optional ``(B, 68, 2)`` landmarks in the images' pixels (NaN where missing).
        init: optional ``(B, P)`` initial θ (e.g. an encoder's prediction); default the mean face, θ = 0.
        config: an :class:`~occrecon.fit.ImageFitConfig` or a preset name (``"fast"``, ``"quality"``); default
            ``"fast"``. ``config.image_size`` (when set and different from S) resizes images and landmarks and
            fits at that size.
        landmark_weights: per-landmark weights ``(68,)`` or ``(B, 68)`` (default the landmark fit's).
        unet: optional segmentation network ``(target, render) -> logits``: the E-step then uses it.

    Returns:
        :class:`FitResult`. Deterministic for ``config.seed`` on the CPU; float32 or float64 follow the
        renderer's model.

    Raises:
        TypeError / ValueError naming the argument for malformed input (shapes, NaN in images, values outside
        [0, 1], an empty batch). A face whose fit fails is flagged, never an exception.
    """
    cfg = fit_preset(config if config is not None else "fast")
    if not isinstance(renderer, FaceRenderer):
        raise TypeError(f"renderer: expected a FaceRenderer, got {type(renderer).__name__}")
    check_images(images, renderer.camera.image_size)
    model = renderer.model
    dt, dev = model.mean.dtype, images.device
    b, size_in = images.shape[0], images.shape[-1]
    lay = renderer.layout
    if landmarks is not None:
        _check_landmark_args(model, landmarks, landmark_weights, None, init)
    elif init is not None:
        _check_landmark_args(model, torch.zeros(b, 68, 2, dtype=dt, device=dev), None, None, init)
    size = cfg.image_size or size_in
    r = scaled_renderer(renderer, size)
    k = size / size_in
    targets = images.to(dt)
    if size != size_in:
        targets = torch.nn.functional.interpolate(targets, size=(size, size), mode="bilinear", antialias=True,
                                                  align_corners=False).clamp(0, 1)
    lm = None if landmarks is None else landmarks.to(dt) * k
    theta = init.to(dt).clone() if init is not None else lay.zeros(b, dtype=dt, device=dev)
    if model.exp_bounds is not None:
        lo, hi = model.exp_bounds
        theta[:, lay.slice("exp")] = theta[:, lay.slice("exp")].clamp(lo, hi)

    # 1. landmarks
    lm_fit = None
    lm_weights = lm_used = None
    if lm is not None:
        lm_fit = fit_landmarks(model, r.camera, lm, weights=landmark_weights, init=theta, config=cfg.landmarks,
                               distance=r.distance)
        theta = lm_fit.theta.clone()
        _, lm_weights, lm_used = _check_landmark_args(model, lm, landmark_weights, None, None)
        lm_used = lm_used & ~lm_fit.failed[:, None]

    # 2. light
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    obs = visible_vertices(r, theta, targets)
    light = ransac_light(obs, hypotheses=cfg.ransac_hypotheses, sample=cfg.ransac_sample,
                         threshold=cfg.ransac_threshold, ambient=r.ambient, max_tint=cfg.ransac_max_tint,
                         max_brightness=cfg.ransac_max_brightness, generator=gen,
                         prior_gamma=_learned_light_mean(model) if cfg.w_light_prior > 0 else None)
    gsl = lay.slice("gamma")
    gamma0 = gamma_to_theta(light.gamma, r.ambient)
    theta[:, gsl] = torch.where(light.ok[:, None], gamma0, theta[:, gsl])
    light_prior = theta[:, gsl].clone()
    initial = theta.clone()

    # 3. EM
    objective = _Objective(r, cfg, targets, lm, lm_weights, lm_used, light_prior)
    lr = _lr_vector(lay, cfg.lr, dt, dev)
    m1, m2 = torch.zeros_like(theta), torch.zeros_like(theta)
    # Adam; eps well above float noise: a coefficient the photo says nothing about (|gradient| ≪ eps) stays put
    # instead of taking full lr steps in the direction of rounding noise
    beta1, beta2, eps = 0.9, 0.999, ADAM_EPS
    good = theta.clone()
    diverged = torch.zeros(b, dtype=torch.bool, device=dev)
    history = []
    esl = lay.slice("exp")
    with torch.no_grad():
        out = r(theta)
    step_count = 0
    trust_window = max(3, int(round(cfg.trust_window * size / 128)) | 1)
    for _round in range(cfg.rounds):
        mask = _e_step(cfg, model, targets, out, unet, size, fitting=True)
        if lm is not None and cfg.trust_window > 0:
            trust = landmark_trust(mask, out.region, lm, trust_window)
            objective.set_landmark_trust(trust)
            if cfg.refit_landmarks:  # the geometric fit again, without the detections the E-step doubts
                refit = fit_landmarks(model, r.camera, lm, weights=lm_weights * trust, init=theta,
                                      config=cfg.landmarks, distance=r.distance)
                keep = ~refit.failed & ~diverged
                theta = torch.where(keep[:, None], refit.theta, theta)
                with torch.no_grad():
                    out = r(theta)
                mask = _e_step(cfg, model, targets, out, unet, size, fitting=True)
        best = torch.full((b,), math.inf, dtype=dt, device=dev)
        for step in range(cfg.steps):
            x = theta.detach().requires_grad_()
            with torch.enable_grad():
                loss, out = objective(x, mask)
                grad, = torch.autograd.grad(loss.sum(), x)
            lval = loss.detach()
            exploded = lval > best + cfg.explode * best.clamp_min(1.0)
            bad = (~torch.isfinite(lval) | exploded | ~torch.isfinite(grad).all(1)) & ~diverged
            if bool(bad.any()):  # revert and freeze the faces whose step exploded
                theta = torch.where(bad[:, None], good, theta)
                diverged = diverged | bad
                m1 = torch.where(bad[:, None], torch.zeros_like(m1), m1)
                m2 = torch.where(bad[:, None], torch.zeros_like(m2), m2)
            ok_now = ~diverged
            good = torch.where(ok_now[:, None], theta.detach(), good)
            best = torch.where(ok_now, torch.minimum(best, lval), best)
            history.append(torch.where(ok_now, lval, torch.full_like(lval, float("nan"))))
            grad = torch.where(ok_now[:, None], torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0),
                               torch.zeros_like(grad))
            step_count += 1
            m1 = beta1 * m1 + (1 - beta1) * grad
            m2 = beta2 * m2 + (1 - beta2) * grad * grad
            upd = lr * (m1 / (1 - beta1 ** step_count)) / ((m2 / (1 - beta2 ** step_count)).sqrt() + eps)
            theta = theta.detach() - torch.where(ok_now[:, None], upd, torch.zeros_like(upd))
            if model.exp_bounds is not None:
                lo, hi = model.exp_bounds
                theta[:, esl] = theta[:, esl].clamp(lo, hi)
            finite = torch.isfinite(theta).all(1)
            if not bool(finite.all()):
                theta = torch.where(finite[:, None], theta, good)
                diverged = diverged | ~finite
        with torch.no_grad():
            out = r(theta)

    # 4. final E-step (out is the render of the final θ)
    with torch.no_grad():
        final_loss, out = objective(theta, _e_step(cfg, model, targets, out, unet, size, fitting=True))
        bad = ~torch.isfinite(final_loss) & ~diverged
        if bool(bad.any()):
            theta = torch.where(bad[:, None], good, theta)
            diverged = diverged | bad
            out = r(theta)
        mask = _e_step(cfg, model, targets, out, unet, size)
    loss = torch.stack(history, 1) if history else torch.zeros(b, 0, dtype=dt, device=dev)
    if loss.shape[1] >= 4 and cfg.steps >= 4:
        last = loss[:, -cfg.steps:]
        q = max(1, cfg.steps // 4)
        change = (last[:, -q - 1] - last[:, -1]).abs() / last[:, -1].abs().clamp_min(1e-12)
        converged = (change < 0.01) & ~diverged
    else:
        converged = ~diverged
    return FitResult(theta.detach(), out.image.detach(), out.region.detach(), mask.detach(), out.landmarks.detach(),
                     targets, loss, converged, diverged, lm_fit, light.inlier_fraction, initial, scale=k)
