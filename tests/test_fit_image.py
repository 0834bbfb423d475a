"""occrecon.fit image fitting: the E-step mask, landmark trust, visible vertices, the RANSAC light, the whole robust
EM fit on rendered faces with known θ (clean and half covered by an occluder), divergence handling, float64,
determinism and bad input."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from occrecon import assets
from occrecon.api import default_camera
from occrecon.fit import (FIT_PRESETS, ImageFitConfig, fit_image, fit_preset, ransac_light, robust_mask,
                          visible_vertices)
from occrecon.fit.image import landmark_trust, scaled_renderer
from occrecon.fit.light import VertexObservations, plausible_light
from occrecon.losses.robust import pseudo_mask
from occrecon.morphable import load_model
from occrecon.ops.reference import sh_basis
from occrecon.render import FaceRenderer

pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")
S = 96


@pytest.fixture(scope="module")
def scene(ict):
    """Four rendered faces with known θ over a noise background, the same half covered by a textured occluder."""
    r = FaceRenderer(ict, camera=default_camera(S))
    lay = ict.layout
    b = 4
    g = torch.Generator().manual_seed(3)
    th = torch.zeros(b, lay.size)
    th[:, lay.slice("id")] = torch.randn(b, ict.n_id, generator=g) * 0.5
    active = torch.rand(b, ict.n_exp, generator=g) < 0.2
    th[:, lay.slice("exp")] = active * torch.rand(b, ict.n_exp, generator=g) * 0.4
    th[:, lay.slice("tex")] = torch.randn(b, ict.n_tex, generator=g) * 0.3
    th[:, lay.slice("angle")] = torch.tensor([[0.1, 0.3, 0.05], [-0.1, -0.2, 0.0], [0.05, 0.0, -0.1], [0.0, 0.15, 0.1]])
    gam = torch.zeros(b, 3, 9)
    gam[:, :, 1], gam[:, :, 2], gam[:, :, 3] = 0.1, 0.25, -0.15
    gam[:, :, 0] = torch.tensor([0.1, 0.0, -0.1])
    th[:, lay.slice("gamma")] = gam.reshape(b, 27)
    bg = torch.rand(b, 3, S, S, generator=g) * 0.3 + 0.35
    with torch.no_grad():
        out = r(th, bg)
    img = out.image.clamp(0, 1)
    occ_mask = torch.zeros(b, 1, S, S)
    for i in range(b):
        ys, xs = torch.nonzero(out.region[i, 0], as_tuple=True)
        occ_mask[i, 0, ys.min():ys.max() + 1, xs.min():(xs.min() + xs.max()) // 2] = 1  # the image-left half
    cells = torch.rand(b, 3, S // 8, S // 8, generator=g)
    texture = torch.nn.functional.interpolate(cells, size=(S, S), mode="nearest")
    occluded = img * (1 - occ_mask) + texture * occ_mask
    return dict(renderer=r, theta=th, image=img, occluded=occluded, occ_mask=occ_mask, landmarks=out.landmarks,
                region=out.region)


def _shading(theta, normals, layout):
    g = theta[:, layout.slice("gamma")].reshape(-1, 3, 9).transpose(1, 2).clone()
    g[:, 0, :] += 0.8
    return torch.einsum("bvk,bkc->bvc", sh_basis(normals), g)


def _relative(a, b, visible):
    return torch.stack([((a[i] - b[i])[visible[i]].pow(2).mean().sqrt() / b[i][visible[i]].pow(2).mean().sqrt())
                        for i in range(len(a))])


# ------------------------------------------------------------------------------------------ pieces, closed forms
def test_robust_mask_is_eq9_without_the_window_and_spares_thin_structures_with_it():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 40, 40, generator=g) * 0.6
    render = target.clone()
    region = torch.zeros(2, 1, 40, 40)
    region[:, :, 5:35, 5:35] = 1
    render[:, :, 10:30, 28:30] += 0.3  # a thin stripe (2 px) the render explains badly (e² = 0.27 > ξ)
    render[:, :, 8:20, 8:20] += 0.3  # a large block explained just as badly
    plain = robust_mask(target, render.clamp(0, 1), region, xi=0.17, window=1)
    assert torch.equal(plain, pseudo_mask(target, render.clamp(0, 1), region, xi=0.17))
    smooth = robust_mask(target, render.clamp(0, 1), region, xi=0.17, window=7)
    assert plain[:, :, 12:28, 28:30].mean() < 0.5  # eq. 9 alone rejects most of the stripe
    assert smooth[:, :, 12:28, 28:30].mean() > 0.9  # the stripe stays face
    assert smooth[:, :, 10:18, 10:18].mean() < 0.05  # the block's inside goes
    assert torch.equal(smooth * (1 - region), torch.zeros_like(smooth))  # nothing outside Φ


def test_landmark_trust():
    mask = torch.ones(1, 1, 64, 64)
    region = torch.zeros(1, 1, 64, 64)
    region[:, :, 10:54, 10:54] = 1
    mask = mask * region
    mask[:, :, 30:54, 10:54] = 0  # lower half occluded
    lm = torch.full((1, 68, 2), 20.5)
    lm[0, 1] = torch.tensor([32.5, 45.5])  # inside the occluder
    lm[0, 2] = torch.tensor([2.5, 2.5])  # off the face: no rendered pixel near
    lm[0, 3] = float("nan")
    t = landmark_trust(mask, region, lm, 9)
    assert t[0, 0].item() == pytest.approx(1.0) and t[0, 1].item() == pytest.approx(0.0)
    assert t[0, 2].item() == pytest.approx(1.0) and t[0, 3].item() == 0.0


def test_visible_vertices_front_back_and_occlusion(ict):
    r = FaceRenderer(ict, camera=default_camera(S))
    lay = ict.layout
    th = lay.zeros(2)
    th[1, lay.slice("angle")] = torch.tensor([0.0, math.radians(70), 0.0])  # turned far to one side
    obs = visible_vertices(r, th, torch.full((2, 3, S, S), 0.5))
    nose = int(ict.landmarks[30])
    assert obs.visible[0, nose] and obs.visible[0].sum() > 0.5 * ict.n_vertices
    # turned: far fewer vertices are seen, and the seen ones all face the camera
    assert obs.visible[1].sum() < 0.8 * obs.visible[0].sum()
    to_cam = -r(th).vertices[1]
    to_cam = to_cam / to_cam.norm(dim=-1, keepdim=True)
    assert ((obs.normals[1] * to_cam).sum(-1)[obs.visible[1]] >= 0.25 - 1e-6).all()
    torch.testing.assert_close(obs.colour[obs.visible], torch.full_like(obs.colour[obs.visible], 0.5))


def test_ransac_light_recovers_a_light_under_outliers():
    g = torch.Generator().manual_seed(1)
    b, v = 3, 3000
    n = torch.nn.functional.normalize(torch.randn(b, v, 3, generator=g) * torch.tensor([0.5, 0.5, 1.0])
                                      + torch.tensor([0.0, 0.0, 1.2]), dim=-1)
    albedo = torch.tensor([0.7, 0.52, 0.44]).expand(b, v, 3)
    gamma = torch.zeros(b, 9, 3)
    gamma[:, 0] = torch.tensor([0.9, 0.85, 0.8])
    gamma[:, 1], gamma[:, 2], gamma[:, 3] = 0.15, 0.3, -0.1
    colour = albedo * torch.einsum("bvk,bkc->bvc", sh_basis(n), gamma)
    outlier = torch.rand(b, v, generator=g) < 0.4
    corrupted = torch.where(outlier[..., None], torch.rand(b, v, 3, generator=g), colour)
    obs = VertexObservations(torch.ones(b, v, dtype=torch.bool), corrupted, n, albedo, torch.zeros(b, v, 2))
    est = ransac_light(obs, generator=torch.Generator().manual_seed(0))
    shading = lambda gm: torch.einsum("bvk,bkc->bvc", sh_basis(n), gm)  # noqa: E731
    rel = _relative(shading(est.gamma), shading(gamma), ~outlier)
    assert rel.max().item() < 0.02
    assert est.ok.all() and (est.inliers & outlier).float().mean() < 0.05
    # the same call again: the same estimate (deterministic for the generator)
    again = ransac_light(obs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.gamma, est.gamma)
    # a least-squares fit on everything is pulled away by the outliers
    from occrecon.fit.light import _ridge_solve

    design = albedo[..., None] * sh_basis(n)[..., None, :]
    ls = _ridge_solve(design, corrupted, torch.ones(b, v), torch.full((9,), 1e-3), torch.zeros(b, 9, 3))
    assert _relative(shading(ls), shading(gamma), ~outlier).min().item() > 5 * rel.max().item()


def test_plausible_light():
    g = torch.zeros(4, 9, 3)
    g[0, 0] = torch.tensor([0.9, 0.8, 0.7])
    g[1, 0] = torch.tensor([0.2, 1.5, 0.3])  # green tint
    g[2, 0] = torch.tensor([-0.1, 0.8, 0.8])  # negative channel
    g[3, 0] = torch.tensor([1.2, 1.0, 0.8])
    assert plausible_light(g).tolist() == [True, False, False, True]


def test_scaled_renderer(ict):
    r = FaceRenderer(ict, camera=default_camera(224))
    small = scaled_renderer(r, 112)
    assert small.camera.image_size == (112, 112) and small.camera.focal == pytest.approx(r.camera.focal / 2)
    assert scaled_renderer(r, 224) is r
    th = ict.layout.zeros(1)
    with torch.no_grad():
        torch.testing.assert_close(small(th).landmarks * 2, r(th).landmarks, rtol=0, atol=1e-3)
    every = FaceRenderer(ict, camera=default_camera(224), front_face_only=False)
    small_every = scaled_renderer(every, 112)
    assert not small_every.front_face_only and small_every.tri.shape == every.tri.shape != r.tri.shape


# ------------------------------------------------------------------------------------------ the whole fit
def test_fit_recovers_pose_and_light_of_a_clean_render(scene):
    r, th = scene["renderer"], scene["theta"]
    lay = r.layout
    cfg = fit_preset("fast").replace(image_size=None)
    res = fit_image(r, scene["image"], scene["landmarks"], config=cfg)
    ang = (res.theta[:, lay.slice("angle")] - th[:, lay.slice("angle")]).abs().max(1).values * 180 / math.pi
    assert ang.max().item() < 1.0
    assert (res.landmarks - scene["landmarks"]).norm(dim=-1).mean(1).max().item() < 0.5
    obs = visible_vertices(r, th, scene["image"])
    assert _relative(_shading(res.theta, obs.normals, lay), _shading(th, obs.normals, lay), obs.visible).max() < 0.1
    kept = (res.mask.sum((1, 2, 3)) / res.region.sum((1, 2, 3)))
    assert kept.min().item() > 0.95  # nothing occluded: (nearly) all of Φ is face
    assert not res.diverged.any() and res.loss.shape == (4, cfg.rounds * cfg.steps) and torch.isfinite(res.loss).all()
    assert res.theta.dtype == torch.float32 and res.image.shape == (4, 3, S, S)


def test_half_covered_face_keeps_its_light_and_albedo(scene, ict):
    """The occluder covers the image-left half of each face with a random colour texture: the light must not
    follow it (tolerance: shading within 25 % RMS of the truth on the visible vertices for each face, 15 % on
    average, and at most 60 % of a plain least-squares estimate's error on average), the mean albedo must stay
    within 0.06, and the mask must find the occluder (≥ 50 % of its Φ pixels rejected per face, 60 % on average:
    some random cells are close to skin colour, which no colour test can tell apart) while keeping ≥ 90 % of the
    visible face."""
    r, th, lay = scene["renderer"], scene["theta"], ict.layout
    cfg = fit_preset("fast").replace(image_size=None)
    res = fit_image(r, scene["occluded"], scene["landmarks"], config=cfg)
    obs = visible_vertices(r, th, scene["image"])
    rel = _relative(_shading(res.theta, obs.normals, lay), _shading(th, obs.normals, lay), obs.visible)
    assert rel.max().item() < 0.25 and rel.mean().item() < 0.15

    def mean_albedo(theta):
        p = lay.split(theta)
        return ict(p["id"], p["exp"], p["tex"])[1].mean(1)

    assert (mean_albedo(res.theta) - mean_albedo(th)).abs().max().item() < 0.06
    occ, phi = scene["occ_mask"], res.region
    rejected = ((phi - res.mask) * occ).sum((1, 2, 3)) / (occ * phi).sum((1, 2, 3))
    kept = (res.mask * (1 - occ)).sum((1, 2, 3)) / (phi * (1 - occ)).sum((1, 2, 3))
    assert rejected.min().item() > 0.5 and rejected.mean().item() > 0.6 and kept.min().item() > 0.9
    # the naive alternative: least squares on every visible vertex of the occluded photo
    from occrecon.fit.light import _ridge_solve

    o2 = visible_vertices(r, th, scene["occluded"])
    design = o2.albedo[..., None] * sh_basis(o2.normals)[..., None, :]
    prior = torch.zeros(4, 9, 3)
    prior[:, 0] = 0.8
    ls = _ridge_solve(design, o2.colour, o2.visible.float(), torch.full((9,), 1e-3), prior)
    ls_rel = _relative(torch.einsum("bvk,bkc->bvc", sh_basis(obs.normals), ls),
                       _shading(th, obs.normals, lay), obs.visible)
    assert rel.mean().item() < 0.6 * ls_rel.mean().item()


def test_deterministic_and_float64(scene, ict):
    r = scene["renderer"]
    cfg = fit_preset("fast").replace(image_size=None)
    a = fit_image(r, scene["occluded"][:2], scene["landmarks"][:2], config=cfg)
    b = fit_image(r, scene["occluded"][:2], scene["landmarks"][:2], config=cfg)
    assert torch.equal(a.theta, b.theta) and torch.equal(a.mask, b.mask)
    r64 = FaceRenderer(copy.deepcopy(ict).double(), camera=default_camera(S))
    c = fit_image(r64, scene["image"][:2].double(), scene["landmarks"][:2].double(), config=cfg)
    d = fit_image(r, scene["image"][:2], scene["landmarks"][:2], config=cfg)
    assert c.theta.dtype == torch.float64 and torch.isfinite(c.theta).all()
    assert (c.landmarks.float() - d.landmarks).norm(dim=-1).max().item() < 0.5


def test_resizes_to_the_configured_image_size(scene):
    r = scene["renderer"]
    cfg = fit_preset("fast").replace(image_size=48, rounds=1, steps=2)
    res = fit_image(r, scene["image"][:1], scene["landmarks"][:1], config=cfg)
    assert res.image.shape[-1] == 48 and res.scale == pytest.approx(0.5)
    assert (res.landmarks / res.scale - scene["landmarks"][:1]).norm(dim=-1).mean().item() < 1.5


def test_without_landmarks_and_with_a_unet(scene, constant_logit_unet):
    r = scene["renderer"]
    cfg = fit_preset("fast").replace(image_size=None, rounds=1, steps=3)
    res = fit_image(r, scene["image"][:2], None, config=cfg)  # photometric only, from the mean face
    assert res.landmark_fit is None and torch.isfinite(res.theta).all()
    res = fit_image(r, scene["image"][:2], scene["landmarks"][:2], config=cfg, unet=constant_logit_unet(0.0))
    torch.testing.assert_close(res.mask, res.region * 0.5)  # the E-step is the UNet's: Φ · σ(0)


class _BatchNormSegmenter(torch.nn.Module):
    """(target, render) -> logits through a BatchNorm: batch statistics in train mode, running ones in eval."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 1, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(1)

    def forward(self, target, render):
        return self.norm(self.conv(torch.cat([target, render], 1)))


def test_a_unet_in_training_mode_is_run_as_in_eval_mode_and_left_unchanged(scene):
    torch.manual_seed(0)
    unet = _BatchNormSegmenter().train()
    unet.norm.running_mean.fill_(0.3)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    cfg = fit_preset("fast").replace(image_size=None, rounds=1, steps=2)
    res = fit_image(scene["renderer"], scene["image"][:2], scene["landmarks"][:2], config=cfg, unet=unet)
    assert unet.training and unet.norm.training
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())  # no running-statistics update
    frozen = copy.deepcopy(unet).eval()
    again = fit_image(scene["renderer"], scene["image"][:2], scene["landmarks"][:2], config=cfg, unet=frozen)
    torch.testing.assert_close(res.mask, again.mask)


