"""Occlusion samples with exact ground truth: synthetic renders and real aligned faces, composited with occluders.

(a) **Synthetic faces**: a ``MorphableModel`` (SFM 3448 by default) rendered by ``occrecon.render.FaceRenderer``
with random θ (identity/expression from the prior, pose within ±30° yaw and ±15° pitch/roll, a small translation)
over a random background (smooth noise, gradients, textures or a crop of another image). Albedo and light follow
``SynthConfig.appearance`` (:func:`random_theta`): *learned* (the default for a model with a learned albedo and an
illumination prior, ``occrecon model albedo build``) draws the albedo from the learned model and the light from the
prior of real-photo fits, so renders look like people; *legacy* (the default for every other model) draws the
albedo from the model's prior with a random global skin tone, and the light from hand-set ranges around the
renderer's ambient. GT: θ, the renderer's 68 landmark projections (**NaN where the model has no landmark vertex**:
SFM has no jaw contour except the chin; they stay NaN in every output), and the face region = Φ (the rendered
region).

(b) **Real faces**: the development photos (``shared/assets/faces/dev``, aligned to 224² from their 5-point
detections with ``align_face``) and ``skimage.data.astronaut()`` (5 points from ``detect_landmarks``); the 68
landmarks come from dlib on the aligned crop. The face region of a real face is defined from its landmarks, not
learned: the convex hull of the jaw contour (0–16) and of the eyebrow points (17–26) raised by
:data:`BROW_RAISE` × the chin-to-brow distance (forehead skin above the brows). Augmented copies (flip with
landmark re-indexing, small shift/rotation/scale, colour) multiply the 18 faces.

Each sample is composited with 0..``max_occluders`` random occluders (``occrecon.data.occluders``); a fraction
``1 − occluded_fraction`` gets none. GT visible-face mask = region × (occluder alpha < 0.5), i.e.
region × (1 − A > 0.5). Everything is a function of ``(seed, stream, index)`` (a numpy Generator per sample),
so samples do not depend on generation order or the number of processes.
"""
from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import assets
from .ibug import IBUG_FLIP
from .occluders import KINDS, ImageSource, OccluderLayer, OccluderLibrary, composite, random_occluders
from .align import transform_points, warp_affine
from .warp import similarity_matrix

__all__ = ["SynthConfig", "Sample", "RealFace", "SampleGenerator", "random_theta", "resolve_appearance",
           "synth_model_path", "random_background", "real_face_region", "labelled_region", "load_real_faces", "load_face_folder",
           "image_sources", "occlude", "apply_occluders", "BROW_RAISE", "OCCLUDED_MIN_FRACTION", "SYNTHETIC_STREAM", "REAL_STREAM",
           "SKIMAGE_SOURCES", "APPEARANCES", "TEX_STD", "LIGHT_DRAWS"]

#: Eyebrow points are raised by this fraction of the chin-to-brow distance to close the real-face region.
BROW_RAISE = 0.12
#: A sample counts as ``occluded`` when at least this fraction of its face region is covered (alpha ≥ 0.5).
OCCLUDED_MIN_FRACTION = 0.01
#: Random-stream ids: sample ``i`` of a kind uses ``np.random.default_rng([seed, stream, i])``.
SYNTHETIC_STREAM, REAL_STREAM, HELD_OUT_STREAM = 0, 1, 2
#: ``SynthConfig.appearance`` values: ``auto`` is ``learned`` for a model with a learned albedo and an illumination
#: prior, else ``legacy`` (see :func:`random_theta`).
APPEARANCES = ("auto", "learned", "legacy")
#: Albedo coefficient spread of each appearance when ``SynthConfig.tex_std`` is None: legacy 0.2 in the units of
#: the model's (generic, unscaled) prior, learned 1.0 = the spread of the real faces the model was built from (its
#: basis is scaled to standard deviations).
TEX_STD = {"legacy": 0.2, "learned": 1.0}
#: A learned light draw whose DC term (ambient included) is not positive in every channel is drawn again, at most
#: this many times in all.
LIGHT_DRAWS = 100

