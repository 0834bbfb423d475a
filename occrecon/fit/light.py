"""Per-vertex observations and an occlusion-robust estimate of the spherical-harmonics light.

:func:`visible_vertices` says which vertices of a posed face the camera sees (front-facing, not behind another
part of the face, inside the image and the drawn region Φ) and samples the photo's colour there.
:func:`ransac_light` then estimates the 27 SH coefficients from those colours as Egger et al. do in their
occlusion-aware fitting: many hypotheses, each a ridge least-squares fit on a small random subset of the visible
vertices, scored by how many vertices they explain within a threshold; the best is refitted on its inliers. An
occluder is not explained by a smooth, near-white light on a skin-coloured albedo, so it neither wins the vote nor
enters the refit (hypotheses with an implausibly coloured light — the way a uniformly coloured occluder would be
"explained" — are not counted). Batched over faces and hypotheses; deterministic for a generator, and a face's
estimate does not depend on the other faces of the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..ops.reference import sh_basis
from ..render.face import FaceRenderer
from ..render.normals import vertex_normals

__all__ = ["VertexObservations", "visible_vertices", "ransac_light", "plausible_light", "LightEstimate",
           "MIN_VISIBLE", "theta_to_gamma", "gamma_to_theta"]

#: Fewer visible vertices than this: no light estimate (the face keeps its light and is flagged).
MIN_VISIBLE = 30


def theta_to_gamma(theta_gamma: torch.Tensor, ambient: float) -> torch.Tensor:
    """θ's flat ``(B, 27)`` [R9 | G9 | B9] light → the renderer's full ``(B, 9, 3)`` coefficients (ambient added)."""
    g = theta_gamma.reshape(-1, 3, 9).clone()
    g[:, :, 0] += ambient
    return g.transpose(1, 2)


def gamma_to_theta(gamma: torch.Tensor, ambient: float) -> torch.Tensor:
    """The inverse of :func:`theta_to_gamma`."""
    g = gamma.transpose(1, 2).clone()
    g[:, :, 0] -= ambient
    return g.reshape(-1, 27)


@dataclass
class VertexObservations:
    """Per-vertex data of B posed faces.

    Attributes:
        visible: ``(B, V)`` bool, the camera sees the vertex (see :func:`visible_vertices`).
        colour: ``(B, V, 3)`` the photo's colour at the vertex's projection (bilinear; 0 where not visible).
        normals: ``(B, V, 3)`` unit camera-space normals.
        albedo: ``(B, V, 3)`` the model's albedo at θ.
        pixels: ``(B, V, 2)`` projections (pixels, x right, y down).
        area: ``(B, V)`` the image area a visible vertex stands for: a third of its triangles' projected areas
            (pixels²; 0 where not visible). Meshes are far denser around the eyes and the mouth than on the
            cheeks: statistics over vertices weighted by this area are statistics over the face's image.
        cosine: ``(B, V)`` cosine between the normal and the direction to the camera (all vertices).
    """

    visible: torch.Tensor
    colour: torch.Tensor
    normals: torch.Tensor
    albedo: torch.Tensor
    pixels: torch.Tensor
    area: torch.Tensor | None = None
    cosine: torch.Tensor | None = None


def visible_vertices(renderer: FaceRenderer, theta: torch.Tensor, images: torch.Tensor, *,
                     min_cosine: float = 0.25, depth_tolerance: float | None = None) -> VertexObservations:
    """Which vertices the camera sees, and the photo's colour there (no gradients).

    A vertex is visible when it belongs to a drawn triangle (the renderer's ``front_face`` triangles), its normal
    makes an angle of at most ``acos(min_cosine)`` with the direction to the camera, it projects inside the
    image, and its camera distance matches the rendered depth at its pixel within ``depth_tolerance`` (default
    0.5 % of the camera distance: 5 mm at 1 m).

    Args:
        renderer: the :class:`~occrecon.render.FaceRenderer` of the images.
        theta: ``(B, P)`` θ.
        images: ``(B, 3, H, W)`` photos in [0, 1], H × W the renderer's image size.
    """
    with torch.no_grad():
        out = renderer(theta)
        lay = renderer.layout
        parts = lay.split(theta)
        _, albedo = renderer.model(parts["id"], parts["exp"], parts["tex"])
        v_cam = out.vertices
        normals = vertex_normals(v_cam, renderer.tri)
        h, w = renderer.camera.image_size
        pix = renderer.camera.project(v_cam)
        dist = -v_cam[..., 2]
        to_cam = -v_cam / v_cam.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cosine = (normals * to_cam).sum(-1)
        facing = cosine >= min_cosine
        inside = (pix[..., 0] >= 0) & (pix[..., 0] < w) & (pix[..., 1] >= 0) & (pix[..., 1] < h) & (dist > 0)
        drawn = torch.zeros(v_cam.shape[1], dtype=torch.bool, device=v_cam.device)
        drawn[renderer.tri.reshape(-1).long()] = True
        grid = torch.stack([pix[..., 0] / w * 2 - 1, pix[..., 1] / h * 2 - 1], -1)[:, :, None]  # (B, V, 1, 2)
        depth = torch.nn.functional.grid_sample(out.depth, grid, mode="nearest", align_corners=False)[:, 0, :, 0]
        region = torch.nn.functional.grid_sample(out.region, grid, mode="nearest", align_corners=False)[:, 0, :, 0]
        tol = depth_tolerance if depth_tolerance is not None else 0.005 * renderer.distance
        unoccluded = (region > 0.5) & ((depth - dist).abs() <= tol)
        visible = facing & inside & unoccluded & drawn[None]
        colour = torch.nn.functional.grid_sample(images.to(v_cam.dtype), grid, mode="bilinear",
                                                 padding_mode="border", align_corners=False)[..., 0].transpose(1, 2)
        colour = colour * visible[..., None].to(colour.dtype)
        t = renderer.tri.long()
        p0, p1, p2 = pix[:, t[:, 0]], pix[:, t[:, 1]], pix[:, t[:, 2]]
        e1, e2 = p1 - p0, p2 - p0
        tri_area = 0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]).abs()  # (B, F)
        area = torch.zeros_like(dist)
        for k in range(3):
            area = area.index_add(1, t[:, k], tri_area / 3)
        area = area * visible.to(area.dtype)
    return VertexObservations(visible, colour, normals, albedo, pix, area, cosine)


@dataclass
class LightEstimate:
    """``gamma (B, 9, 3)`` SH coefficients (band function, RGB) *including* the renderer's ambient offset,
    ``inliers (B, V)`` bool, ``inlier_fraction (B,)`` of the visible vertices, ``ok (B,)`` bool (False: too
    few visible vertices; ``gamma`` is then the fallback)."""

    gamma: torch.Tensor
    inliers: torch.Tensor
    inlier_fraction: torch.Tensor
    ok: torch.Tensor


def _ridge_solve(a: torch.Tensor, y: torch.Tensor, wts: torch.Tensor, ridge: torch.Tensor,
                 prior: torch.Tensor) -> torch.Tensor:
    """Per channel ``argmin_g Σ w (a_c · g − y_c)² + Σ_k ridge_k (g_k − prior_k)²``.

    a ``(..., N, 3, 9)`` design, y ``(..., N, 3)``, wts ``(..., N)``, ridge ``(9,)``, prior ``(..., 9, 3)``;
    returns ``(..., 9, 3)``."""
    aw = a * wts[..., None, None]
    ata = torch.einsum("...nck,...ncl->...ckl", aw, a)  # (..., 3, 9, 9)
    aty = torch.einsum("...nck,...nc->...ck", aw, y)  # (..., 3, 9)
    pr = prior.transpose(-1, -2)  # (..., 3, 9)
    ata = ata + torch.diag_embed(ridge.expand_as(aty))
    sol = torch.linalg.solve(ata, (aty + ridge * pr)[..., None])[..., 0]  # (..., 3, 9)
    return sol.transpose(-1, -2)


def plausible_light(gamma: torch.Tensor, max_tint: float = 1.6) -> torch.Tensor:
    """``(...)`` bool for SH lights ``(..., 9, 3)`` (with the ambient): every channel's DC coefficient is positive
    and within a factor ``max_tint`` of the channels' mean (a near-white light: the albedo carries the colour)."""
    dc = gamma[..., 0, :]
    mean = dc.mean(-1, keepdim=True)
    ratio = dc / mean.clamp_min(1e-12)
    return (dc > 0).all(-1) & (ratio <= max_tint).all(-1) & (ratio >= 1 / max_tint).all(-1)


def ransac_light(obs: VertexObservations, *, hypotheses: int = 256, sample: int = 4, threshold: float = 0.12,
                 ridge: float = 0.3, ambient: float = 0.8, refits: int = 2, max_tint: float = 1.6,
                 max_brightness: float = 1.5, generator: torch.Generator | None = None,
                 max_score_vertices: int = 1024, prior_gamma: torch.Tensor | None = None) -> LightEstimate:
    """RANSAC estimate of the SH light from :class:`VertexObservations` (see the module docstring).

    Each hypothesis fits ``sample`` random visible vertices. A sample smaller than the 9 coefficients per channel is
    well posed because of the ridge towards an ambient-only light on the 8 directional coefficients; small samples
    are what make RANSAC work when half the face is covered (the chance that a sample of k vertices is all skin is
    (1 − outlier share)^k). The best hypothesis — the most vertices explained within ``threshold`` — is refitted on
    its inliers (nearly no ridge), ``refits`` times (re-scoring the inliers each time: "locally optimised" RANSAC).

    Args:
        obs: visible vertices, their colours, normals and the model's albedo.
        hypotheses: hypotheses per face; sample: vertices per hypothesis (≥ 1).
        threshold: inlier threshold on the RGB residual norm ``‖colour − albedo ⊙ shading‖`` ([0, 1] units).
        ridge: the hypotheses' ridge weight on the 8 directional coefficients (the DC terms are free).
        ambient: the ambient-only light the ridge pulls towards (the renderer's DC offset).
        prior_gamma: optional ``(9, 3)`` full light the ridge pulls towards instead (a learned illumination
            prior's mean, e.g. ``MorphableModel.sh_mean``); it is also the fallback of faces with too few vertices.
        refits: inlier refits of the best hypothesis.
        max_tint: hypotheses whose light is implausibly coloured are not counted (:func:`plausible_light`): a
            uniformly coloured occluder is explained perfectly by a tinted ambient light on a skin-coloured albedo,
            and would otherwise win the vote when it covers half the face.
        max_brightness: hypotheses whose median predicted luminance on the visible vertices differs from the
            median observed luminance by more than this factor are not counted (a dark light explains dark
            sunglasses or a dark occluder within an absolute threshold; the median is the skin's as long as an
            occluder covers less than half of the visible face).
        generator: random generator of the vertex samples (the estimate is deterministic for it).
        max_score_vertices: hypotheses are scored on at most this many visible vertices per face (a fixed random
            subset); the refits use all visible vertices.
    """
    vis, colour, normals, albedo = obs.visible, obs.colour, obs.normals, obs.albedo
    b, v = vis.shape
    if sample < 1:
        raise ValueError(f"sample: expected >= 1, got {sample}")
    dt, dev = colour.dtype, colour.device
    y9 = sh_basis(normals)  # (B, V, 9)
    design = albedo[..., :, None] * y9[..., None, :]  # (B, V, 3, 9): colour_c = design_c · gamma_c
    prior = torch.zeros(b, 9, 3, dtype=dt, device=dev)
    prior[:, 0, :] = ambient
    if prior_gamma is not None:
        if tuple(prior_gamma.shape) != (9, 3):
            raise ValueError(f"prior_gamma: expected (9, 3), got {tuple(prior_gamma.shape)}")
        prior = prior_gamma.to(dt).to(dev)[None].expand(b, 9, 3).clone()
    hyp_ridge = torch.full((9,), ridge, dtype=dt, device=dev)
    hyp_ridge[0] = 1e-6
    fit_ridge = torch.full((9,), 1e-3, dtype=dt, device=dev)
    count = vis.sum(1)
    ok = count >= max(MIN_VISIBLE, sample)
    area = obs.area if obs.area is not None else vis.to(dt)
    area = torch.where(vis, area.to(dt).clamp_min(1e-12), torch.zeros_like(area, dtype=dt))
    weights = area + (~ok)[:, None].to(dt)  # faces without enough vertices: any vertex (result unused)
    with torch.no_grad():
        # weighted sampling without replacement by random keys log(u) / w (Efraimidis–Spirakis), the keys shared by
        # every face: a face's samples depend on the seed and its own vertices only, never on the rest of the batch
        logu = torch.rand(hypotheses, v, generator=generator, dtype=dt, device=dev).clamp_min(1e-30).log()
        wk = weights[:, None]
        keys = torch.where(wk > 0, logu[None] / wk.clamp_min(1e-30), torch.full_like(logu[None], -math.inf))
        idx = keys.topk(sample, -1).indices
        bi = torch.arange(b, device=dev)[:, None, None]
        g_h = _ridge_solve(design[bi, idx], colour[bi, idx], torch.ones(b, hypotheses, sample, dtype=dt, device=dev),
                           hyp_ridge, prior[:, None])  # (B, H, 9, 3)
        n_score = min(max_score_vertices, v)
        slogu = torch.rand(v, generator=generator, dtype=dt, device=dev).clamp_min(1e-30).log()
        skeys = torch.where(weights > 0, slogu[None] / weights.clamp_min(1e-30), torch.full_like(weights, -math.inf))
        sidx = skeys.topk(n_score, -1).indices  # (B, n_score): an area-weighted sample of the visible face
        bs = torch.arange(b, device=dev)[:, None]
        d_s, c_s, v_s = design[bs, sidx], colour[bs, sidx], vis[bs, sidx]  # (B, n, 3, 9), (B, n, 3), (B, n)
        # squared residuals of every hypothesis on the scoring vertices: one (n × 9)·(9 × H) product per channel
        err2 = torch.zeros(b, n_score, hypotheses, dtype=dt, device=dev)
        lum = torch.zeros(b, n_score, hypotheses, dtype=dt, device=dev)
        for c in range(3):
            pred = torch.bmm(d_s[:, :, c, :], g_h[:, :, :, c].transpose(1, 2))  # (B, n, H)
            err2 += (pred - c_s[:, :, c:c + 1]) ** 2
            lum += pred / 3
        score = ((err2 < threshold ** 2) & v_s[:, :, None]).sum(1)  # (B, H)
        # the face's brightness, robustly: the median observed luminance of the visible vertices (an occluder on
        # less than half of them does not move it); a hypothesis must predict a median within max_brightness of it
        # (a dark light "explains" dark sunglasses within an absolute threshold, and skin is never dark)
        seen = torch.where(v_s, c_s.mean(-1), torch.full_like(c_s[..., 0], float("nan")))
        observed = seen.nanmedian(1).values.clamp_min(1e-3)  # (B,)
        predicted = torch.where(v_s[:, :, None], lum, torch.full_like(lum, float("nan"))).nanmedian(1).values
        ratio = predicted / observed[:, None]
        bright_ok = (ratio <= max_brightness) & (ratio >= 1 / max_brightness)
        score = torch.where(plausible_light(g_h, max_tint) & bright_ok, score, torch.full_like(score, -1))
        gamma = g_h[torch.arange(b, device=dev), score.argmax(1)]
        inliers = vis
        for _ in range(max(refits, 0) + 1):
            resid2 = ((torch.einsum("bvck,bkc->bvc", design, gamma) - colour) ** 2).sum(-1)
            inliers = vis & (resid2 < threshold ** 2)
            if _ == refits:
                break
            enough = inliers.sum(1) >= 9
            w_in = area * inliers.to(dt)
            w_in = w_in / w_in.sum(1, keepdim=True).clamp_min(1e-12) * inliers.sum(1, keepdim=True).to(dt)
            refit = _ridge_solve(design, colour, w_in, fit_ridge, prior)
            gamma = torch.where((enough & plausible_light(refit, max_tint))[:, None, None], refit, gamma)
        gamma = torch.where(ok[:, None, None], gamma, prior)
        frac = (area * inliers.to(dt)).sum(1) / area.sum(1).clamp_min(1e-12)  # share of the visible image area
    return LightEstimate(gamma, inliers & ok[:, None], torch.where(ok, frac, torch.zeros_like(frac)), ok)