def test_a_diverging_fit_is_flagged_and_reverted(scene):
    r = scene["renderer"]
    cfg = fit_preset("fast").replace(image_size=None, rounds=1, steps=4, lr={"trans": 1e4, "angle": 10.0})
    res = fit_image(r, scene["image"][:2], scene["landmarks"][:2], config=cfg)
    assert res.diverged.all() and not res.converged.any()
    assert torch.isfinite(res.theta).all() and torch.isfinite(res.image).all() and torch.isfinite(res.mask).all()
    # reverted to the last good θ: a step exploded, so the face is not far away from where it started
    assert (res.theta - res.initial_theta).abs().max().item() < 1e3
    ok = fit_image(r, scene["image"][:2], scene["landmarks"][:2],
                   config=fit_preset("fast").replace(image_size=None, rounds=1, steps=4))
    assert not ok.diverged.any()


def test_one_face_without_landmarks_does_not_spoil_the_batch(scene, ict):
    # float64: in float32 the batch's different matmul blocking is float noise that Adam's sign-like first steps
    # amplify (to ~0.5 px on some CPUs); in float64 the batched fit must equal the fit alone
    r = FaceRenderer(copy.deepcopy(ict).double(), camera=default_camera(S))
    image = scene["image"][:2].double()
    lm = scene["landmarks"][:2].double().clone()
    lm[1] = float("nan")
    cfg = fit_preset("fast").replace(image_size=None)
    res = fit_image(r, image, lm, config=cfg)
    assert res.landmark_fit.failed.tolist() == [False, True]
    assert torch.isfinite(res.theta).all() and not res.diverged.any()
    alone = fit_image(r, image[:1], lm[:1], config=cfg)
    assert (res.landmarks[0] - alone.landmarks[0]).norm(dim=-1).max().item() < 1e-6
    assert (res.image[0] - alone.image[0]).abs().max().item() < 1e-8


