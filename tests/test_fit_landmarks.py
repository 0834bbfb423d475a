"""occrecon.fit landmark fitting: closed forms, recovery of a rendered face's pose, robustness, missing and degenerate
landmarks, the model's expression range, and bad input."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from occrecon import assets
from occrecon.api import default_camera
from occrecon.fit import LandmarkFitConfig, face_scale, fit_landmarks, initial_pose, pose_from_rotation
from occrecon.morphable import load_model
from occrecon.render import FaceRenderer, euler_rotation

pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")
SIZE = 128


@pytest.fixture(scope="module")
def sfm():
    return load_model(assets.shared_dir() / "assets" / "models" / "sfm_3448.npz")


def _random_faces(model, b: int, seed: int, id_std=0.3, pose=(0.2, 0.4, 0.15)):
    g = torch.Generator().manual_seed(seed)
    lay = model.layout
    th = torch.zeros(b, lay.size)
    th[:, lay.slice("id")] = torch.randn(b, model.n_id, generator=g) * id_std
    exp = (torch.rand(b, model.n_exp, generator=g) < 0.2) * torch.rand(b, model.n_exp, generator=g) * 0.5
    th[:, lay.slice("exp")] = exp
    th[:, lay.slice("angle")] = (torch.rand(b, 3, generator=g) * 2 - 1) * torch.tensor(pose)
    scale = {"cm": 1.0, "mm": 10.0}[model.units]
    th[:, lay.slice("trans")] = (torch.rand(b, 3, generator=g) * 2 - 1) * torch.tensor([1.5, 1.5, 4.0]) * scale
    renderer = FaceRenderer(model, camera=default_camera(SIZE))
    with torch.no_grad():
        lms = renderer(th).landmarks
    return th, lms, renderer


def test_pose_from_rotation_inverts_euler_rotation():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(200, 3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor([3.0, 1.5, 3.0],
                                                                                          dtype=torch.float64)
    back = pose_from_rotation(euler_rotation(angles))
    torch.testing.assert_close(euler_rotation(back), euler_rotation(angles), rtol=0, atol=1e-12)
    torch.testing.assert_close(back, angles, rtol=0, atol=1e-9)


def test_face_scale_closed_form():
    pts = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [50.0, 50.0]]])
    used = torch.tensor([[True, True, True, True, False]])
    assert face_scale(pts, used).item() == pytest.approx(math.sqrt(2.0))


def test_initial_pose_is_exact_under_orthography(ict):
    # far away with a long lens the camera is (nearly) orthographic: the closed form recovers the rotation
    cam = default_camera(SIZE, focal=1015.0 * 100)
    g = torch.Generator().manual_seed(1)
    angles = (torch.rand(8, 3, generator=g) * 2 - 1) * torch.tensor([0.3, 0.6, 0.3])
    pts = ict.mean[ict.landmarks][None].expand(8, -1, -1)
    distance = 100.0 * 100
    trans = torch.tensor([0.0, 0.0, -distance]) + torch.tensor([2.0, -1.0, 0.0])
    v = pts @ euler_rotation(angles).transpose(1, 2) + trans
    uv = cam.project(v)
    a, t, ok = initial_pose(pts, uv, torch.ones(8, 68), cam, distance)
    assert ok.all()
    assert (a - angles).abs().max().item() < math.radians(0.1)
    assert torch.allclose(t[:, :2], torch.tensor([2.0, -1.0]).expand(8, 2), atol=0.05)


def test_recovers_a_rendered_face(ict):
    th, lms, _ = _random_faces(ict, 16, seed=2)
    res = fit_landmarks(ict, default_camera(SIZE), lms)
    lay = ict.layout
    err_deg = (res.theta[:, lay.slice("angle")] - th[:, lay.slice("angle")]).abs().max(1).values * 180 / math.pi
    assert err_deg.max().item() < 1.0
    assert res.error.max().item() < 0.5  # pixels
    assert not res.failed.any() and torch.isfinite(res.theta).all()
    assert (res.cost[:, -1] <= res.cost[:, 1] + 1e-6).all()  # LM only takes steps that lower the cost
    exp = res.theta[:, lay.slice("exp")]
    assert exp.min().item() >= 0.0 and exp.max().item() <= 1.0  # ICT blendshape weights stay in range


def test_float64(ict):
    th, lms, _ = _random_faces(ict, 2, seed=3)
    res = fit_landmarks(copy.deepcopy(ict).double(), default_camera(SIZE), lms.double())
    assert res.theta.dtype == torch.float64 and res.error.max().item() < 0.5


def test_geman_mcclure_ignores_gross_outliers(ict):
    th, lms, _ = _random_faces(ict, 8, seed=4)
    bad = lms.clone()
    g = torch.Generator().manual_seed(5)
    idx = torch.randperm(68, generator=g)[:8]
    bad[:, idx] += torch.tensor([25.0, -18.0])  # 8 detections off by ~30 px
    good = torch.ones(68, dtype=torch.bool)
    good[idx] = False
    cam = default_camera(SIZE)

    def err_on_good(cfg):
        res = fit_landmarks(ict, cam, bad, config=cfg)
        return (res.landmarks - lms).norm(dim=-1)[:, good].mean().item(), res

    robust, res = err_on_good(LandmarkFitConfig())
    plain, _ = err_on_good(LandmarkFitConfig(robust="none"))
    assert robust < 1.0 < plain
    assert res.weights[:, idx].max().item() < 0.05 < res.weights[:, good].min().item()


def test_missing_landmarks_are_left_out(ict):
    th, lms, _ = _random_faces(ict, 4, seed=6)
    holes = lms.clone()
    holes[:, 0:17] = float("nan")  # no contour
    valid = torch.ones(4, 68, dtype=torch.bool)
    valid[:, 48:68] = False  # mouth declared missing
    res = fit_landmarks(ict, default_camera(SIZE), holes, valid=valid)
    assert not res.failed.any() and torch.isfinite(res.theta).all()
    assert not res.used[:, 0:17].any() and not res.used[:, 48:68].any() and res.used[:, 17:48].all()
    assert (res.landmarks - lms)[:, 17:48].norm(dim=-1).mean().item() < 0.5


def test_sfm_unmapped_contour_is_absent(sfm):
    th, lms, _ = _random_faces(sfm, 4, seed=7)
    assert torch.isnan(lms[:, (sfm.landmarks < 0)]).all()  # the renderer marks SFM's unmapped contour
    res = fit_landmarks(sfm, default_camera(SIZE), lms)
    assert not res.used[:, (sfm.landmarks < 0)].any()
    assert torch.isnan(res.landmarks[:, (sfm.landmarks < 0)]).all()
    assert res.error.max().item() < 0.5 and not res.failed.any()


def test_too_few_degenerate_or_far_landmarks_are_flagged_not_raised(ict):
    th, lms, _ = _random_faces(ict, 5, seed=8)
    x = lms.clone()
    x[0] = float("nan")  # nothing
    x[1, 5:] = float("nan")  # five points only
    x[2] = x[2, :1].expand(68, 2)  # every point at one pixel: no spread
    # far outside the image: still a face shape, although a shifted image of a centred face is not exactly the
    # perspective image of any face there (a residual of a pixel or two is the projection's, not the fit's)
    x[3] = x[3] + torch.tensor([3 * SIZE, -2 * SIZE])
    init = ict.layout.zeros(5)
    init[:, ict.layout.slice("gamma")] = 0.1
    res = fit_landmarks(ict, default_camera(SIZE), x, init=init)
    assert res.failed.tolist() == [True, True, True, False, False]
    assert torch.isfinite(res.theta).all() and torch.equal(res.theta[:3], init[:3])
    assert torch.isnan(res.error[:3]).all() and res.error[3].item() < 3.0 and res.error[4].item() < 0.5
    torch.testing.assert_close(res.theta[:, ict.layout.slice("gamma")], init[:, ict.layout.slice("gamma")])


def test_deterministic(ict):
    _, lms, _ = _random_faces(ict, 4, seed=9)
    a = fit_landmarks(ict, default_camera(SIZE), lms + 0.7)
    b = fit_landmarks(ict, default_camera(SIZE), lms + 0.7)
    assert torch.equal(a.theta, b.theta)


def test_id_modes_fits_only_the_first_modes(ict):
    _, lms, _ = _random_faces(ict, 2, seed=10)
    init = ict.layout.zeros(2)
    init[:, ict.layout.slice("id")][:, 50:] = 0.25
    res = fit_landmarks(ict, default_camera(SIZE), lms, init=init, config=LandmarkFitConfig(id_modes=50))
    torch.testing.assert_close(res.theta[:, ict.layout.slice("id")][:, 50:], init[:, ict.layout.slice("id")][:, 50:])
    assert res.theta[:, ict.layout.slice("id")][:, :50].abs().sum() > 0


def test_bad_input_names_the_argument(ict):
    cam = default_camera(SIZE)
    good = torch.zeros(1, 68, 2)
    with pytest.raises(TypeError, match="landmarks"):
        fit_landmarks(ict, cam, np.zeros((1, 68, 2)))
    with pytest.raises(ValueError, match="landmarks"):
        fit_landmarks(ict, cam, torch.zeros(1, 67, 2))
    with pytest.raises(ValueError, match="landmarks: empty batch"):
        fit_landmarks(ict, cam, torch.zeros(0, 68, 2))
    with pytest.raises(ValueError, match="weights"):
        fit_landmarks(ict, cam, good, weights=-torch.ones(68))
    with pytest.raises(ValueError, match="valid"):
        fit_landmarks(ict, cam, good, valid=torch.ones(1, 68))
    with pytest.raises(ValueError, match="init"):
        fit_landmarks(ict, cam, good, init=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="init"):
        fit_landmarks(ict, cam, good, init=torch.full((1, ict.layout.size), float("nan")))
    with pytest.raises(TypeError, match="camera"):
        fit_landmarks(ict, "camera", good)
    with pytest.raises(ValueError, match="robust"):
        fit_landmarks(ict, cam, good, config=LandmarkFitConfig(robust="cauchy"))
    with pytest.raises(ValueError, match="iterations"):
        LandmarkFitConfig(iterations=-1).validate()
