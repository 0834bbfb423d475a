"""Learned appearance from real-photo fits: an albedo model and an illumination prior (``occrecon model albedo build``).

For each face of a folder of real photos (the layout of ``shared/assets/faces/train``), the fitting engine
(:func:`~occrecon.fit.fit_image`, with the model's current albedo) gives pose, shape, expression, light and the
E-step's face mask. The colour each vertex receives, divided by its SH shading, is a sample of that face's albedo;
it is kept only where the vertex is visible (front-facing, not hidden by another part of the face, inside the
drawn region Φ, :func:`~occrecon.fit.visible_vertices`), the E-step calls its pixel face, the shading is not too
dark and the colour is neither clipped nor black. Then, for ``rounds`` rounds: the mean albedo is the weighted
mean of the samples; each face's light is re-estimated (least squares on its kept vertices) with that mean, and the
samples are recomputed under the new light. Half-visible faces are completed by the model's left–right vertex
correspondence (:func:`~occrecon.morphable.mirror_map`; a mirrored sample counts half). A PCA that handles
missing data (:func:`~occrecon.morphable.weighted_pca`) gives K modes scaled to standard deviations, as BFM's.
The illumination prior is the mean and covariance of the final lights (27 coefficients, θ's [R9 | G9 | B9] order,
the renderer's ambient included). Albedo and light share a scale: the mean albedo's brightness over the front face
is kept at the prior's (the generic skin tone), so that the lights stay in the renderer's usual range.
"""
from __future__ import annotations

import datetime
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..morphable import MorphableModel, mirror_map, weighted_pca, with_learned_albedo
from ..ops.reference import sh_basis
from ..render.camera import default_camera
from ..render.face import FaceRenderer
from .config import fit_preset
from .image import fit_image
from .light import _ridge_solve, gamma_to_theta, theta_to_gamma, visible_vertices

__all__ = ["AlbedoSamples", "albedo_samples", "estimate_light", "build_albedo_model", "albedo_model_from_images",
           "albedo_gallery", "theta_to_gamma",
           "gamma_to_theta"]

#: Kept samples need a shading of at least this (a dark vertex's albedo is colour / ~0: noise).
MIN_SHADING = 0.15
#: Colours at or above this in any channel are clipped (specular highlights, overexposure): no sample.
MAX_COLOUR = 0.97
#: Colours whose channel mean is below this are too dark to divide (shadow, hair, black padding).
MIN_COLOUR = 0.03
#: A sample's weight ramps from 0 where the view is at the visibility limit (``visible_vertices``' min_cosine) to 1
#: where the cosine between the normal and the direction to the camera reaches this.
FULL_WEIGHT_COSINE = 0.7
VISIBLE_COSINE = 0.25
#: Ridge on the 27 coefficients of the light re-estimation (relative to an area-normalised design).
LIGHT_RIDGE = 1e-3
#: Regulariser added to the illumination prior's covariance diagonal.
SH_COV_FLOOR = 1e-4


@dataclass
class AlbedoSamples:
    """Per-vertex albedo samples of B faces: ``values (B, V, 3)``, ``weights (B, V)`` in [0, 1] (0 = no sample; a
    grazing view counts less, see :data:`FULL_WEIGHT_COSINE`),
    the observations they came from and the light ``gamma (B, 9, 3)`` they were divided by."""

    values: torch.Tensor
    weights: torch.Tensor
    colour: torch.Tensor
    normals: torch.Tensor
    kept: torch.Tensor
    gamma: torch.Tensor


