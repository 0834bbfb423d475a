"""occrecon.eval.metrics: hand-computed confusion matrices, closed-form errors, an independent numpy reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occrecon.eval.metrics import (Summary, confusion_counts, reconstruction_errors, segmentation_metrics,
                                   summarise)


def _t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32).reshape(1, 1, *np.asarray(a).shape)


# 3 x 4 image; Φ covers the first three columns (9 pixels), column 3 lies outside the rendered region.
GT = [[1, 1, 0, 1],
      [1, 0, 0, 0],
      [1, 1, 1, 1]]
PRED = [[0.9, 0.2, 0.7, 1.0],
        [0.6, 0.8, 0.1, 1.0],
        [0.5, 1.0, 0.3, 0.0]]
PHI = [[1, 1, 1, 0],
       [1, 1, 1, 0],
       [1, 1, 1, 0]]


def test_binarised_confusion_matrix_by_hand():
    # inside Φ, M > 0.5: [[1,0,1],[1,1,0],[0,1,0]]; GT: [[1,1,0],[1,0,0],[1,1,1]]
    # TP: (0,0) (1,0) (2,1) = 3; FP: (0,2) (1,1) = 2; FN: (0,1) (2,0) (2,2) = 3; TN: (1,2) = 1
    c = confusion_counts(_t(PRED), _t(GT), _t(PHI), threshold=0.5)
    assert [float(c[k][0]) for k in ("tp", "fp", "fn", "tn")] == [3, 2, 3, 1]
    m = segmentation_metrics(_t(PRED), _t(GT), _t(PHI))
    assert float(m["acc"][0]) == pytest.approx(4 / 9)
    assert float(m["ppv"][0]) == pytest.approx(3 / 5)
    assert float(m["tpr"][0]) == pytest.approx(3 / 6)
    assert float(m["f1"][0]) == pytest.approx(6 / 11)
    assert m["acc"].dtype == torch.float64 and m["acc"].shape == (1,)


def test_soft_confusion_matrix_by_hand():
    # soft: TP = Σ_{GT=1, Φ} M = .9+.2+.6+.5+1.0+.3 = 3.5 ; FP = Σ_{GT=0, Φ} M = .7+.8+.1 = 1.6
    # FN = 6 − 3.5 = 2.5 ; TN = 3 − 1.6 = 1.4
    c = confusion_counts(_t(PRED), _t(GT), _t(PHI), threshold=None)
    for k, v in zip(("tp", "fp", "fn", "tn"), (3.5, 1.6, 2.5, 1.4)):
        assert float(c[k][0]) == pytest.approx(v, abs=1e-6)
    m = segmentation_metrics(_t(PRED), _t(GT), _t(PHI), threshold=None)
    assert float(m["acc"][0]) == pytest.approx(4.9 / 9, abs=1e-6)
    assert float(m["ppv"][0]) == pytest.approx(3.5 / 5.1, abs=1e-6)
    assert float(m["tpr"][0]) == pytest.approx(3.5 / 6, abs=1e-6)
    assert float(m["f1"][0]) == pytest.approx(7 / 11.1, abs=1e-6)


def test_threshold_is_strict():
    pred = torch.full((1, 1, 2, 2), 0.5)
    ones = torch.ones(1, 1, 2, 2)
    c = confusion_counts(pred, ones, ones, threshold=0.5)
    assert float(c["tp"][0]) == 0 and float(c["fn"][0]) == 4


def test_undefined_ratios_are_nan():
    ones, zeros = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    # nothing rendered: every ratio is 0/0
    m = segmentation_metrics(ones, ones, zeros)
    assert all(math.isnan(float(m[k][0])) for k in ("acc", "ppv", "tpr", "f1"))
    # fully occluded face (GT 0 in Φ), predicted all occluder: PPV, TPR, F1 undefined, ACC = 1
    m = segmentation_metrics(zeros, zeros, ones)
    assert float(m["acc"][0]) == 1.0
    assert all(math.isnan(float(m[k][0])) for k in ("ppv", "tpr", "f1"))
    # no occluder at all (GT 1 everywhere), all predicted face: PPV defined (= 1)
    m = segmentation_metrics(ones, ones, ones)
    assert [float(m[k][0]) for k in ("acc", "ppv", "tpr", "f1")] == [1.0, 1.0, 1.0, 1.0]
    # GT visible but predicted nothing: PPV undefined, TPR = F1 = 0
    m = segmentation_metrics(zeros, ones, ones)
    assert math.isnan(float(m["ppv"][0])) and float(m["tpr"][0]) == 0.0 and float(m["f1"][0]) == 0.0


def _numpy_reference(pred: np.ndarray, gt: np.ndarray, phi: np.ndarray, threshold):
    """Independent per-image metrics: pixel lists inside Φ with weights, no torch."""
    out = {k: [] for k in ("acc", "ppv", "tpr", "f1")}
    for p, g, f in zip(pred, gt, phi):
        inside = f.ravel() > 0
        w = f.ravel()[inside]
        mm = p.ravel()[inside]
        if threshold is not None:
            mm = np.where(mm > threshold, 1.0, 0.0)
        gg = g.ravel()[inside]
        tp = np.dot(w, gg * mm)
        fp = np.dot(w, (1 - gg) * mm)
        fn = np.dot(w, gg * (1 - mm))
        tn = np.dot(w, (1 - gg) * (1 - mm))

        def div(a, b):
            return a / b if b > 0 else float("nan")
        out["acc"].append(div(tp + tn, w.sum()))
        out["ppv"].append(div(tp, tp + fp))
        out["tpr"].append(div(tp, tp + fn))
        out["f1"].append(div(2 * tp, 2 * tp + fp + fn))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("threshold", [0.5, 0.3, None])
def test_matches_independent_numpy(threshold):
    rng = np.random.default_rng(7)
    b, h, w = 5, 9, 11
    pred = rng.random((b, 1, h, w)).astype(np.float32)
    gt = (rng.random((b, 1, h, w)) > 0.3).astype(np.float32)
    phi = (rng.random((b, 1, h, w)) > 0.2).astype(np.float32)
    phi[:, :, 0, :] = rng.random((b, 1, w)).astype(np.float32)  # a soft (antialiased) edge row
    phi[4] = 0.0  # image 4: nothing rendered
    got = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(phi), threshold)
    ref = _numpy_reference(pred.astype(np.float64), gt.astype(np.float64), phi.astype(np.float64), threshold)
    for k in ref:
        np.testing.assert_allclose(got[k].numpy(), ref[k], rtol=1e-6, equal_nan=True)
    assert np.isnan(ref["acc"][4])


def test_reconstruction_errors_closed_form():
    target = torch.zeros(2, 3, 2, 2)
    render = torch.zeros(2, 3, 2, 2)
    # image 0: one visible pixel off by 10/255 in R and 20/255 in G (B exact), another visible pixel exact,
    # an invisible pixel off by 1.0 (must not count)
    render[0, 0, 0, 0] = 10 / 255
    render[0, 1, 0, 0] = 20 / 255
    render[0, :, 1, 1] = 1.0
    visible = torch.zeros(2, 1, 2, 2)
    visible[0, 0, 0, 0] = visible[0, 0, 0, 1] = 1.0
    e = reconstruction_errors(target, render, visible)
    # 6 samples (2 pixels x 3 channels): squares 100 + 400 -> rmse sqrt(500/6), mae 30/6
    assert float(e["rmse"][0]) == pytest.approx(math.sqrt(500 / 6), rel=1e-5)
    assert float(e["mae"][0]) == pytest.approx(5.0, rel=1e-5)
    # image 1: empty region -> NaN
    assert math.isnan(float(e["rmse"][1])) and math.isnan(float(e["mae"][1]))


def test_reconstruction_errors_constant_offset():
    target = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    render = target + 0.1
    visible = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    e = reconstruction_errors(target, render, visible)
    np.testing.assert_allclose(e["rmse"].numpy(), 25.5, rtol=1e-4)
    np.testing.assert_allclose(e["mae"].numpy(), 25.5, rtol=1e-4)


def test_summarise_nan_aware():
    s = summarise(torch.tensor([0.5, float("nan"), 1.0, 0.0]))
    assert s.count == 3 and s.skipped == 1
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(math.sqrt(((0.0) ** 2 + 0.5 ** 2 + 0.5 ** 2) / 3))
    assert s.format(2) == "0.50 ± 0.41" and s.format(2, std=False) == "0.50"
    empty = summarise([float("nan")])
    assert empty.count == 0 and empty.skipped == 1 and empty.format() == "-"
    assert empty.as_dict() == {"mean": None, "std": None, "count": 0, "skipped": 1}
    assert summarise(np.array([2.0, 4.0])) == Summary(3.0, 1.0, 2, 0)


def test_bad_input_names_the_argument():
    ok = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="pred"):
        segmentation_metrics(torch.ones(1, 3, 4, 4), ok, ok)
    with pytest.raises(ValueError, match="gt"):
        segmentation_metrics(ok, torch.ones(1, 1, 4, 5), ok)
    with pytest.raises(ValueError, match="region"):
        segmentation_metrics(ok, ok, ok * 2)
    with pytest.raises(TypeError, match="gt"):
        segmentation_metrics(ok, ok.bool(), ok)
    with pytest.raises(ValueError, match="pred"):
        segmentation_metrics(ok * float("nan"), ok, ok)
    with pytest.raises(ValueError, match="threshold"):
        segmentation_metrics(ok, ok, ok, threshold=1.5)
    with pytest.raises(ValueError, match="render"):
        reconstruction_errors(torch.ones(1, 3, 4, 4), torch.ones(2, 3, 4, 4), ok)
    with pytest.raises(ValueError, match="visible"):
        reconstruction_errors(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="values"):
        summarise([[1.0, 2.0]])
    with pytest.raises(ValueError, match="values"):
        summarise([1.0, float("inf")])
    with pytest.raises(TypeError, match="values"):
        summarise(["a"])


def test_paired_difference_closed_form():
    from occrecon.eval import PairedDifference, paired_difference

    d = paired_difference([0.5, 0.7, float("nan"), 0.9], [0.4, 0.8, 0.3, 0.6])  # pairs: +0.1, −0.1, +0.3
    assert d.count == 3 and d.better == 2
    assert math.isclose(d.mean, 0.1, abs_tol=1e-12)
    assert math.isclose(d.sem, 0.2 / math.sqrt(3), rel_tol=1e-9)  # std(ddof=1) of (0.1, −0.1, 0.3) = 0.2
    assert d.format() == "+0.100 ± 0.115 (2/3)"
    assert paired_difference([3.0, 5.0], [4.0, 4.0], lower_is_better=True).better == 1
    one = paired_difference([1.0], [0.5])
    assert one.count == 1 and math.isnan(one.sem) and one.format(1) == "+0.5 (1/1)"
    empty = paired_difference([float("nan")], [1.0])
    assert empty == PairedDifference(empty.mean, empty.sem, 0, 0) and empty.format() == "-"
    assert empty.as_dict() == {"mean": None, "sem": None, "count": 0, "better": 0}
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="infinite"):
        paired_difference([1.0, float("inf")], [1.0, 2.0])
