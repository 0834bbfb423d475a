"""Learned appearance (issue 13): the missing-data PCA, the mirror map, the albedo build on renders of a known
albedo model and light, the model format with the illumination prior and provenance, and bad input."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from occrecon.fit import fit_image, fit_preset
from occrecon.fit.appearance import (albedo_gallery, albedo_model_from_images, albedo_samples, build_albedo_model,
                                     gamma_to_theta, theta_to_gamma)
from occrecon.morphable import load_model, mirror_map, weighted_pca, with_learned_albedo
from occrecon.ops.reference import sh_basis
from occrecon.render import FaceRenderer
from occrecon.render.camera import default_camera


# ------------------------------------------------------------------------------------------ weighted PCA
def test_pca_of_complete_data_is_numpy_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12)) @ rng.normal(size=(12, 90)) + rng.normal(size=90)
    p = weighted_pca(x, None, 6)
    u, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    np.testing.assert_allclose(p.mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(np.abs(p.directions), np.abs(vt[:6]), atol=1e-10)
    np.testing.assert_allclose(p.std, s[:6] / np.sqrt(39), rtol=1e-12)
    np.testing.assert_allclose(p.explained, s[:6] ** 2 / (s ** 2).sum(), rtol=1e-12)
    assert p.iterations == 1
    # the largest entry of each direction is positive; the basis is the directions times the std
    d = p.directions
    assert (d[np.arange(6), np.abs(d).argmax(1)] > 0).all()
    np.testing.assert_allclose(p.basis, d * p.std[:, None])


def test_pca_recovers_a_low_rank_model_from_data_with_missing_entries():
    """Rank-3 data plus a little noise, 35 % of the entries missing: the mean and the 3-D subspace come back."""
    rng = np.random.default_rng(1)
    n, d, k = 120, 200, 3
    true_basis = np.linalg.qr(rng.normal(size=(d, k)))[0].T  # orthonormal rows
    true_mean = rng.normal(size=d)
    coeff = rng.normal(size=(n, k)) * np.array([5.0, 3.0, 2.0])
    x = true_mean + coeff @ true_basis + 0.01 * rng.normal(size=(n, d))
    w = (rng.random((n, d)) > 0.35).astype(float)
    p = weighted_pca(np.where(w > 0, x, np.nan), w, k, iterations=500, tol=1e-9)
    assert np.abs(p.mean - (true_mean + coeff.mean(0) @ true_basis)).max() < 0.02
    # principal angles between the subspaces: all cosines near 1
    cos = np.linalg.svd(p.directions @ true_basis.T, compute_uv=False)
    assert cos.min() > 0.999
    np.testing.assert_allclose(p.std, coeff.std(0, ddof=1), rtol=0.05)
    # a naive estimate (missing entries as the column mean, no EM) is clearly worse in the spectrum
    naive = weighted_pca(np.where(w > 0, x, (w * np.nan_to_num(x)).sum(0) / w.sum(0)), None, k)
    assert np.abs(naive.std - coeff.std(0, ddof=1)).max() > 5 * np.abs(p.std - coeff.std(0, ddof=1)).max()


@pytest.mark.parametrize("bad,match", [
    (dict(k=0), "k: need"), (dict(k=40), "k: need"), (dict(weights=np.full((5, 8), 2.0)), "weights"),
    (dict(weights=np.ones((5, 7))), "weights: expected shape"), (dict(data=np.zeros(8)), "data: expected"),
    (dict(weights=np.concatenate([np.zeros((5, 1)), np.ones((5, 7))], 1)), "observed by no sample"),
    (dict(data=np.full((5, 8), np.nan)), "NaN"),
])
def test_pca_bad_input(bad, match):
    args = dict(data=np.random.default_rng(0).normal(size=(5, 8)), weights=None, k=2)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        weighted_pca(args["data"], args["weights"], args["k"])


def test_mirror_map_of_a_symmetric_point_set():
    rng = np.random.default_rng(2)
    half = rng.normal(size=(50, 3)) + [2.0, 0, 0]
    pts = np.concatenate([half, half * [-1, 1, 1], [[0.0, 1.0, 2.0]]])
    idx, dist = mirror_map(pts)
    assert (idx[:50] == np.arange(50, 100)).all() and (idx[50:100] == np.arange(50)).all() and idx[100] == 100
    assert dist.max() < 1e-12


def test_the_ict_mesh_is_mirror_symmetric(ict):
    idx, dist = mirror_map(ict.mean.numpy())
    assert (idx[idx] == np.arange(ict.n_vertices)).all()  # an involution
    assert np.median(dist) < 1e-4 and dist.max() < 0.01  # cm


# ------------------------------------------------------------------------------------------ the build
S = 96


def _truth(ict, n=16, k_true=2, seed=0):
    """A "true" albedo model (the Laplacian prior's mean and two of its spatially varying modes, amplified) and
    renders of n faces drawn from it under known, varied lights and poses. (A constant colour mode would be no
    test: a per-face tint of the albedo is the same photo as a tint of the light.)"""
    g = torch.Generator().manual_seed(seed)
    true = copy.deepcopy(ict)
    modes = true.albedo_basis[[24, 40][:k_true]].clone() * 4.0
    lay = true.layout
    theta = lay.zeros(n)
    coeff = torch.randn(n, k_true, generator=g)
    theta[:, lay.slice("tex")][:, :k_true] = coeff
    mean = true.albedo_mean + 3.0 * true.albedo_basis[27]  # a mean that differs from the prior's, spatially
    albedo = mean[None] + torch.einsum("nk,kvc->nvc", coeff, modes)
    theta[:, lay.slice("angle")] = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([0.3, 0.6, 0.1])
    gam = torch.zeros(n, 3, 9)
    gam[:, :, 0] = 0.1 + 0.1 * torch.rand(n, 1, generator=g)
    gam[:, :, 1:4] = (torch.rand(n, 1, 3, generator=g) - 0.5) * 0.4
    theta[:, lay.slice("gamma")] = gam.reshape(n, 27)
    renderer = FaceRenderer(true, camera=default_camera(S))
    # render with the per-face true albedo: a model whose basis holds the k_true modes
    true_model = with_learned_albedo(true, mean.numpy(), modes.numpy(), sh_mean=None, sh_cov=None, provenance={})
    r_true = FaceRenderer(true_model, camera=default_camera(S))
    th_true = true_model.layout.zeros(n)
    for name in ("angle", "gamma", "trans", "id", "exp"):
        th_true[:, true_model.layout.slice(name)] = theta[:, lay.slice(name)]
    th_true[:, true_model.layout.slice("tex")] = coeff
    with torch.no_grad():
        out = r_true(th_true, background=torch.full((n, 3, S, S), 0.5))
    return dict(images=out.image.clamp(0, 1), landmarks=out.landmarks, theta=theta, albedo=albedo, modes=modes,
                gamma=theta_to_gamma(theta[:, lay.slice("gamma")], renderer.ambient), renderer=renderer)


def _subspace_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qa, qb = np.linalg.qr(a.T)[0], np.linalg.qr(b.T)[0]
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def test_build_from_known_theta_recovers_the_true_albedo_model_and_light(ict):
    """Tolerances: with the true light (one round) the mean is within 0.01 (median) / 0.05 (90th percentile) of
    the truth on the vertices half the faces show, and the two modes span the true ones (principal-angle cosines
    > 0.9: colour sampling at 96 px blurs them a little). Re-estimating the lights with the mean albedo (the
    method's rounds) lets each face's light absorb part of its albedo variation: cosines > 0.75, and the
    illumination prior's mean (at the build's brightness scale) shades the normals the faces show within 3 % RMS
    of the true lights' mean shading."""
    t = _truth(ict)
    learned, report = albedo_model_from_images(ict, t["images"], None, components=2, rounds=1, theta=t["theta"],
                                               log=lambda *a: None)
    # albedo and light share a scale: the build keeps the mean's front-face brightness at the prior's (module
    # docstring), so the truth is compared at that brightness
    f = ict.front_face.numpy()
    lum = np.array([0.299, 0.587, 0.114])
    true_mean = t["albedo"].mean(0).numpy()
    true_mean = true_mean * (ict.albedo_mean.numpy()[f] @ lum).mean() / (true_mean[f] @ lum).mean()
    # on the vertices that at least half of the faces show (the others are filled by the prior and the modes)
    seen = albedo_samples(t["renderer"], t["theta"], t["images"]).kept.sum(0).numpy() >= 8
    err = np.abs(learned.albedo_mean.numpy() - true_mean)[f & seen]
    assert (f & seen).sum() > 3000
    assert np.median(err) < 0.01 and np.percentile(err, 90) < 0.05
    # the two learned modes span the true modes (on the front face)
    truth = t["modes"].numpy()[:, f & seen].reshape(2, -1)
    assert _subspace_cosines(learned.albedo_basis.numpy()[:, f & seen].reshape(2, -1), truth).min() > 0.9
    learned, report = albedo_model_from_images(ict, t["images"], None, components=2, rounds=2, theta=t["theta"],
                                               log=lambda *a: None)
    assert _subspace_cosines(learned.albedo_basis.numpy()[:, f & seen].reshape(2, -1), truth).min() > 0.75
    # the illumination prior: the mean of the true lights (ambient included), within a small tolerance
    # compared as shading on the normals the faces show (on a frontal face the DC and the frontal band-1
    # coefficient are nearly collinear, so coefficients alone are not identifiable; shading is linear in them, so
    # the prior mean's shading is the mean shading); the albedo carries the brightness scale the build fixed
    seen_normals = albedo_samples(t["renderer"], t["theta"], t["images"])
    n = seen_normals.normals[seen_normals.kept]
    basis = sh_basis(n).double()
    true_shading = torch.einsum("nk,bkc->bnc", basis, t["gamma"].double()).mean(0)
    scale = float(np.prod([r["brightness_scale"] for r in report["rounds"][:-1]]))
    mean_gamma = torch.from_numpy(learned.sh_mean.numpy()).double().reshape(3, 9).T * scale
    got = basis @ mean_gamma
    assert float(((got - true_shading) ** 2).mean().sqrt() / true_shading.pow(2).mean().sqrt()) < 0.03
    assert learned.sh_cov.shape == (27, 27) and learned.albedo_source == "learned"
    assert learned.provenance["faces"] == 16 and learned.provenance["components"] == 2
    assert report["rounds"][-1]["vertex_coverage"] > 0.5


def test_build_with_the_fit_on_renders(ict):
    """The real path: the fitting engine (from the Laplacian prior) gives θ and the mask; the learned mean is
    closer to the truth than the prior's mean (RMS over the vertices the faces show, at the build's brightness)."""
    t = _truth(ict, n=12, seed=1)
    learned, report = albedo_model_from_images(ict, t["images"], t["landmarks"], components=2, rounds=2,
                                               fit_size=None, log=lambda *a: None)
    f = ict.front_face.numpy() & (albedo_samples(t["renderer"], t["theta"], t["images"]).kept.sum(0).numpy() >= 6)
    lum = np.array([0.299, 0.587, 0.114])
    true_mean = t["albedo"].mean(0).numpy()[f]
    true_mean = true_mean * (ict.albedo_mean.numpy()[f] @ lum).mean() / (true_mean @ lum).mean()  # build's scale
    e_learned = np.sqrt(((learned.albedo_mean.numpy()[f] - true_mean) ** 2).mean())
    e_prior = np.sqrt(((ict.albedo_mean.numpy()[f] - true_mean) ** 2).mean())
    assert e_learned < 0.7 * e_prior


def test_samples_only_where_the_face_is_seen_and_called_face(ict):
    t = _truth(ict, n=2)
    r = t["renderer"]
    full = albedo_samples(r, t["theta"], t["images"])
    half = torch.ones(2, 1, S, S)
    half[..., : S // 2] = 0  # the E-step rejects the image-left half
    part = albedo_samples(r, t["theta"], t["images"], half)
    assert (part.kept <= full.kept).all() and 0.2 < part.kept.sum() / full.kept.sum() < 0.8
    # where kept, the sample times the shading is the observed colour
    sh = torch.einsum("bvk,bkc->bvc", sh_basis(full.normals), full.gamma)
    k = full.kept
    torch.testing.assert_close((full.values * sh)[k], full.colour[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ model format
@pytest.fixture(scope="module")
def learned_model(ict):
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(4, ict.n_vertices, 3)).astype(np.float32) * 0.02
    a = rng.normal(size=(27, 27))
    cov = a @ a.T / 27 + np.eye(27) * 1e-3
    return with_learned_albedo(ict, ict.albedo_mean.numpy() * 1.1, basis, sh_mean=rng.normal(size=27) * 0.1,
                               sh_cov=cov, provenance={"faces": 5, "licences": {"CC-BY-4.0": 5}, "command": "x"})


@pytest.mark.parametrize("compact", [False, True])
def test_npz_round_trip_with_the_prior_and_provenance(learned_model, tmp_path, compact):
    path = learned_model.save(tmp_path / "m.npz", compact=compact)
    back = load_model(path)
    assert back.albedo_source == "learned" and back.provenance == learned_model.provenance
    torch.testing.assert_close(back.sh_mean, learned_model.sh_mean, rtol=0, atol=0)
    torch.testing.assert_close(back.sh_cov, learned_model.sh_cov, rtol=0, atol=0)
    tol = 1e-3 if compact else 0
    for k in ("albedo_basis", "id_basis", "exp_basis"):
        a, b = getattr(back, k), getattr(learned_model, k)
        assert b.dtype == torch.float32 and ((a - b).abs() <= tol * b.abs().max()).all()
    assert torch.equal(back.albedo_mean, learned_model.albedo_mean)
    # a cropped copy keeps the prior and the provenance
    keep = torch.ones(learned_model.n_vertices, dtype=torch.bool)
    keep[:10] = False
    c = back.crop(keep)
    assert c.sh_mean is not None and c.provenance == back.provenance
    # a float64 copy carries the prior buffers
    assert back.double().sh_cov.dtype == torch.float64


def test_a_learned_model_loads_everywhere(learned_model, tmp_path):
    from occrecon.api import Reconstructor

    path = learned_model.save(tmp_path / "m.npz")
    m = load_model(path)
    r = FaceRenderer(m, camera=default_camera(64))
    with torch.no_grad():
        out = r(m.layout.zeros(2))
    assert torch.isfinite(out.image).all()
    rec = Reconstructor.for_model(path, image_size=64, fit=fit_preset("fast").replace(rounds=1, steps=2,
                                                                                           image_size=None))
    lm = out.landmarks
    res = rec(out.image.clamp(0, 1), lm)
    assert torch.isfinite(res.theta).all()
    albedo_gallery(m, tmp_path / "g.png", modes=2, size=48)
    assert (tmp_path / "g.png").stat().st_size > 0


def test_the_fit_uses_the_illumination_prior(learned_model):
    """A prior whose mean is a bright frontal light: on a darker photo, the fit's light ends nearer to that mean
    with the prior than without it (same start, same steps), and RANSAC's fallback (too few vertices) is the mean."""
    from occrecon.fit.light import VertexObservations, ransac_light

    m = copy.deepcopy(learned_model)
    mean = torch.zeros(27)
    mean[[0, 9, 18]] = 1.0
    mean[[2, 11, 20]] = 0.3  # frontal light, full coefficients
    m.sh_mean.copy_(mean)
    m.sh_cov.copy_(torch.eye(27) * 1e-3)
    r = FaceRenderer(m, camera=default_camera(64))
    with torch.no_grad():
        img = r(m.layout.zeros(2)).image.clamp(0, 1) * 0.5

    def distance(w):
        cfg = fit_preset("fast").replace(image_size=None, rounds=1, steps=10, w_light_prior=w)
        res = fit_image(r, img, None, config=cfg)
        full = gamma_to_theta(theta_to_gamma(res.theta[:, m.layout.slice("gamma")], r.ambient), 0.0)
        return float((full - mean).norm(dim=1).mean())

    assert distance(1.0) < 0.9 * distance(0.0)
    obs = VertexObservations(torch.zeros(1, 10, dtype=torch.bool), torch.zeros(1, 10, 3), torch.zeros(1, 10, 3),
                             torch.zeros(1, 10, 3), torch.zeros(1, 10, 2))
    est = ransac_light(obs, prior_gamma=mean.reshape(3, 9).T)
    assert not est.ok[0] and torch.equal(est.gamma[0], mean.reshape(3, 9).T)


def test_bad_sh_prior_is_refused(ict):
    with pytest.raises(ValueError, match="sh_prior"):
        with_learned_albedo(ict, ict.albedo_mean.numpy(), ict.albedo_basis.numpy(), sh_mean=np.zeros(27),
                            sh_cov=-np.eye(27), provenance={})
    with pytest.raises(ValueError, match="sh_prior"):
        with_learned_albedo(ict, ict.albedo_mean.numpy(), ict.albedo_basis.numpy(), sh_mean=np.zeros(9),
                            sh_cov=np.eye(27), provenance={})
    with pytest.raises(TypeError):
        with_learned_albedo(ict, ict.albedo_mean.numpy(), ict.albedo_basis.numpy(), sh_mean=None, sh_cov=None,
                            provenance={"x": object()})


def test_build_bad_input(ict, tmp_path):
    t = _truth(ict, n=3)
    with pytest.raises(ValueError, match="components: K = 3 needs at least K \\+ 1 = 4"):
        albedo_model_from_images(ict, t["images"], None, components=3, theta=t["theta"])
    with pytest.raises(ValueError, match="rounds"):
        albedo_model_from_images(ict, t["images"], None, components=1, rounds=0, theta=t["theta"])
    with pytest.raises(ValueError, match="no face to build from"):
        build_albedo_model(ict, [], components=2)


def test_cli_errors_for_an_empty_folder_and_a_licence_that_keeps_nothing(tmp_path, capsys):
    from occrecon.cli import main

    empty = tmp_path / "faces"
    empty.mkdir()
    (empty / "meta.jsonl").write_text("")
    (empty / "landmarks.csv").write_text("")
    from occrecon import assets

    model = assets.shared_dir() / "assets" / "models" / "ict_narrowface.npz"
    assert main(["model", "albedo", "build", str(model), "--faces", str(empty), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "occrecon model albedo build: error:" in err[0] and "licence" in err[0]
    # a folder with one face that is not licensed: the default filter keeps nothing
    (empty / "meta.jsonl").write_text(json.dumps({"id": "00001", "identity": 1, "image_rights": "unclear"}) + "\n")
    (empty / "images").mkdir()
    (empty / "landmarks.csv").write_text("images/00001.jpg," + ",".join(["1.0"] * 136) + "\n")
    assert main(["model", "albedo", "build", str(model), "--faces", str(empty), "--include-held-out",
                 "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passes the licence filter 'licensed'" in err[0]


# ------------------------------------------------------------------------------------------ the shipped model
def test_the_shipped_model_is_learned_from_licensed_training_faces_only():
    from occrecon import assets
    from occrecon.data.faces import identity_split, read_face_folder
    from occrecon.morphable import DEFAULT_MODEL, default_model, resolve_model

    m = default_model()
    assert DEFAULT_MODEL.stat().st_size < 8 * 2 ** 20
    assert m.albedo_source == "learned" and m.n_tex == 80 and m.sh_mean is not None
    assert m.name == "ict_narrowface" and m.exp_bounds == (0.0, 1.0)
    p = m.provenance
    assert p["licence_filter"] == "licensed" and p["faces"] == len(p["face_ids"]) > 100
    assert set(p["licences"]) <= {"CC-BY-4.0", "CC0-1.0", "MIT"}
    assert resolve_model("default").n_tex == 80 and resolve_model(m) is m
    if assets.shared_dir(required=False) is not None:
        records = {r.id: r for r in read_face_folder()}
        _, held = identity_split(list(records.values()))
        assert not set(p["face_ids"]) & {r.id for r in held}  # no held-out identity built it
        assert all(records[i].image_rights == "licensed" for i in p["face_ids"])


def test_xi_follows_the_models_albedo(ict):
    from occrecon.fit.config import XI_LEARNED, XI_PRIOR
    from occrecon.morphable import default_model

    cfg = fit_preset("fast")
    assert cfg.xi is None and cfg.xi_for(ict) == XI_PRIOR == 0.27 and cfg.xi_for(default_model()) == XI_LEARNED
    assert cfg.replace(xi=0.2).xi_for(ict) == 0.2


def test_randomised_svd_of_large_builds_gives_the_same_modes(monkeypatch):
    from occrecon.morphable import appearance as A

    rng = np.random.default_rng(4)
    x = (rng.normal(size=(200, 30)) * np.linspace(3, 0.2, 30)) @ rng.normal(size=(30, 400))
    w = (rng.random(x.shape) > 0.2).astype(float)
    exact = weighted_pca(np.where(w > 0, x, 0), w, 8, iterations=30)
    monkeypatch.setattr(A, "RANDOMISED_ABOVE", 1000)
    fast = weighted_pca(np.where(w > 0, x, 0), w, 8, iterations=30)
    assert np.linalg.svd(fast.directions @ exact.directions.T, compute_uv=False).min() > 0.9999
    np.testing.assert_allclose(fast.std, exact.std, rtol=1e-4)
    assert np.abs(fast.mean - exact.mean).max() < 1e-3 * np.abs(x).max()