#: scikit-image sample images used as backgrounds / cut-out sources, with the licence their docstrings state.
SKIMAGE_SOURCES = {"astronaut": "public domain", "chelsea": "CC0", "coffee": "CC0", "rocket": "public domain",
                   "brick": "CC0", "grass": "CC0", "gravel": "CC0", "hubble_deep_field": "public domain",
                   "camera": "CC0"}


@dataclass
class SynthConfig:
    """Sampling ranges. Angles in degrees, translations in model units, sizes in pixels. ``appearance``: one of
    :data:`APPEARANCES` (:func:`random_theta`); ``tex_std``: the albedo coefficients' spread, None = the
    appearance's own (:data:`TEX_STD`)."""
    size: int = 224
    max_occluders: int = 3
    occluded_fraction: float = 0.75
    kinds: dict[str, float] = field(default_factory=lambda: dict(KINDS))
    yaw: float = 30.0
    pitch: float = 15.0
    roll: float = 15.0
    shift_xy: float = 0.015  # of the camera distance (15 mm at 1 m)
    shift_z: float = 0.05  # of the camera distance
    id_std: float = 1.0
    tex_std: float | None = None
    expression_prob: float = 0.5
    appearance: str = "auto"

    def validate(self) -> None:
        _check_appearance(self.appearance)
        if not 0.0 <= self.occluded_fraction <= 1.0:
            raise ValueError(f"occluded_fraction must be in [0, 1], got {self.occluded_fraction}")
        if self.max_occluders < 0:
            raise ValueError(f"max_occluders must be >= 0, got {self.max_occluders}")
        if self.occluded_fraction > 0 and self.max_occluders == 0:
            raise ValueError("max_occluders must be >= 1 when occluded_fraction > 0")
        if self.size < 32:
            raise ValueError(f"size must be >= 32, got {self.size}")


@dataclass
class Sample:
    """One sample. ``image uint8 (H, W, 3)``; ``landmarks (68, 2) float32`` (pixel centres at +0.5, NaN where
    unknown); ``mask (H, W) float32`` {0, 1} GT visible face; ``region (H, W)`` {0, 1}; ``occluder_alpha (H, W)``
    in [0, 1]; ``theta (P,) float32`` or None (real faces); ``occluders``: list of ``{name, kind, licence}``."""
    id: str
    kind: str
    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    occluder_alpha: np.ndarray
    occluders: list[dict]
    occluded: bool
    theta: np.ndarray | None
    seed: int
    index: int
    identity: str
    split: str | None = None  # "train" / "held_out" for faces of a face folder (identity split), else None
    source: str | None = None  # a real face's provenance (face folder: "<id> <licence> <source>")

    def meta(self) -> dict:
        """The ``meta.jsonl`` record (JSON-serialisable)."""
        covered = float((self.region * (self.occluder_alpha >= 0.5)).sum() / max(self.region.sum(), 1.0))
        rec = {"id": self.id, "kind": self.kind, "identity": self.identity, "occluded": bool(self.occluded),
               "occluded_fraction": round(covered, 6), "occluders": self.occluders, "seed": int(self.seed),
               "index": int(self.index)}
        if self.split is not None:
            rec["split"] = self.split
        if self.source is not None:
            rec["source"] = self.source
        return rec


@dataclass
class RealFace:
    """An aligned real face: ``name``, ``image uint8 (S, S, 3)``, dlib's ``landmarks (68, 2) float32``; from a face
    folder also its ``identity`` (``"face:<cluster>"``), ``split`` and ``source`` (id, licence, repository)."""
    name: str
    image: np.ndarray
    landmarks: np.ndarray
    identity: str | None = None
    split: str | None = None
    source: str | None = None


