"""occrecon.losses: every term against hand-computed values or independent numpy expressions, gradchecks of
the custom formulas, NaN/mask handling, weight presets, combined objectives, bad input."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch

import occrecon  # noqa: F401  (registers torch.ops.occrecon)
from occrecon import losses as L
from occrecon.morphable import ParamLayout


# ---------------------------------------------------------------------------------------------- helpers
class PerceptualOutput(NamedTuple):
    features: list
    embedding: torch.Tensor


class TinyNet(torch.nn.Module):
    """Deterministic two-layer conv net with the PerceptualOutput interface; records the landmarks it gets."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1).to(dtype)
        self.conv2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1).to(dtype)
        self.fc = torch.nn.Linear(5, 6).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
                p.requires_grad_(False)
        self.calls: list = []

    def forward(self, images, landmarks=None):
        self.calls.append((images.shape[0], landmarks))
        f1 = torch.tanh(self.conv1(images))
        f2 = torch.tanh(self.conv2(f1))
        return PerceptualOutput([f1, f2], self.fc(f2.mean(dim=(2, 3))))


def _np_cos_dist(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    num = (a * b).sum(axis)
    den = np.maximum(np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis), 1e-8)
    return 1.0 - num / den


def _np_feature_distance(net, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Independent numpy version of the per-location cosine feature distance, averaged over maps."""
    fx, fy = net(x).features, net(y).features
    per = [_np_cos_dist(a.numpy(), b.numpy(), axis=1).mean(axis=(1, 2)) for a, b in zip(fx, fy)]
    return np.mean(per, axis=0)


def _images(b=2, h=6, w=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    r = torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    region = (torch.rand(b, 1, h, w, generator=g) > 0.3).to(dtype)
    m = region * torch.rand(b, 1, h, w, generator=g, dtype=dtype).clamp(0.05, 0.95)
    return t, r, m, region


LAYOUT = ParamLayout([("id", 2), ("exp", 1), ("tex", 2), ("angle", 3), ("gamma", 27), ("trans", 3)])


# ---------------------------------------------------------------------------------------------- L_img^ex
def _np_neighbour(t, r, region, k):
    """Brute-force numpy d² = min over the k×k window (inside the image and Φ) of the RGB squared distance."""
    b, _, h, w = t.shape
    rad = k // 2
    d2 = np.zeros((b, h, w))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                best = None
                for di in range(-rad, rad + 1):
                    for dj in range(-rad, rad + 1):
                        y, x = i + di, j + dj
                        if 0 <= y < h and 0 <= x < w and region[n, 0, y, x] > 0.5:
                            v = ((t[n, :, i, j] - r[n, :, y, x]) ** 2).sum()
                            best = v if best is None else min(best, v)
                d2[n, i, j] = 0.0 if best is None else best
    return d2


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("squared", [True, False])
def test_neighbour_image_loss_matches_numpy(k, squared):
    t, r, m, region = _images()
    d2 = _np_neighbour(t.numpy(), r.numpy(), region.numpy(), k)
    d = d2 if squared else np.sqrt(d2)
    num = (m.numpy()[:, 0] * d).sum(axis=(1, 2))
    den = (region.numpy()[:, 0] > 0.5).sum(axis=(1, 2))
    got = L.neighbour_image_loss(t, r, m, region, k=k, squared=squared, reduction="none")
    np.testing.assert_allclose(got.numpy(), num / den, rtol=1e-12)
    np.testing.assert_allclose(L.neighbour_image_loss(t, r, m, region, k=k, squared=squared).item(),
                               num.sum() / den.sum(), rtol=1e-12)


def test_neighbour_loss_forgives_a_one_pixel_shift():
    t, _, _, _ = _images(b=1, h=8, w=8)
    r = torch.roll(t, shifts=1, dims=3)  # render shifted right by one pixel
    region = torch.ones(1, 1, 8, 8, dtype=t.dtype)
    mask = torch.zeros_like(region)
    mask[..., 1:-1, 1:-1] = 1.0  # interior pixels: their match lies one pixel to the right
    assert L.neighbour_image_loss(t, r, mask, region, k=3).item() == 0.0
    assert L.neighbour_image_loss(t, r, mask, region, k=1).item() > 0.01


# ---------------------------------------------------------------------------------------------- L_img^in, L_bi
M_HAND = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]], dtype=torch.float64)
PHI_HAND = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]], dtype=torch.float64)


def test_area_loss_hand_values():
    assert L.area_loss(M_HAND, PHI_HAND).item() == pytest.approx(-(1.0 + 0.25) / 3.0)
    assert L.area_loss(M_HAND, PHI_HAND, form="code").item() == pytest.approx((0.0 + 0.5 + 1.0) / 3.0)
    # paper and code differ by the constant 1 for a binary mask
    mb = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    assert L.area_loss(mb, PHI_HAND, form="code").item() == pytest.approx(L.area_loss(mb, PHI_HAND).item() + 1.0)
    # empty region: 0, not NaN; (B, H, W) masks accepted
    assert L.area_loss(torch.zeros(1, 2, 2, dtype=torch.float64), torch.zeros(1, 2, 2)).item() == 0.0


def test_binary_loss_hand_values():
    assert L.binary_loss(M_HAND, PHI_HAND).item() == pytest.approx(-(0.25 + 0.0 + 0.25) / 3.0)
    assert L.binary_loss(M_HAND, PHI_HAND, form="code").item() == pytest.approx(0.5 - (0.5 + 0 + 0.5 + 0.5) / 4)


def test_reduction_none_is_per_image():
    t, r, m, region = _images(b=3)
    for fn in (lambda red: L.area_loss(m, region, reduction=red), lambda red: L.binary_loss(m, region, reduction=red)):
        per = fn("none")
        assert per.shape == (3,)
        torch.testing.assert_close(fn("mean"), per.mean())


# ---------------------------------------------------------------------------------------------- L_img^R
def test_photometric_hand_values():
    t = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    r = torch.zeros_like(t)
    r[0, :, 0, 0] = torch.tensor([0.3, 0.4, 0.0])  # distance 0.5, squared 0.25
    r[0, :, 0, 1] = torch.tensor([0.6, 0.0, 0.8])  # distance 1.0
    m = torch.tensor([[[[1.0, 0.5]]]], dtype=torch.float64)
    assert L.photometric_loss(t, r, m).item() == pytest.approx((0.25 + 0.5 * 1.0) / 1.5)
    assert L.photometric_loss(t, r, m, squared=False).item() == pytest.approx((0.5 + 0.5 * 1.0) / 1.5)
    # an all-zero mask gives 0 (denominator clamped to 1)
    assert L.photometric_loss(t, r, torch.zeros_like(m)).item() == 0.0


def test_photometric_batch_mean_is_pooled():
    t, r, m, _ = _images(b=2)
    e = ((t - r) ** 2).sum(1, keepdim=True)
    want = (m * e).sum() / m.sum()
    torch.testing.assert_close(L.photometric_loss(t, r, m), want)
    torch.testing.assert_close(L.photometric_loss(t, r, m, reduction="none"),
                               (m * e).sum((1, 2, 3)) / m.sum((1, 2, 3)))


# ---------------------------------------------------------------------------------------------- gradchecks
def test_gradchecks_custom_terms():
    t, r, m, region = _images(b=2, h=4, w=5, seed=3)
    t.requires_grad_(True)
    r.requires_grad_(True)
    m.requires_grad_(True)
    gc = torch.autograd.gradcheck
    assert gc(lambda mm: L.area_loss(mm, region, reduction="none"), (m,))
    assert gc(lambda mm: L.area_loss(mm, region, form="code"), (m,))
    assert gc(lambda mm: L.binary_loss(mm, region, reduction="none"), (m,))
    assert gc(lambda mm: L.binary_loss(mm, region, form="code"), (m,))
    for sq in (True, False):
        assert gc(lambda a, b, mm: L.photometric_loss(a, b, mm, squared=sq, reduction="none"), (t, r, m))
    assert gc(lambda b: L.robust_likelihood(t.detach(), b, region, xi="paper", background=True), (r,))
    theta = torch.randn(3, LAYOUT.size, dtype=torch.float64, requires_grad=True)
    assert gc(lambda th: L.regulariser(th, LAYOUT, reduction="none"), (theta,))


def test_gradcheck_landmarks_with_nan_points():
    g = torch.Generator().manual_seed(5)
    pred = (torch.rand(2, 68, 2, generator=g, dtype=torch.float64) * 224)
    tgt = pred + torch.randn(2, 68, 2, generator=g, dtype=torch.float64)
    pred[0, 3] = float("nan")
    tgt[1, 40] = float("nan")
    pred.requires_grad_(True)
    for form in ("paper", "code"):
        assert torch.autograd.gradcheck(lambda p: L.landmark_loss(p, tgt, form=form, reduction="none"), (pred,))
    loss = L.landmark_loss(pred, tgt)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 3].abs().sum() == 0 and pred.grad[1, 40].abs().sum() == 0


def test_gradcheck_perceptual_wrt_mask():
    net = TinyNet()
    t, r, m, _ = _images(b=2, h=6, w=6, seed=4)
    m.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda mm: L.perceptual_ex(net, t, r, mm, reduction="none"), (m,))
    assert torch.autograd.gradcheck(lambda mm: L.perceptual_in(net, t, r, mm, form="code"), (m,))


# ---------------------------------------------------------------------------------------------- L_lm
def test_landmark_weights_are_the_papers():
    w = L.LANDMARK_WEIGHTS_68
    assert w.shape == (68,)
    assert torch.all(w[:17] == 0.2) and torch.all(w[17:27] == 0.1) and torch.all(w[27:] == 1.0)


def test_landmark_loss_hand_values():
    tgt = torch.zeros(1, 68, 2, dtype=torch.float64)
    pred = tgt.clone()
    pred[..., 0] += 1.0  # every point 1 px off in x
    wsum = 17 * 0.2 + 10 * 0.1 + 41 * 1.0
    w2sum = 17 * 0.04 + 10 * 0.01 + 41 * 1.0
    assert L.landmark_loss(pred, tgt).item() == pytest.approx(wsum / 68)
    assert L.landmark_loss(pred, tgt, form="code").item() == pytest.approx(w2sum / 136)
    pred[..., 0] += 2.0  # 3 px: squared distance 9
    assert L.landmark_loss(pred, tgt).item() == pytest.approx(9 * wsum / 68)


def test_landmark_loss_excludes_missing_points():
    tgt = torch.zeros(2, 68, 2, dtype=torch.float64)
    pred = torch.full_like(tgt, 2.0)  # squared distance 8 per point
    pred[0, :8] = float("nan")  # unmapped model points (jaw 0-7: weight 0.2)
    valid = torch.ones(2, 68, dtype=torch.bool)
    valid[1, 60:] = False  # missing detections (mouth: weight 1)
    got = L.landmark_loss(pred, tgt, valid=valid, reduction="none")
    want0 = 8 * (9 * 0.2 + 10 * 0.1 + 41) / 60
    want1 = 8 * (17 * 0.2 + 10 * 0.1 + 33) / 60
    np.testing.assert_allclose(got.numpy(), [want0, want1])
    torch.testing.assert_close(L.landmark_loss(pred, tgt, valid=valid), got.sum() * 60 / 120)
    # no usable landmark at all: 0, not NaN
    assert L.landmark_loss(torch.full_like(tgt, float("nan")), tgt).item() == 0.0


# ---------------------------------------------------------------------------------------------- L_reg
def test_regulariser_hand_values():
    theta = torch.zeros(2, LAYOUT.size, dtype=torch.float64)
    theta[0, 0:2] = torch.tensor([1.0, 2.0])  # id
    theta[0, 2] = 3.0  # exp
    theta[0, 3:5] = torch.tensor([0.5, 0.5])  # tex
    theta[:, 5:] = 7.0  # angle, gamma, trans: not regularised
    np.testing.assert_allclose(L.regulariser(theta, LAYOUT, reduction="none").numpy(), [14.5, 0.0])
    assert L.regulariser(theta, LAYOUT).item() == pytest.approx(14.5 / 2)
    assert L.regulariser(theta, LAYOUT, form="code").item() == pytest.approx(14.5 / 2 / 224)
    assert L.regulariser(theta, LAYOUT, groups=("exp",)).item() == pytest.approx(9 / 2)
    no_tex = ParamLayout.for_model(2, 1, 0)
    th = torch.ones(1, no_tex.size, dtype=torch.float64)
    assert L.regulariser(th, no_tex).item() == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------- eqs. 8-9
def test_robust_constants():
    assert L.PAPER_XI == 0.17
    assert L.CODE_XI == pytest.approx(0.016641)
    assert L.face_log_normaliser(0.043) == pytest.approx(-1.5 * math.log(2 * math.pi) - 3 * math.log(0.043))
    # the background density is the face density at ‖e‖² = ξ: the authors' 3σ rule
    assert L.background_log_likelihood(0.043, "code") == pytest.approx(-4.5 + L.face_log_normaliser(0.043))


def test_pseudo_mask_thresholds():
    t = torch.zeros(1, 3, 1, 4, dtype=torch.float64)
    r = torch.zeros_like(t)
    r[0, 0, 0] = torch.tensor([0.05, 0.2, 0.4, 0.5])  # squared errors 0.0025, 0.04, 0.16, 0.25
    np.testing.assert_array_equal(L.pseudo_mask(t, r).numpy().ravel(), [1, 1, 1, 0])
    np.testing.assert_array_equal(L.pseudo_mask(t, r, xi="code").numpy().ravel(), [1, 0, 0, 0])
    np.testing.assert_array_equal(L.pseudo_mask(t, r, xi=0.05).numpy().ravel(), [1, 1, 0, 0])
    region = torch.tensor([[[[1.0, 0.0, 1.0, 1.0]]]])
    np.testing.assert_array_equal(L.pseudo_mask(t, r, region).numpy().ravel(), [1, 0, 1, 0])
    assert not L.pseudo_mask(t, r.requires_grad_(True)).requires_grad


def test_robust_likelihood_numpy_reference():
    t, r, _, region = _images(b=2, h=5, w=6, seed=7)
    r = t + 0.15 * (r - 0.5)  # errors around the thresholds
    sigma = 0.043
    for xi_name, xi in (("paper", 0.17), ("code", (3 * sigma) ** 2)):
        e2 = ((t - r) ** 2).sum(1).numpy()
        nc = -1.5 * np.log(2 * np.pi) - 3 * np.log(sigma)
        ll = -e2 / (2 * sigma ** 2) + nc
        keep = (region.numpy()[:, 0] > 0.5) & (e2 < xi)
        want = -(keep * ll).mean(axis=(1, 2))
        got = L.robust_likelihood(t, r, region, sigma=sigma, xi=xi_name, reduction="none")
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        out = (region.numpy()[:, 0] > 0.5) & ~keep
        want_bg = want - (out * (-xi / (2 * sigma ** 2) + nc)).mean(axis=(1, 2))
        got_bg = L.robust_likelihood(t, r, region, sigma=sigma, xi=xi_name, background=True, reduction="none")
        np.testing.assert_allclose(got_bg.numpy(), want_bg, rtol=1e-12)


# ---------------------------------------------------------------------------------------------- perceptual
def test_perceptual_distance_numpy_reference():
    net = TinyNet()
    t, r, m, _ = _images(b=2, h=8, w=8, seed=9)
    np.testing.assert_allclose(L.perceptual_ex(net, t, r, m, reduction="none").numpy(),
                               _np_feature_distance(net, t * m, r * m), rtol=1e-10)
    np.testing.assert_allclose(L.perceptual_in(net, t, r, m, reduction="none").numpy(),
                               _np_feature_distance(net, t, r * m), rtol=1e-10)
    np.testing.assert_allclose(L.perceptual_in(net, t, r, m, form="code", reduction="none").numpy(),
                               _np_feature_distance(net, t, t * m), rtol=1e-10)
    np.testing.assert_allclose(L.perceptual_rec(net, t, r, reduction="none").numpy(),
                               _np_feature_distance(net, t, r), rtol=1e-10)
    ident = _np_cos_dist(net(t).embedding.numpy(), net(r).embedding.numpy(), axis=1)
    np.testing.assert_allclose(L.perceptual_rec(net, t, r, kind="identity", reduction="none").numpy(), ident,
                               rtol=1e-10)
    # identical images: distance 0
    assert L.perceptual_rec(net, t, t).item() == pytest.approx(0.0, abs=1e-12)


def test_perceptual_passes_landmarks_and_batches_once():
    net = TinyNet()
    t, r, m, _ = _images(b=2, h=8, w=8)
    lt = torch.rand(2, 68, 2, dtype=torch.float64) * 8
    lr = lt + 1.0
    net.calls.clear()
    L.perceptual_ex(net, t, r, m, landmarks=lt, render_landmarks=lr)
    assert len(net.calls) == 1 and net.calls[0][0] == 4
    torch.testing.assert_close(net.calls[0][1], torch.cat([lt, lr]))
    net.calls.clear()
    L.perceptual_rec(net, t, r)
    assert net.calls[0][1] is None


# ---------------------------------------------------------------------------------------------- configs
def test_weight_presets_are_the_papers():
    s = L.SegmentationWeights.paper()
    assert (s.neighbour, s.perceptual_ex, s.area, s.perceptual_in, s.binary) == (15, 3, 0.5, 2.5, 10)
    r = L.ReconstructionWeights.paper()
    assert (r.photometric, r.perceptual, r.area, r.landmark, r.regulariser) == (4, 0.5, 0.5, 0.01, 0.067)
    i = L.InitWeights.paper()
    assert (i.likelihood, i.landmark, i.regulariser, i.perceptual) == (0.5, 0.01, 0.067, 0.25)
    sf = L.SegmentationWeights.focus()
    assert (sf.neighbour, sf.perceptual_ex, sf.area, sf.perceptual_in, sf.binary) == (15, 3, 0.5, 0.25, 10)
    rf = L.ReconstructionWeights.focus()
    assert (rf.photometric, rf.perceptual, rf.area, rf.landmark, rf.regulariser) == (0.5, 0.25, 0.06, 5e-4, 0.1)
    i_f = L.InitWeights.focus()
    assert (i_f.likelihood, i_f.landmark, i_f.regulariser, i_f.perceptual) == (0.5, 5e-4, 0.1, 0.25)
    assert L.LossConfig.focus().neighbour_k == 5 and L.LossConfig.focus().xi == "code"


def test_ablation_presets():
    want = {"baseline": (1, False), "neighbour": (3, False), "perceptual": (1, True), "proposed": (3, True)}
    for name, (k, per) in want.items():
        c = L.LossConfig.preset(name)
        assert (c.neighbour_k, c.perceptual_ex, c.perceptual_in) == (k, per, per)
        assert c.segmentation == L.SegmentationWeights.paper() and c.reconstruction == L.ReconstructionWeights()
    assert L.LossConfig.preset("proposed") == L.LossConfig.paper() == L.LossConfig.preset("paper")


def test_config_dict_round_trip_and_validation():
    c = L.LossConfig.focus()
    assert L.LossConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown LossConfig keys"):
        L.LossConfig.from_dict({"neighbor_k": 3})
    with pytest.raises(ValueError, match="neighbour_k"):
        L.LossConfig(neighbour_k=4)
    with pytest.raises(ValueError, match="area_form"):
        L.LossConfig(area_form="mine")
    with pytest.raises(ValueError, match="xi"):
        L.LossConfig(xi=-1.0)
    with pytest.raises(ValueError, match="binary"):
        L.SegmentationWeights(binary=-1.0)
    with pytest.raises(ValueError, match="name"):
        L.LossConfig.preset("ours")


# ---------------------------------------------------------------------------------------------- objectives
def test_segmentation_loss_is_the_weighted_sum():
    net = TinyNet()
    t, r, m, region = _images(b=2, h=8, w=8, seed=11)
    lm = torch.rand(2, 68, 2, dtype=torch.float64) * 8
    for cfg in (L.LossConfig.paper(), L.LossConfig.focus()):
        total, terms = L.segmentation_loss(t, r, m, region, net=net, landmarks=lm, config=cfg)
        w = cfg.segmentation
        want = {
            "neighbour": w.neighbour * L.neighbour_image_loss(t, r, m, region, k=cfg.neighbour_k,
                                                              squared=cfg.neighbour_squared),
            "perceptual_ex": w.perceptual_ex * L.perceptual_ex(net, t, r, m, lm),
            "perceptual_in": w.perceptual_in * L.perceptual_in(net, t, r, m, lm, form=cfg.perceptual_in_form),
            "area": w.area * L.area_loss(m, region, form=cfg.area_form),
            "binary": w.binary * L.binary_loss(m, region, form=cfg.binary_form),
        }
        assert set(terms) == set(want)
        for k in want:
            torch.testing.assert_close(terms[k], want[k], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(total, sum(want.values()), rtol=1e-10, atol=1e-12)
    net.calls.clear()
    L.segmentation_loss(t, r, m, region, net=net)
    assert len(net.calls) == 1 and net.calls[0][0] == 6  # T⊙M, R⊙M, T in one call


def test_segmentation_ablations_drop_terms():
    t, r, m, region = _images(b=1, h=8, w=8)
    total, terms = L.segmentation_loss(t, r, m, region, config=L.LossConfig.preset("baseline"))
    assert set(terms) == {"neighbour", "area", "binary"}
    torch.testing.assert_close(terms["neighbour"], 15 * L.neighbour_image_loss(t, r, m, region, k=1))
    with pytest.raises(ValueError, match="net"):
        L.segmentation_loss(t, r, m, region, config=L.LossConfig.preset("perceptual"))


def _recon_inputs(seed=13):
    t, r, m, region = _images(b=2, h=8, w=8, seed=seed)
    g = torch.Generator().manual_seed(seed)
    lm_t = torch.rand(2, 68, 2, generator=g, dtype=torch.float64) * 8
    lm_r = lm_t + 0.5 * torch.randn(2, 68, 2, generator=g, dtype=torch.float64)
    lm_r[:, 0:8] = float("nan")  # unmapped model points
    theta = torch.randn(2, LAYOUT.size, generator=g, dtype=torch.float64)
    return t, r, m, region, theta, lm_t, lm_r


def test_reconstruction_loss_is_the_weighted_sum():
    net = TinyNet()
    t, r, m, region, theta, lm_t, lm_r = _recon_inputs()
    for cfg in (L.LossConfig.paper(), L.LossConfig.focus()):
        total, terms = L.reconstruction_loss(t, r, m, region, theta, LAYOUT, lm_t, lm_r, net=net, config=cfg)
        w = cfg.reconstruction
        want = {
            "photometric": w.photometric * L.photometric_loss(t, r, m, squared=cfg.photometric_squared),
            "perceptual": w.perceptual * L.perceptual_rec(net, t, r, lm_t, kind=cfg.reconstruction_perceptual_kind),
            "area": w.area * L.area_loss(m, region, form=cfg.area_form),
            "landmark": w.landmark * L.landmark_loss(lm_r, lm_t, form=cfg.landmark_form),
            "regulariser": w.regulariser * L.regulariser(theta, LAYOUT, form=cfg.regulariser_form),
        }
        assert set(terms) == set(want) and torch.isfinite(total)
        for k in want:
            torch.testing.assert_close(terms[k], want[k], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(total, sum(want.values()), rtol=1e-10, atol=1e-12)


def test_init_loss_is_the_weighted_sum():
    net = TinyNet()
    t, r, _, region, theta, lm_t, lm_r = _recon_inputs(seed=17)
    cfg = L.LossConfig.paper()
    total, terms = L.init_loss(t, r, region, theta, LAYOUT, lm_t, lm_r, net=net, config=cfg)
    want = {
        "likelihood": 0.5 * L.robust_likelihood(t, r, region, xi="paper"),
        "landmark": 0.01 * L.landmark_loss(lm_r, lm_t),
        "regulariser": 0.067 * L.regulariser(theta, LAYOUT),
        "perceptual": 0.25 * L.perceptual_rec(net, t, r, lm_t),
    }
    assert set(terms) == set(want)
    for k in want:
        torch.testing.assert_close(terms[k], want[k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(total, sum(want.values()), rtol=1e-10, atol=1e-12)
    no_per = cfg.replace(init=L.InitWeights(perceptual=0.0))
    total2, terms2 = L.init_loss(t, r, region, theta, LAYOUT, lm_t, lm_r, config=no_per)
    assert "perceptual" not in terms2
    torch.testing.assert_close(total2, total - want["perceptual"])


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_argument():
    t, r, m, region = _images(b=2, h=6, w=6)
    with pytest.raises(ValueError, match="render shape"):
        L.photometric_loss(t, r[:, :, :5], m)
    with pytest.raises(TypeError, match="target must be float"):
        L.photometric_loss((t * 255).to(torch.uint8), r, m)
    with pytest.raises(TypeError, match="render dtype"):
        L.neighbour_image_loss(t, r.float(), m, region)
    with pytest.raises(ValueError, match="mask must be"):
        L.photometric_loss(t, r, m[:1])
    with pytest.raises(ValueError, match="region must be"):
        L.area_loss(m, region[..., :3])
    with pytest.raises(TypeError, match="mask must be float"):
        L.binary_loss(m > 0.5, region)
    with pytest.raises(ValueError, match="target must be \\(B, 3"):
        L.pseudo_mask(t[:, :2], r[:, :2])
    with pytest.raises(ValueError, match="reduction"):
        L.area_loss(m, region, reduction="sum")
    with pytest.raises(ValueError, match="form"):
        L.binary_loss(m, region, form="FOCUS")
    with pytest.raises(ValueError, match="target shape"):
        L.landmark_loss(torch.zeros(2, 68, 2), torch.zeros(2, 67, 2))
    with pytest.raises(ValueError, match="weights: the default"):
        L.landmark_loss(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="valid must be"):
        L.landmark_loss(torch.zeros(2, 68, 2), torch.zeros(2, 68, 2), valid=torch.ones(2, 68))
    with pytest.raises(ValueError, match="theta must be"):
        L.regulariser(torch.zeros(2, 7), LAYOUT)
    with pytest.raises(ValueError, match="groups"):
        L.regulariser(torch.zeros(2, LAYOUT.size), LAYOUT, groups=("shape",))
    with pytest.raises(ValueError, match="xi"):
        L.pseudo_mask(t, r, xi="strict")
    with pytest.raises(ValueError, match="sigma"):
        L.robust_likelihood(t, r, sigma=0.0)
    with pytest.raises(ValueError, match="landmarks must be"):
        L.perceptual_rec(TinyNet(), t, r, landmarks=torch.zeros(2, 68))
    with pytest.raises(TypeError, match="net must be"):
        L.perceptual_rec(None, t, r)
    with pytest.raises(ValueError, match="kind"):
        L.perceptual_rec(TinyNet(), t, r, kind="style")
    with pytest.raises(TypeError, match="config must be"):
        L.segmentation_loss(t, r, m, region, config={"neighbour_k": 3})
    with pytest.raises(ValueError, match="landmarks and render_landmarks"):
        L.reconstruction_loss(t, r, m, region, torch.zeros(2, LAYOUT.size, dtype=t.dtype), LAYOUT, None, None,
                              net=TinyNet())


# ---------------------------------------------------------------------------------------------- with the renderer
def test_with_face_renderer_pseudo_mask_and_finite_gradients():
    """On a real render (SFM: jaw landmarks unmapped -> NaN): the pseudo-mask of a render against itself with a
    pasted occluder is exactly the visible face, and the init/reconstruction objectives backpropagate finite
    gradients to θ despite the NaN landmarks."""
    from occrecon import assets
    from occrecon.morphable import loaders
    from occrecon.render import PerspectiveCamera
    from occrecon.render.face import FaceRenderer

    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared face models not present")
    model = loaders.load_model(shared / "assets" / "models" / "sfm_3448.npz")
    size = 64
    renderer = FaceRenderer(model, camera=PerspectiveCamera(focal=1015.0 * size / 224, image_size=(size, size)))
    layout = model.layout
    g = torch.Generator().manual_seed(21)
    theta_true = torch.randn(2, layout.size, generator=g) * 0.2
    theta_true[:, layout.slice("gamma")] = 0.0  # ambient light only: skin colours, far from the occluder's
    truth = renderer(theta_true)
    occluder = torch.zeros(2, 1, size, size)
    occluder[:, :, 24:36, 20:44] = 1.0  # a band over the eyes
    green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    target = (truth.image * (1 - occluder) + green * occluder).detach()
    visible = (truth.region > 0.5).float() * (1 - occluder)
    assert torch.equal(L.pseudo_mask(target, truth.image, truth.region), visible)
    assert torch.isnan(truth.landmarks).any()

    theta = (theta_true + 0.1 * torch.randn(theta_true.shape, generator=g)).requires_grad_(True)
    lm_target = truth.landmarks.detach()
    for objective in ("init", "reconstruction"):
        theta.grad = None
        out = renderer(theta)
        if objective == "init":
            cfg = L.LossConfig.paper().replace(init=L.InitWeights(perceptual=0.0))
            total, terms = L.init_loss(target, out.image, out.region, theta, layout, lm_target, out.landmarks,
                                       config=cfg)
        else:
            cfg = L.LossConfig.paper().replace(reconstruction=L.ReconstructionWeights(perceptual=0.0))
            total, terms = L.reconstruction_loss(target, out.image, out.region * visible, out.region, theta, layout,
                                                 lm_target, out.landmarks, config=cfg)
        assert torch.isfinite(total) and all(torch.isfinite(v) for v in terms.values())
        assert terms["landmark"] > 0
        total.backward()
        assert torch.isfinite(theta.grad).all()
        for group in ("id", "angle", "trans"):
            assert theta.grad[:, layout.slice(group)].abs().sum() > 0, (objective, group)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_objectives_on_cuda_match_cpu():
    net = TinyNet()
    t, r, m, region, theta, lm_t, lm_r = _recon_inputs(seed=23)
    cpu = [L.segmentation_loss(t, r, m, region, net=net, landmarks=lm_t)[0],
           L.reconstruction_loss(t, r, m, region, theta, LAYOUT, lm_t, lm_r, net=net)[0],
           L.init_loss(t, r, region, theta, LAYOUT, lm_t, lm_r, net=net)[0]]
    dev = torch.device("cuda")
    t, r, m, region, theta, lm_t, lm_r = (x.to(dev) for x in (t, r, m, region, theta, lm_t, lm_r))
    net = net.to(dev)
    gpu = [L.segmentation_loss(t, r, m, region, net=net, landmarks=lm_t)[0],
           L.reconstruction_loss(t, r, m, region, theta, LAYOUT, lm_t, lm_r, net=net)[0],
           L.init_loss(t, r, region, theta, LAYOUT, lm_t, lm_r, net=net)[0]]
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-12)