def test_presets_and_config_validation():
    assert set(FIT_PRESETS) == {"fast", "standard", "quality"}
    fast, standard, quality = fit_preset("fast"), fit_preset("standard"), fit_preset("quality")
    assert quality.rounds * quality.steps > standard.rounds * standard.steps > fast.rounds * fast.steps
    assert quality.landmarks.iterations > standard.landmarks.iterations > fast.landmarks.iterations
    # the schedule the shipped albedo and the training teacher were built with (their provenance says so)
    assert (standard.landmarks.iterations, standard.rounds, standard.steps) == (10, 2, 20)
    assert fit_preset("fast") is not fast  # a fresh object per call: callers may mutate theirs
    assert fit_preset(fast) is fast
    with pytest.raises(ValueError, match="fit"):
        fit_preset("slow")
    for bad in (dict(rounds=-1), dict(mask_window=4), dict(xi=0.0), dict(photometric="l1"),
                dict(lr={"nose": 1.0}), dict(ransac_sample=0), dict(image_size=8)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ImageFitConfig(**bad).validate()


def test_bad_input_names_the_argument(scene):
    r = scene["renderer"]
    img, lm = scene["image"][:1], scene["landmarks"][:1]
    with pytest.raises(ValueError, match="images: contains NaN"):
        fit_image(r, torch.full_like(img, float("nan")), lm)
    with pytest.raises(ValueError, match="images: size"):
        fit_image(r, img[..., :64, :64], lm)
    with pytest.raises(ValueError, match=r"images: values must lie in \[0, 1\]"):
        fit_image(r, img * 3, lm)
    with pytest.raises(ValueError, match="images: empty batch"):
        fit_image(r, img[:0], lm[:0])
    with pytest.raises(ValueError, match="landmarks"):
        fit_image(r, img, lm[:, :10])
    with pytest.raises(TypeError, match="renderer"):
        fit_image("renderer", img, lm)
    with pytest.raises(ValueError, match="init"):
        fit_image(r, img, lm, init=torch.zeros(1, 5))