def _mask_at(mask: torch.Tensor, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask (B, 1, h, w)`` (any resolution of the same framing) sampled at ``pixels (B, V, 2)`` of an image of
    ``size`` (nearest)."""
    h, w = size
    grid = torch.stack([pixels[..., 0] / w * 2 - 1, pixels[..., 1] / h * 2 - 1], -1)[:, :, None]
    return torch.nn.functional.grid_sample(mask.to(pixels.dtype), grid, mode="nearest", padding_mode="zeros",
                                           align_corners=False)[:, 0, :, 0]


def albedo_samples(renderer: FaceRenderer, theta: torch.Tensor, images: torch.Tensor,
                   face_mask: torch.Tensor | None = None, gamma: torch.Tensor | None = None) -> AlbedoSamples:
    """The albedo samples of fitted faces (see the module docstring).

    Args:
        renderer: the renderer of ``images``; theta: ``(B, P)`` fitted θ.
        images: ``(B, 3, H, W)`` photos in [0, 1].
        face_mask: optional E-step mask ``(B, 1, h, w)`` in the same framing (any resolution): vertices whose pixel
            it does not call face (< 0.5) give no sample.
        gamma: optional ``(B, 9, 3)`` full SH light to divide by (default: θ's, with the renderer's ambient).
    """
    with torch.no_grad():
        obs = visible_vertices(renderer, theta, images)
        if gamma is None:
            gamma = theta_to_gamma(theta[:, renderer.layout.slice("gamma")], renderer.ambient)
        shading = torch.einsum("bvk,bkc->bvc", sh_basis(obs.normals), gamma.to(obs.normals.dtype))
        kept = obs.visible & (shading.min(-1).values >= MIN_SHADING)
        kept &= (obs.colour.max(-1).values < MAX_COLOUR) & (obs.colour.mean(-1) >= MIN_COLOUR)
        if face_mask is not None:
            kept &= _mask_at(face_mask, obs.pixels, renderer.camera.image_size) >= 0.5
        values = torch.where(kept[..., None], obs.colour / shading.clamp_min(MIN_SHADING), torch.zeros_like(shading))
        # grazing views are the least reliable (a pixel there mixes the surface with its surroundings): the weight
        # ramps from 0 at the visibility limit to 1 at FULL_WEIGHT_COSINE
        ramp = ((obs.cosine - VISIBLE_COSINE) / (FULL_WEIGHT_COSINE - VISIBLE_COSINE)).clamp(0, 1)
        weights = torch.where(kept, ramp.clamp_min(0.05), torch.zeros_like(ramp))
        return AlbedoSamples(values, weights.to(values.dtype), obs.colour, obs.normals, kept, gamma)


def estimate_light(colour: torch.Tensor, normals: torch.Tensor, albedo: torch.Tensor, weights: torch.Tensor,
                   ambient: float, ridge: float = LIGHT_RIDGE) -> torch.Tensor:
    """Least-squares SH light ``(B, 9, 3)`` (full, ambient included) explaining ``colour (B, V, 3)`` as
    ``albedo ⊙ shading(normals)`` on the vertices with ``weights (B, V)``; a small ridge towards an ambient-only
    light keeps a face with few samples well posed."""
    design = albedo[..., :, None] * sh_basis(normals)[..., None, :]  # (B, V, 3, 9)
    b = colour.shape[0]
    w = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    prior = torch.zeros(b, 9, 3, dtype=colour.dtype, device=colour.device)
    prior[:, 0, :] = ambient
    r = torch.full((9,), ridge, dtype=colour.dtype, device=colour.device)
    return _ridge_solve(design, colour, w, r, prior)


def _complete_by_symmetry(values: np.ndarray, weights: np.ndarray, mirror: np.ndarray):
    """Fill vertices without a sample from their mirror vertex's sample, at half weight."""
    mv, mw = values[:, mirror], weights[:, mirror]
    use = (weights <= 0) & (mw > 0)
    return np.where(use[..., None], mv, values), np.where(use, 0.5 * mw, weights)


def _weighted_mean(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    tot = weights.sum(0)
    mean = (weights[..., None] * values).sum(0) / np.maximum(tot, 1e-12)[:, None]
    return np.where(tot[:, None] > 0, mean, fallback)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _prepare(records, size: int, log):
    from ..data.io import read_image
    from ..data.prepare import prepare_face

    crops, lms, used = [], [], []
    for rec in records:
        try:
            prep = prepare_face(read_image(rec.path), size, landmarks=rec.landmarks)
        except ValueError as e:
            log(f"  {rec.id}: left out ({e})")
            continue
        crops.append(torch.from_numpy(prep.crop).permute(2, 0, 1).float() / 255.0)
        lms.append(torch.from_numpy(prep.landmarks).float())
        used.append(rec)
    if not used:
        raise ValueError("faces: no usable face (none could be aligned)")
    return torch.stack(crops), torch.stack(lms), used


def build_albedo_model(model: MorphableModel, records, *, components: int = 80, rounds: int = 3, size: int = 224,
                       fit_size: int = 128, preset: str = "standard", batch_size: int = 16, licence: str = "licensed",
                       command: str = "", pca_iterations: int = 200, log=print) -> tuple[MorphableModel, dict]:
    """Fit every face of ``records`` (:class:`~occrecon.data.faces.FaceRecord`) and build the learned albedo and
    illumination prior (see the module docstring and :func:`albedo_model_from_images`).

    Args:
        model: the face model (its albedo, e.g. the Laplacian prior, is the first round's).
        records: the faces to learn from (already filtered by licence and identity split by the caller).
        components, rounds, fit_size, preset, batch_size: as in :func:`albedo_model_from_images`.
        size: crop size the colours are read at.
        licence: the licence filter the records went through (recorded in the provenance).
    Returns:
        ``(learned model, report)``; the report holds per-round figures.
    Raises:
        ValueError: no usable face, ``components`` larger than the usable faces allow, ``rounds`` < 1.
    """
    records = list(records)
    if not records:
        raise ValueError("faces: no face to build from (check the folder and the licence filter)")
    _check_build_args(components, rounds, len(records))
    images, lms, used = _prepare(records, size, log)
    licences = Counter(r.licence for r in used)
    sources = Counter(r.source for r in used)
    provenance = {
        "built_by": "occrecon model albedo build", "command": command,
        "date": datetime.date.today().isoformat(), "identities": len({r.identity for r in used}),
        "licence_filter": licence, "licences": dict(sorted(licences.items())),
        "sources": dict(sorted(sources.items())), "face_ids": [r.id for r in used], "fit_preset": preset,
        "crop_size": size, "fit_size": fit_size,
    }
    learned, report = albedo_model_from_images(model, images, lms, components=components, rounds=rounds,
                                               fit_size=fit_size, preset=preset, batch_size=batch_size,
                                               provenance=provenance, pca_iterations=pca_iterations, log=log)
    report["left_out"] = len(records) - len(used)
    return learned, report


def _check_build_args(components: int, rounds: int, faces: int) -> None:
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected an int >= 1, got {rounds!r}")
    if not isinstance(components, int) or components < 1:
        raise ValueError(f"components: expected an int >= 1, got {components!r}")
    if components > faces - 1:
        raise ValueError(f"components: K = {components} needs at least K + 1 = {components + 1} usable faces, got "
                         f"{faces}")


def albedo_model_from_images(model: MorphableModel, images: torch.Tensor, landmarks: torch.Tensor | None, *,
                             components: int = 80, rounds: int = 3, fit_size: int | None = 128,
                             preset: str = "standard", batch_size: int = 16, theta: torch.Tensor | None = None,
                             provenance: dict | None = None, pca_iterations: int = 200, log=print) -> tuple[MorphableModel, dict]:
    """The build on aligned crops (see the module docstring).

    Args:
        model: the face model; images: ``(N, 3, S, S)`` aligned crops in [0, 1] (the default framing of
            :func:`~occrecon.render.camera.default_camera`); landmarks: ``(N, 68, 2)`` crop pixels.
        components: K albedo modes (≤ N − 1); rounds: light re-estimation rounds (≥ 1).
        fit_size: the fit's image size (None: S); preset: the fit preset; batch_size: faces per fit batch.
        theta: optional ``(N, P)`` known θ: no fit, every rendered pixel counts as face (tests, and fits made
            elsewhere).
        provenance: recorded in the model, completed with the build's own figures.
    """
    n = images.shape[0]
    _check_build_args(components, rounds, n)
    t0 = time.perf_counter()
    size = images.shape[-1]
    renderer = FaceRenderer(model, camera=default_camera(size))
    if theta is None:
        cfg = fit_preset(preset).replace(image_size=fit_size)
        thetas, masks = [], []
        for s in range(0, n, batch_size):
            res = fit_image(renderer, images[s:s + batch_size], landmarks[s:s + batch_size], config=cfg)
            thetas.append(res.theta)
            masks.append(res.mask)
            log(f"  fitted {min(s + batch_size, n)}/{n} faces "
                f"({(time.perf_counter() - t0) / min(s + batch_size, n):.2f} s/face)")
        theta, mask = torch.cat(thetas), torch.cat(masks)
    else:
        theta = theta.to(model.mean.dtype)
        mask = None
    v = model.n_vertices
    mirror, _ = mirror_map(model.mean.numpy())
    fallback = model.albedo_mean.double().numpy()
    front = model.front_face.numpy()
    target_lum = float(_luminance(fallback[front]).mean())
    gamma = theta_to_gamma(theta[:, model.layout.slice("gamma")], renderer.ambient)
    report: dict = {"rounds": []}
    for rnd in range(rounds):
        vals, wts = [], []
        obs_colour, obs_normals, obs_kept = [], [], []
        for s in range(0, n, batch_size):
            smp = albedo_samples(renderer, theta[s:s + batch_size], images[s:s + batch_size],
                                 None if mask is None else mask[s:s + batch_size], gamma=gamma[s:s + batch_size])
            vals.append(smp.values.double().numpy())
            wts.append(smp.weights.double().numpy())
            obs_colour.append(smp.colour)
            obs_normals.append(smp.normals)
            obs_kept.append(smp.kept)
        values, weights = np.concatenate(vals), np.concatenate(wts)
        values, weights = _complete_by_symmetry(values, weights, mirror)
        mean = _weighted_mean(values, weights, fallback)
        scale = target_lum / max(float(_luminance(mean[front]).mean()), 1e-6)
        mean, values = mean * scale, values * scale
        coverage = float((weights.sum(0) > 0).mean())
        report["rounds"].append({"round": rnd, "samples_per_face": float((weights > 0).sum(1).mean()),
                                 "vertex_coverage": coverage, "brightness_scale": scale})
        log(f"  round {rnd + 1}/{rounds}: {report['rounds'][-1]['samples_per_face']:.0f} samples per face, "
            f"{100 * coverage:.1f} % of the vertices observed")
        if rnd == rounds - 1:
            break
        # re-estimate each face's light with the current mean albedo, then recompute the samples under it
        alb = torch.from_numpy(mean).to(theta.dtype)
        gamma = torch.cat([estimate_light(c, nn, alb[None].expand(c.shape[0], -1, -1), k.to(c.dtype),
                                          renderer.ambient)
                           for c, nn, k in zip(obs_colour, obs_normals, obs_kept)])
    # unobserved vertices: the fallback, with a token weight so that the PCA sees no variance there
    unseen = weights.sum(0) <= 0
    values[:, unseen] = mean[unseen]
    weights[:, unseen] = 1e-3
    pca = weighted_pca(values.reshape(n, v * 3), np.clip(np.repeat(weights, 3, axis=1), 0, 1), components,
                       iterations=pca_iterations, tol=1e-6)
    g = gamma_to_theta(gamma, 0.0).double().numpy()  # full coefficients (ambient included), θ order
    sh_mean = g.mean(0)
    sh_cov = (np.cov(g, rowvar=False) if n > 1 else np.zeros((27, 27))) + SH_COV_FLOOR * np.eye(27)
    prov = dict(provenance or {})
    prov.update(faces=n, components=components, rounds=rounds, base_model=model.name,
                base_albedo=model.albedo_source, explained_variance=float(pca.explained.sum()),
                pca_iterations=pca.iterations, ambient=renderer.ambient, vertex_coverage=coverage)
    learned = with_learned_albedo(model, pca.mean.reshape(v, 3), pca.basis.reshape(components, v, 3),
                                  sh_mean=sh_mean, sh_cov=sh_cov, provenance=prov)
    report.update(faces=n, seconds=time.perf_counter() - t0, explained=pca.explained.tolist(), std=pca.std.tolist(),
                  gamma=g.tolist())
    return learned, report


def albedo_gallery(model: MorphableModel, path: str | Path, modes: int = 3, size: int = 192) -> Path:
    """A picture of a model's albedo: the mean, then mean ∓ 2σ of each of the first ``modes`` modes, drawn on the
    mean shape, frontal, with a light whose shading is 1 everywhere (the albedo itself). Written as PNG/JPEG."""
    from PIL import Image

    renderer = FaceRenderer(model, camera=default_camera(size))
    lay = model.layout
    k = min(modes, model.n_tex)
    thetas = lay.zeros(1 + 2 * k)
    flat = float(1.0 / sh_basis(torch.tensor([[0.0, 0.0, 1.0]]))[0, 0])  # DC giving unit shading
    g = thetas[:, lay.slice("gamma")].reshape(-1, 3, 9)
    g[:, :, 0] = flat - renderer.ambient
    thetas[:, lay.slice("gamma")] = g.reshape(-1, 27)
    for j in range(k):
        thetas[1 + 2 * j, lay.slice("tex").start + j] = -2.0
        thetas[2 + 2 * j, lay.slice("tex").start + j] = 2.0
    with torch.no_grad():
        out = renderer(thetas, background=torch.ones(len(thetas), 3, size, size))
    tiles = (out.image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    row = np.concatenate(list(tiles), axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path, quality=90)
    return path
