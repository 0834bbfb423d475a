"""Configuration of the fitting engine: dataclasses with every default in one place, and the named presets.

Units: landmark residuals are measured in units of the target face's size ``s`` — the root-mean-square distance
of the usable target landmarks from their centroid, in pixels (≈ 0.3 × the face width) — so every weight and
scale below is independent of the image resolution. Photometric terms are in [0, 1]-RGB units per pixel.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["LandmarkFitConfig", "ImageFitConfig", "FIT_PRESETS", "fit_preset", "LANDMARK_FIT_WEIGHTS_68", "XI_LEARNED",
           "XI_PRIOR"]

#: Default per-landmark weights of the landmark fit (iBUG-68 order): the jaw contour (0-16) is a silhouette that
#: fixed model vertices follow only approximately, so it counts half; eyebrows (17-26) move with expressions the
#: models represent coarsely, half as well; nose, eyes and mouth count fully.
LANDMARK_FIT_WEIGHTS_68 = tuple([0.5] * 17 + [0.5] * 10 + [1.0] * 41)

_ROBUST = ("geman-mcclure", "huber", "none")
_PHOTOMETRIC = ("plain", "neighbour")


def _positive(name: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}")


def _count(name: str, value, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


@dataclass
class LandmarkFitConfig:
    """Robust Levenberg–Marquardt fit of pose, identity and expression to 2D landmarks.

    Attributes:
        iterations: LM iterations after the closed-form pose initialisation.
        robust: ``"geman-mcclure"`` (redescending: a gross outlier gets ~no weight), ``"huber"`` or ``"none"``,
            applied per landmark to its residual length by iteratively reweighted least squares.
        robust_scale: the robust function's scale ``c`` in face-size units (0.05 ≈ 1.5 % of the face width).
        anneal: the scale starts at ``anneal × robust_scale`` and halves every iteration down to ``robust_scale``
            (graduated non-convexity: the pose initialisation's residuals are large for every point).
        id_prior: weight of ``‖θ_id‖²`` (coefficients in standard deviations) against the landmark term.
        exp_prior: weight of ``‖θ_exp‖²`` (blendshape weights or standard deviations).
        id_modes: fit only the first ``id_modes`` identity coefficients (None: all); the rest stay as initialised.
            68 points barely determine the higher modes (on held-out photos 40 modes fit the landmarks as well as
            all 100 of ICT's, at 0.4× the cost); the image fit's M-step refines every mode.
        fit_identity, fit_expression: switch the groups off (pose only).
        damping: initial LM damping ``μ`` (relative to the diagonal of the normal matrix).
        tolerance: a face has converged when its cost changes by less than this fraction in one iteration.
        min_landmarks: a face with fewer usable landmarks is not fitted and is flagged.
    """

    iterations: int = 10
    robust: str = "geman-mcclure"
    robust_scale: float = 0.06
    anneal: float = 8.0
    id_prior: float = 2e-3
    exp_prior: float = 5e-4
    id_modes: int | None = 40
    fit_identity: bool = True
    fit_expression: bool = True
    damping: float = 1e-3
    tolerance: float = 1e-5
    min_landmarks: int = 6

    def validate(self) -> LandmarkFitConfig:
        _count("iterations", self.iterations)
        if self.robust not in _ROBUST:
            raise ValueError(f"robust: expected one of {_ROBUST}, got {self.robust!r}")
        _positive("robust_scale", self.robust_scale)
        _positive("anneal", self.anneal)
        if self.anneal < 1:
            raise ValueError(f"anneal: expected >= 1, got {self.anneal!r}")
        _positive("id_prior", self.id_prior, allow_zero=True)
        _positive("exp_prior", self.exp_prior, allow_zero=True)
        if self.id_modes is not None:
            _count("id_modes", self.id_modes)
        _positive("damping", self.damping)
        _positive("tolerance", self.tolerance, allow_zero=True)
        _count("min_landmarks", self.min_landmarks, 4)
        return self


#: eq. 9's ξ for a learned albedo model (the paper's, with BFM), and for the generic Laplacian prior.
XI_LEARNED = 0.17
XI_PRIOR = 0.27


@dataclass
class ImageFitConfig:
    """Robust analysis-by-synthesis of every θ group to a photo (EM: E-step mask, M-step θ).

    Schedule: the landmark fit (when landmarks are given), a RANSAC estimate of the light on the visible vertices,
    then ``rounds`` EM rounds of one E-step and ``steps`` Adam steps on θ each.

    Attributes:
        landmarks: the landmark fit run first (and its weights, reused in the M-step's landmark term).
        rounds, steps: EM rounds and M-step iterations per round.
        image_size: side of the square crop the fit renders at (the input is resized to it); None: the input's.
        xi: eq. 9's threshold on the squared RGB error ‖I_T − I_R‖² of a face pixel, for the returned mask; None
            (default) picks it by the model's albedo (:meth:`xi_for`): the paper's 0.17 (:data:`XI_LEARNED`) for a
            learned albedo (BFM's, or one built by ``occrecon model albedo build``); 0.27 (:data:`XI_PRIOR`) for
            the generic Laplacian prior, which cannot draw brows, lips or beards, so visible skin errs more (chosen
            on a random 128 of the held-out faces; docs/fitting.md).
        xi_fit: the stricter threshold of the M-step's pixel weights (None: ``xi``). Leaving a doubtful pixel
            out of the fit costs little; fitting an occluder's colour costs the light and the albedo.
        sigma: eq. 8's σ of the face-pixel Gaussian (the authors' 0.043); scales the photometric term.
        mask_window: side (pixels at 128²; scaled with the image) of the box filter that averages the
            per-pixel log-likelihood ratio before thresholding (a mean-field stand-in for an MRF prior: thin
            unexplained structures such as brows and lips stay face, large coherent occluders go). 1 = off.
        trust_window: after each E-step the detected landmarks are reweighted by the face share of the rendered
            pixels in this box around them (pixels at 128², scaled): a detection inside an occluder stops pulling
            the fit (:func:`occrecon.fit.image.landmark_trust`). 0 = off.
        refit_landmarks: after each E-step, run the landmark fit again with those trust weights (the geometry
            is then fitted to the landmarks the photo supports, the rest filled in by the prior).
        photometric: ``"plain"`` per-pixel error or ``"neighbour"`` (eq. 1's neighbourhood-min, ``neighbour_k``).
        w_photo, w_landmarks: weights of the masked photometric term (the mean over the kept pixels of
            ‖I_T − I_R‖² / 2σ²: nats per pixel) and of the landmark term (the weighted mean over the landmarks of
            their robust cost / 2·landmark_sigma², residuals in face-size units: nats per landmark).
        landmark_sigma: the detector's noise in face-size units (0.03 ≈ 1 % of the face width).
        w_id, w_exp, w_tex: Gaussian priors ‖θ_id‖², ‖θ_exp‖², ‖θ_tex‖².
        w_light: prior on the SH coefficients: ``Σ_k b_k (γ_k − γ_k^RANSAC)²`` towards the RANSAC estimate, with
            per-band weights ``b`` (:attr:`light_band_weights`): the DC terms (a per-channel brightness) move
            freely, the directional bands are held near the occlusion-robust estimate.
        light_band_weights: relative prior weights of SH bands 0, 1, 2.
        w_light_prior: weight of the learned illumination prior, when the model has one
            (``MorphableModel.sh_mean`` / ``sh_cov``, :mod:`occrecon.fit.appearance`): ``½ (γ − μ)ᵀ Σ⁻¹ (γ − μ)`` on
            the full 27 coefficients (nats); the RANSAC hypotheses are then also pulled towards μ.
        lr: Adam learning rates per θ group (parameter units per step).
        ransac_hypotheses, ransac_sample, ransac_threshold: RANSAC light estimate: hypotheses per face, vertices
            per hypothesis, inlier threshold on the RGB residual norm ([0, 1] units).
        ransac_max_tint, ransac_max_brightness: plausibility of a light hypothesis: each channel's DC within this
            factor of the channels' mean, and the median predicted luminance within this factor of the observed
            one (:func:`occrecon.fit.light.ransac_light`).
        explode: a step whose loss rises above the face's best loss of the round by more than
            ``explode × max(best, 1)`` (nats), or is not finite, reverts that face to its last good θ, and the face
            is flagged ``diverged`` and frozen.
        seed: RANSAC's random generator (the fit is deterministic for a seed).
    """

    landmarks: LandmarkFitConfig = field(default_factory=LandmarkFitConfig)
    rounds: int = 2
    steps: int = 20
    image_size: int | None = 128
    xi: float | None = None
    xi_fit: float | None = 0.06
    sigma: float = 0.043
    mask_window: int = 7
    trust_window: int = 9
    refit_landmarks: bool = True
    photometric: str = "plain"
    neighbour_k: int = 3
    w_photo: float = 1.0
    w_landmarks: float = 10.0
    landmark_sigma: float = 0.03
    w_id: float = 0.02
    w_exp: float = 0.005
    w_tex: float = 0.2
    w_light: float = 0.5
    light_band_weights: tuple[float, float, float] = (0.0, 1.0, 3.0)
    w_light_prior: float = 0.05
    lr: dict = field(default_factory=lambda: {"id": 0.03, "exp": 0.01, "tex": 0.05, "angle": 0.003,
                                              "gamma": 0.01, "trans": 0.001})
    ransac_hypotheses: int = 256
    ransac_sample: int = 4
    ransac_threshold: float = 0.12
    ransac_max_tint: float = 1.6
    ransac_max_brightness: float = 1.5
    explode: float = 10.0
    seed: int = 0

    def validate(self) -> ImageFitConfig:
        if not isinstance(self.landmarks, LandmarkFitConfig):
            raise TypeError(f"landmarks: expected a LandmarkFitConfig, got {type(self.landmarks).__name__}")
        self.landmarks.validate()
        _count("rounds", self.rounds)
        _count("steps", self.steps)
        if self.image_size is not None:
            _count("image_size", self.image_size, 16)
        if self.xi is not None:
            _positive("xi", self.xi)
        if self.xi_fit is not None:
            _positive("xi_fit", self.xi_fit)
        _positive("sigma", self.sigma)
        _count("mask_window", self.mask_window, 1)
        _count("trust_window", self.trust_window, 0)
        if self.mask_window % 2 == 0:
            raise ValueError(f"mask_window: expected an odd size, got {self.mask_window}")
        if self.photometric not in _PHOTOMETRIC:
            raise ValueError(f"photometric: expected one of {_PHOTOMETRIC}, got {self.photometric!r}")
        _count("neighbour_k", self.neighbour_k, 1)
        if self.neighbour_k % 2 == 0:
            raise ValueError(f"neighbour_k: expected an odd size, got {self.neighbour_k}")
        _positive("landmark_sigma", self.landmark_sigma)
        for name in ("w_photo", "w_landmarks", "w_id", "w_exp", "w_tex", "w_light", "w_light_prior"):
            _positive(name, getattr(self, name), allow_zero=True)
        if len(self.light_band_weights) != 3:
            raise ValueError(f"light_band_weights: expected 3 values, got {self.light_band_weights!r}")
        for v in self.light_band_weights:
            _positive("light_band_weights", v, allow_zero=True)
        groups = ("id", "exp", "tex", "angle", "gamma", "trans")
        unknown = [k for k in self.lr if k not in groups]
        if unknown:
            raise ValueError(f"lr: unknown group(s) {unknown}; expected a subset of {groups}")
        for k, v in self.lr.items():
            _positive(f"lr[{k!r}]", v, allow_zero=True)
        _count("ransac_hypotheses", self.ransac_hypotheses, 1)
        _count("ransac_sample", self.ransac_sample, 1)
        _positive("ransac_threshold", self.ransac_threshold)
        for name in ("ransac_max_tint", "ransac_max_brightness"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 1):
                raise ValueError(f"{name}: expected a factor > 1, got {getattr(self, name)!r}")
        _positive("explode", self.explode)
        _count("seed", self.seed)
        return self

    def xi_for(self, model) -> float:
        """``xi``, or the default for ``model``'s albedo when it is None (see the attribute)."""
        if self.xi is not None:
            return float(self.xi)
        return XI_PRIOR if str(getattr(model, "albedo_source", "model")).startswith("laplacian") else XI_LEARNED

    def replace(self, **changes) -> ImageFitConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``), validated."""
        return dataclasses.replace(self, **changes).validate()


def _fast() -> ImageFitConfig:
    # On the first 128 held-out faces (evaluate-fit --encoder-init, docs/fitting.md) this schedule matches
    # "standard" within a standard error on every figure (landmarks, visible-skin RMSE, mask) at 0.66× its time.
    return ImageFitConfig(landmarks=LandmarkFitConfig(iterations=5), rounds=2, steps=12)


def _standard() -> ImageFitConfig:
    return ImageFitConfig(rounds=2, steps=20)


def _quality() -> ImageFitConfig:
    return ImageFitConfig(landmarks=LandmarkFitConfig(iterations=20), rounds=4, steps=40)


#: Named presets: ``"fast"`` (5 landmark iterations, 2 × 12 M-steps: the inference default, ≈ 165 ms per face at
#: B = 1 on 2 cores), ``"standard"`` (10 + 2 × 20: the schedule the shipped albedo and the training teacher were
#: built with, and the ``fast`` preset until 2026-12) and ``"quality"`` (20 + 4 × 40).
FIT_PRESETS = {"fast": _fast, "standard": _standard, "quality": _quality}


def fit_preset(name: str | ImageFitConfig) -> ImageFitConfig:
    """The named preset (a fresh object), or ``name`` itself if it already is a config (validated)."""
    if isinstance(name, ImageFitConfig):
        return name.validate()
    if name not in FIT_PRESETS:
        raise ValueError(f"fit: expected one of {tuple(FIT_PRESETS)} or an ImageFitConfig, got {name!r}")
    return FIT_PRESETS[name]().validate()