_TONE_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LIGHT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _tone_basis(model) -> tuple[np.ndarray, np.ndarray]:
    """``(K, 3)`` mean colour shift per albedo coefficient and the ``(3,)`` mean albedo colour (cached per model)."""
    if model not in _TONE_CACHE:
        _TONE_CACHE[model] = (model.albedo_basis.double().mean(1).numpy(), model.albedo_mean.double().mean(0).numpy())
    return _TONE_CACHE[model]


def _check_appearance(appearance) -> None:
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance: expected one of {', '.join(map(repr, APPEARANCES))}, got {appearance!r}")


def resolve_appearance(model, appearance: str = "auto", source: str | Path | None = None) -> str:
    """``"learned"`` or ``"legacy"``: what :func:`random_theta` draws for ``model`` under ``appearance`` (``"auto"``:
    learned when the model has a learned albedo, ``albedo_source == "learned"``, and an illumination prior,
    ``sh_mean``/``sh_cov``; else legacy). ValueError for a value not in :data:`APPEARANCES`, and for ``"learned"``
    with a model that lacks either (named by ``source``, default the model's name)."""
    _check_appearance(appearance)
    missing = []
    if getattr(model, "sh_mean", None) is None:
        missing.append("no illumination prior (sh_mean / sh_cov)")
    if getattr(model, "albedo_source", None) != "learned":
        missing.append(f"no learned albedo (albedo_source {getattr(model, 'albedo_source', None)!r})")
    if appearance == "auto":
        return "legacy" if missing else "learned"
    if appearance == "learned" and missing:
        raise ValueError(f"appearance 'learned': model {source or model.name} has {' and '.join(missing)}; use a "
                         f"model built by 'occrecon model albedo build', or appearance 'legacy'")
    return appearance


def _light_prior(model) -> tuple[np.ndarray, np.ndarray]:
    """The illumination prior's ``(27,)`` mean and the Cholesky factor ``(27, 27)`` of its covariance (float64,
    cached per model)."""
    if model not in _LIGHT_CACHE:
        cov = model.sh_cov.detach().double().cpu().numpy()
        _LIGHT_CACHE[model] = (model.sh_mean.detach().double().cpu().numpy(), np.linalg.cholesky(cov))
    return _LIGHT_CACHE[model]


def _learned_light(rng: np.random.Generator, model, ambient: float) -> np.ndarray:
    """θ's 27 light coefficients: a draw of the model's illumination prior (full coefficients) with a positive DC
    term in every channel, less the renderer's ``ambient`` on the DC terms."""
    mean, chol = _light_prior(model)
    dc = np.arange(3) * 9
    for _ in range(LIGHT_DRAWS):
        light = mean + chol @ rng.standard_normal(27)
        if (light[dc] > 0).all():
            light[dc] -= ambient
            return light
    raise ValueError(f"model {model.name}: its illumination prior (sh_mean / sh_cov) gave no light with a positive "
                     f"DC term in every channel in {LIGHT_DRAWS} draws")


def _legacy_light(rng: np.random.Generator) -> np.ndarray:
    """θ's 27 light coefficients from the hand-set ranges of the ``legacy`` appearance (see :func:`random_theta`)."""
    gamma = np.zeros((3, 9))
    gamma[:, 0] = rng.uniform(-0.1, 0.3) + rng.uniform(-0.05, 0.05, 3)
    gamma[:, 1:4] = [rng.normal(0, 0.2), rng.uniform(0.0, 0.35), rng.normal(0, 0.2)]  # Y1 ~ -y, Y2 ~ z, Y3 ~ -x
    gamma[:, 4:9] = rng.normal(0, 0.06, 5)
    return gamma.reshape(-1)


def random_theta(rng: np.random.Generator, model, config: SynthConfig | None = None,
                 distance: float = 1000.0, ambient: float | None = None) -> np.ndarray:
    """θ ``(model.layout.size,) float32``: identity ~ N(0, id_std²); expression: each coefficient active with
    probability ``expression_prob``, weight U(0, 0.8); pose uniform within ±yaw/±pitch/±roll; translation uniform
    within ±shift·distance. Albedo and light depend on ``config.appearance`` (:func:`resolve_appearance`):

    - ``learned``: albedo ~ N(0, tex_std²) in the learned basis (standard deviations: ``tex_std`` 1 is the spread
      of the real faces it was built from); light ~ N(sh_mean, sh_cov), the model's illumination prior, drawn again
      while a DC term is not positive (at most :data:`LIGHT_DRAWS` draws), less the renderer's ``ambient`` (default
      ``occrecon.render.face.DEFAULT_AMBIENT``) on the DC terms, as θ holds it.
    - ``legacy``: albedo ~ N(0, tex_std²) plus a global skin tone (a brightness factor U(0.5, 1.15) and a small
      tint, realised by the minimum-norm albedo coefficients that shift the mean colour); SH light: DC U(−0.1, 0.3)
      per channel (shared, plus a ±0.05 tint); band 1 shared by the channels: vertical and horizontal N(0, 0.2²),
      frontal (toward the camera) U(0, 0.35); band 2 N(0, 0.06²).

    ``tex_std`` None is the appearance's own, :data:`TEX_STD`."""
    cfg = config or SynthConfig()
    appearance = resolve_appearance(model, cfg.appearance)
    tex_std = TEX_STD[appearance] if cfg.tex_std is None else cfg.tex_std
    lay = model.layout
    theta = np.zeros(lay.size, np.float64)
    n_id, n_exp, n_tex = model.n_id, model.n_exp, model.n_tex
    theta[lay.slice("id")] = rng.normal(0, cfg.id_std, n_id)
    theta[lay.slice("exp")] = (rng.random(n_exp) < cfg.expression_prob) * rng.uniform(0, 0.8, n_exp)
    tex = rng.normal(0, tex_std, n_tex)
    if appearance == "legacy" and n_tex:
        basis, mean = _tone_basis(model)
        tone = rng.uniform(0.5, 1.15)
        target = mean * (tone * (1 + rng.uniform(-0.06, 0.06, 3)) - 1)
        tex += np.linalg.pinv(basis.T) @ (target - basis.T @ tex)
    theta[lay.slice("tex")] = tex
    theta[lay.slice("angle")] = np.radians([rng.uniform(-cfg.pitch, cfg.pitch), rng.uniform(-cfg.yaw, cfg.yaw),
                                            rng.uniform(-cfg.roll, cfg.roll)])
    if appearance == "legacy":
        theta[lay.slice("gamma")] = _legacy_light(rng)
    else:
        from ..render.face import DEFAULT_AMBIENT

        theta[lay.slice("gamma")] = _learned_light(rng, model, DEFAULT_AMBIENT if ambient is None else ambient)
    theta[lay.slice("trans")] = [rng.uniform(-1, 1) * cfg.shift_xy * distance,
                                 rng.uniform(-1, 1) * cfg.shift_xy * distance,
                                 rng.uniform(-1, 1) * cfg.shift_z * distance]
    return theta.astype(np.float32)


def random_background(rng: np.random.Generator, size: tuple[int, int],
                      sources: list[ImageSource] | None = None) -> np.ndarray:
    """``(H, W, 3) float32`` background: smooth colour noise, a linear gradient, a texture, or a randomly scaled
    and rotated crop of one of ``sources``."""
    from .occluders import _smooth_noise, _texture

    h, w = size
    kinds = ["noise", "gradient", "texture"] + (["image"] * 2 if sources else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "noise":
        cells = int(rng.integers(2, 16))
        bg = np.stack([_smooth_noise(rng, size, cells) for _ in range(3)], -1)
        bg = bg * rng.uniform(0.3, 1.0) + rng.uniform(0, 0.5, 3)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = ((xs - w / 2) * math.cos(a) + (ys - h / 2) * math.sin(a)) / max(h, w) + 0.5
        c1, c2 = rng.random(3), rng.random(3)
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "texture":
        bg = _texture(rng, size)
    else:
        src = sources[int(rng.integers(len(sources)))].image
        sh, sw = src.shape[:2]
        crop = rng.uniform(0.3, 1.0) * min(sh, sw)
        cx, cy = rng.uniform(crop / 2, sw - crop / 2), rng.uniform(crop / 2, sh - crop / 2)
        m = similarity_matrix(max(h, w) / crop, rng.uniform(-0.3, 0.3), (cx, cy), (w / 2 - cx, h / 2 - cy))
        bg = warp_affine(src.astype(np.float32) / 255.0, m, size, padding="edge")
    return np.clip(bg, 0, 1).astype(np.float32)


def real_face_region(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W) float32`` {0, 1}: pixels whose centre lies inside the convex hull of the jaw contour (0–16) and the
    eyebrows (17–26) raised by :data:`BROW_RAISE` × the chin-to-brow distance, perpendicular to the eye line."""
    from scipy.spatial import ConvexHull
    from skimage.draw import polygon

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm[:27]).all():
        raise ValueError("landmarks: need (68, 2) with finite jaw (0-16) and eyebrow (17-26) points")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    d = (eye_r - eye_l) / max(np.hypot(*(eye_r - eye_l)), 1e-9)
    up = np.array([d[1], -d[0]])
    height = float(np.hypot(*(lm[17:27].mean(0) - lm[8])))
    pts = np.vstack([lm[0:17], lm[17:27] + up * BROW_RAISE * height])
    hull = pts[ConvexHull(pts).vertices]
    rr, cc = polygon(hull[:, 1] - 0.5, hull[:, 0] - 0.5, shape=tuple(size))  # skimage: integer = pixel centre
    region = np.zeros(size, np.float32)
    region[rr, cc] = 1.0
    return region


def labelled_region(region: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """``(H, W) float32`` {0, 1}: the pixels of a real photo whose ground truth is known — the landmark face region
    (visible face unless an occluder covers it) and every occluder pixel (alpha ≥ 0.5: not face, wherever it lies).
    Elsewhere, e.g. forehead skin above :func:`real_face_region`'s raised brows or the cheek beyond the jaw
    contour, the photo may show skin, hair or background: the truth there is unknown, and metrics leave it out
    rather than count correct skin as an error."""
    known = np.asarray(region, np.float32) > 0.5
    if alpha is not None:
        known = known | (np.asarray(alpha, np.float32) >= 0.5)
    return known.astype(np.float32)


def load_face_folder(root: str | Path | None = None, size: int = 224, *, licence: str = "licensed",
                     held_out: float | None = None, split_seed: int | None = None,
                     held_out_licence: str = "all") -> tuple[list[RealFace], list[RealFace]]:
    """The faces of a real-face folder (the layout of ``shared/assets/faces/train``, :mod:`occrecon.data.faces`),
    aligned to ``size``² through the one photo → aligned face path (:func:`occrecon.data.prepare.prepare_face`,
    with the folder's dlib landmarks), split by identity (:func:`occrecon.data.faces.identity_split`, the split the
    fitting engine's evaluation holds out): ``(training faces whose licence passes licence, held-out faces whose
    licence passes held_out_licence)``. Faces flagged ``possibly_occluded`` (real masks: unknown truth) are left
    out. ValueError when no training face passes the filter; faces that cannot be aligned are reported with a
    warning."""
    from .faces import HELD_OUT, SPLIT_SEED, identity_split, licence_filter, read_face_folder
    from .io import read_image
    from .prepare import prepare_face

    train, held = identity_split(read_face_folder(root), HELD_OUT if held_out is None else held_out,
                                 SPLIT_SEED if split_seed is None else split_seed)  # over every face, as evaluate-fit
    usable = [[r for r in recs if "possibly_occluded" not in r.flags] for recs in (train, held)]
    train, held = licence_filter(usable[0], licence), licence_filter(usable[1], held_out_licence)
    if not train:
        raise ValueError(f"licence: no training face of {root or 'the shared face folder'} passes the filter "
                         f"{licence!r}")
    out: dict[str, list[RealFace]] = {"train": [], "held_out": []}
    bad = []
    for split, recs in (("train", train), ("held_out", held)):
        for r in recs:
            try:
                face = prepare_face(read_image(r.path), size, landmarks=r.landmarks)
            except ValueError as e:
                bad.append(f"{r.id} ({e})")
                continue
            out[split].append(RealFace(r.id, face.crop, face.landmarks, f"face:{r.identity}", split,
                                       f"{r.id} {r.licence} {r.source}"))
    if bad:
        warnings.warn(f"load_face_folder: {len(bad)} face(s) could not be aligned and are left out: "
                      + ", ".join(bad[:5]))
    return out["train"], out["held_out"]


def image_sources(include_dev_faces: bool = True) -> list[ImageSource]:
    """Images for backgrounds and cut-outs: scikit-image's bundled sample images whose docstrings state public
    domain or CC0 (:data:`SKIMAGE_SOURCES`), plus the development face photos (licence unknown: left out when
    ``include_dev_faces`` is False, as ``permissive_only`` does)."""
    import skimage.data

    out = []
    for name, licence in SKIMAGE_SOURCES.items():
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        out.append(ImageSource(f"skimage:{name}", np.ascontiguousarray(img[..., :3]).astype(np.uint8), licence))
    if include_dev_faces and assets.shared_dir(required=False) is not None:
        from PIL import Image

        for img_path, _ in assets.dev_faces():
            with Image.open(img_path) as im:
                out.append(ImageSource(f"dev:{img_path.name}", np.asarray(im.convert("RGB")),
                                       "unknown (development photo)"))
    return out


def load_real_faces(size: int = 224, detector=None, include_astronaut: bool = True) -> list[RealFace]:
    """Align the development faces (5-point files) and the astronaut to ``size``², then detect 68 landmarks on each
    crop with dlib, through the one photo → aligned face path (:func:`occrecon.data.prepare.prepare_face`). Faces
    where dlib finds no face on the crop are reported with a warning (never silently)."""
    from .align import five_from_68
    from .io import read_five_points, read_image
    from .landmarks import DlibDetector, detect_landmarks
    from .prepare import prepare_face

    detector = detector or DlibDetector()
    items: list[tuple[str, np.ndarray, np.ndarray]] = []
    for img_path, det_path in assets.dev_faces():
        items.append((img_path.stem, read_image(img_path), read_five_points(det_path)))
    if include_astronaut:
        import skimage.data

        astro = np.ascontiguousarray(skimage.data.astronaut()[..., :3])
        found = detect_landmarks(astro, detector)
        if found is None:
            warnings.warn("load_real_faces: no face found in skimage.data.astronaut(); skipped")
        else:
            items.append(("astronaut", astro, five_from_68(found.points)))
    faces, missing = [], []
    for name, image, five in items:
        face = prepare_face(image, size, five=five, detector=detector, redetect=True)
        if face.landmarks is None:
            missing.append(name)
            continue
        faces.append(RealFace(name, face.crop, np.asarray(face.landmarks, np.float32)))
    if missing:
        warnings.warn(f"load_real_faces: dlib found no face on the aligned crop of {missing}; skipped")
    if not faces:
        raise RuntimeError("load_real_faces: no real face could be aligned and detected")
    return faces


def apply_occluders(image: np.ndarray, region: np.ndarray, layers: list[OccluderLayer]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict], bool]:
    """Composite ``layers`` over ``image (H, W, 3) float`` in [0, 1] with face ``region (H, W)`` {0, 1}.

    Returns ``(image uint8 (H, W, 3), alpha (H, W) float32, mask (H, W) float32, occluder records, occluded)``:
    ``mask = region · (alpha < 0.5)`` (the GT visible face), records ``{name, kind, licence}``, and ``occluded`` =
    at least :data:`OCCLUDED_MIN_FRACTION` of the region is covered. Pixels with alpha 0 keep the input colour."""
    out, alpha = composite(image, layers)
    visible = (alpha < 0.5).astype(np.float32)
    region = np.asarray(region, np.float32)
    mask = region * visible
    covered = float((region * (1 - visible)).sum() / max(float(region.sum()), 1.0))
    records = [{"name": layer.name, "kind": layer.kind, "licence": layer.licence} for layer in layers]
    img8 = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    return img8, alpha, mask, records, covered >= OCCLUDED_MIN_FRACTION


def occlude(rng: np.random.Generator, image: np.ndarray, region: np.ndarray, landmarks: np.ndarray,
            config: SynthConfig, library: OccluderLibrary | None,
            sources: list[ImageSource] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, bool]:
    """Draw 0 occluders (probability ``1 − occluded_fraction``) or 1..``max_occluders`` random ones for a face with
    ``landmarks (68, 2)`` and apply them with :func:`apply_occluders` (same returns)."""
    n = 0
    if rng.random() < config.occluded_fraction:
        n = int(rng.integers(1, config.max_occluders + 1))
    layers = random_occluders(rng, landmarks, image.shape[:2], n, library, sources, config.kinds)
    return apply_occluders(image, region, layers)


def synth_model_path(model_path: str | Path | None = None) -> Path:
    """The face model file of the synthetic samples: ``model_path``, or ``shared/assets/models/sfm_3448.npz`` when
    None. FileNotFoundError naming it when it does not exist."""
    path = Path(model_path) if model_path else assets.shared_dir() / "assets/models/sfm_3448.npz"
    if not path.exists():
        raise FileNotFoundError(f"model_path: {path} does not exist")
    return path


class SampleGenerator:
    """Deterministic sample factory: ``synthetic(i)`` and ``real(i)`` depend only on ``(seed, i)`` and the inputs.

    Args:
        seed: the dataset seed.
        config: :class:`SynthConfig`.
        model_path: face model file (default ``shared/assets/models/sfm_3448.npz``).
        permissive_only: use only permissively licensed library cut-outs and image sources (no development
            photos as backgrounds or cut-outs).
        occluder_root: the cut-out library folder (default ``shared/assets/occluders``).
        real_faces: pre-computed :func:`load_real_faces` (or :func:`load_face_folder` training) faces; computed
            on first use otherwise.
        held_out_faces: the faces of :meth:`held_out` (:func:`load_face_folder`'s held-out faces), or None.
    """

    def __init__(self, seed: int = 0, config: SynthConfig | None = None, model_path: str | Path | None = None,
                 permissive_only: bool = False, occluder_root: str | Path | None = None,
                 real_faces: list[RealFace] | None = None, sources: list[ImageSource] | None = None,
                 held_out_faces: list[RealFace] | None = None):
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.config = config or SynthConfig()
        self.config.validate()
        self.model_path = synth_model_path(model_path)
        self.library = OccluderLibrary(occluder_root, permissive_only=permissive_only)
        self.sources = image_sources(include_dev_faces=not permissive_only) if sources is None else sources
        self._real = real_faces
        self.held_out_faces = held_out_faces
        self._renderer = None

    @property
    def renderer(self):
        if self._renderer is None:
            from ..morphable import load_model
            from ..render import FaceRenderer, PerspectiveCamera

            model = load_model(self.model_path)
            resolve_appearance(model, self.config.appearance, self.model_path)
            cam = PerspectiveCamera()
            if tuple(cam.image_size) != (self.config.size, self.config.size):
                cam = PerspectiveCamera(focal=1015.0 * self.config.size / 224,
                                        image_size=(self.config.size, self.config.size))
            self._renderer = FaceRenderer(model, camera=cam)
        return self._renderer

    @property
    def real_faces(self) -> list[RealFace]:
        if self._real is None:
            self._real = load_real_faces(self.config.size)
        return self._real

    def _rng(self, stream: int, index: int) -> np.random.Generator:
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        return np.random.default_rng([self.seed, stream, index])

    def render_synthetic(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A random face over a random background: ``(image (S, S, 3) float32, region Φ (S, S), landmarks (68, 2),
        theta (P,))``."""
        s = self.config.size
        r = self.renderer
        theta = random_theta(rng, r.model, self.config, r.distance, r.ambient)
        bg = random_background(rng, (s, s), self.sources)
        with torch.no_grad():
            out = r(torch.from_numpy(theta)[None], torch.from_numpy(bg).permute(2, 0, 1)[None])
        image = out.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
        return image, out.region[0, 0].numpy().astype(np.float32), out.landmarks[0].numpy(), theta

    def synthetic(self, index: int) -> Sample:
        """Synthetic sample ``index`` (id ``syn_<index:06d>``)."""
        rng = self._rng(SYNTHETIC_STREAM, index)
        image, region, lms, theta = self.render_synthetic(rng)
        img8, alpha, mask, records, occluded = occlude(rng, image, region, lms, self.config, self.library,
                                                        self.sources)
        return Sample(f"syn_{index:06d}", "synthetic", img8, lms.astype(np.float32), mask, region, alpha, records,
                      occluded, theta, self.seed, index, f"syn_{index:06d}")

    def real(self, index: int) -> Sample:
        """Real sample ``index`` (id ``real_<index:06d>``): augmented copy of face ``index mod n_faces``."""
        return self._real_sample(self.real_faces, REAL_STREAM, index, "real")

    def held_out(self, index: int) -> Sample:
        """Held-out real sample ``index`` (id ``heldout_<index:06d>``, ``split`` ``held_out``): augmented copy of
        held-out face ``index mod n``; never trained on (:func:`occrecon.data.dataset.split_ids`)."""
        if not self.held_out_faces:
            raise ValueError("held_out_faces: this generator has no held-out faces (load_face_folder)")
        return self._real_sample(self.held_out_faces, HELD_OUT_STREAM, index, "heldout", "held_out")

    def _real_sample(self, faces: list[RealFace], stream: int, index: int, prefix: str,
                     split: str | None = None) -> Sample:
        rng = self._rng(stream, index)
        face = faces[index % len(faces)]
        s = self.config.size
        flip = bool(rng.random() < 0.5)
        m = similarity_matrix(rng.uniform(0.95, 1.05), math.radians(rng.uniform(-5, 5)), (s / 2, s / 2),
                              tuple(rng.uniform(-8, 8, 2)), flip=flip, width=s)
        image = warp_affine(face.image.astype(np.float32) / 255.0, m, (s, s), padding="edge")
        lms = transform_points(face.landmarks, m).astype(np.float32)
        if flip:  # x was mirrored by m: re-index so that point i keeps its iBUG meaning
            lms = lms[IBUG_FLIP]
        grey = image.mean(-1, keepdims=True)
        image = grey + (image - grey) * rng.uniform(0.7, 1.3)  # saturation
        image = (image - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.08, 0.08)  # contrast, brightness
        image = np.clip(image * (1 + rng.uniform(-0.05, 0.05, 3)), 0, 1).astype(np.float32)  # white balance
        region = real_face_region(lms, (s, s))
        img8, alpha, mask, records, occluded = occlude(rng, image, region, lms, self.config, self.library,
                                                        self.sources)
        return Sample(f"{prefix}_{index:06d}", "real", img8, lms, mask, region, alpha, records, occluded, None,
                      self.seed, index, face.identity or face.name, split or face.split, face.source)
