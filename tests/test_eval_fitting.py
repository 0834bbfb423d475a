"""``occrecon evaluate-fit``: its statistics and landmark metric in closed form, and the command end to end on two
held-out real faces."""
from __future__ import annotations

import json

import numpy as np
import pytest

from occrecon import assets
from occrecon.cli import main
from occrecon.eval.fitting import landmark_error, median_se, prepare_cases


def test_median_se():
    m, se, n = median_se([3.0, 1.0, float("nan"), 2.0])
    assert (m, n) == (2.0, 3) and se > 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    m, se, n = median_se(x)
    # the median of N normal samples has standard error √(π/2)/√N
    assert se == pytest.approx(np.sqrt(np.pi / 2) / np.sqrt(4000), rel=0.2)
    assert np.isnan(median_se([float("nan")])[0]) and median_se([])[2] == 0


def test_landmark_error_in_photo_pixels_over_the_inter_ocular_distance():
    ref = np.zeros((1, 68, 2))
    ref[0, :, 0] = np.arange(68)
    ref[0, 36], ref[0, 45] = (0.0, 0.0), (40.0, 0.0)  # outer eye corners 40 px apart
    ref[0, 36:42] = (0.0, 0.0)
    ref[0, 42:48] = (30.0, 0.0)  # eye centres 30 px apart
    ref[0, 45] = (40.0, 0.0)
    m = np.array([[[2.0, 0.0, 10.0], [0.0, 2.0, -4.0]]])  # photo -> crop: scale 2, shift
    model_crop = ref * 2 + np.array([10.0, -4.0]) + np.array([4.0, 0.0])  # 2 photo px off everywhere
    mapped = np.ones(68, bool)
    e_iod, e_centres = landmark_error(model_crop, m, ref, mapped)
    mean_eye_centre_dist = np.linalg.norm(ref[0, 36:42].mean(0) - ref[0, 42:48].mean(0))
    assert e_iod[0] == pytest.approx(2.0 / 40.0) and e_centres[0] == pytest.approx(2.0 / mean_eye_centre_dist)
    mapped[:10] = False
    model_crop[0, :10] += 100.0  # unmapped points do not count
    assert landmark_error(model_crop, m, ref, mapped)[0][0] == pytest.approx(2.0 / 40.0)


@pytest.mark.skipif(assets.shared_dir(required=False) is None
                    or not (assets.shared_dir() / "assets/faces/train/meta.jsonl").is_file(),
                    reason="no real-face folder")
def test_evaluate_fit_command_end_to_end(tmp_path, capsys):
    fig = tmp_path / "fig.png"
    assert main(["evaluate-fit", "--limit", "2", "--preset", "fast", "--out", str(tmp_path), "--figure",
                 str(fig)]) == 0
    out = capsys.readouterr().out
    assert "Landmark error / IOD" in out and "all of Φ is face" in out and fig.is_file()
    res = json.loads((tmp_path / "fit_eval.json").read_text())
    assert len(res["ids"]["clean"]) == 2
    fit, mean = res["clean"]["fit"], res["clean"]["mean face (θ=0)"]
    assert all(f < m for f, m in zip(fit["lm_iod"], mean["lm_iod"]))  # the fit beats the mean face on both
    assert (tmp_path / "fit_eval.md").read_text().startswith("Faces: 2 clean")
    # --no-fit: the same mean face and encoder values, no fitting-engine row
    quick = tmp_path / "quick"
    assert main(["evaluate-fit", "--limit", "2", "--no-fit", "--out", str(quick)]) == 0
    q = json.loads((quick / "fit_eval.json").read_text())
    assert set(q["clean"]) == {"mean face (θ=0)", "encoder"}
    for version in ("clean", "occluded"):
        for m in q[version]:
            for k in ("lm_iod", "rmse", "f1"):
                if k in res[version][m]:
                    assert q[version][m][k] == res[version][m][k], (version, m, k)
    capsys.readouterr()
    assert main(["evaluate-fit", "--no-fit", "--no-encoder", "--out", str(quick)]) == 2
    assert "--no-fit" in capsys.readouterr().err


@pytest.mark.skipif(assets.shared_dir(required=False) is None
                    or not (assets.shared_dir() / "assets/faces/train/meta.jsonl").is_file(),
                    reason="no real-face folder")
def test_prepare_cases_ground_truth():
    """Clean photo: the truth is the whole landmark region, known there only. Occluded photo: the visible face is
    known and inside the labelled pixels, and the occluders add labelled not-face pixels."""
    from occrecon.data.faces import identity_split, read_face_folder

    _, held = identity_split(read_face_folder(None), 0.2, 0)
    held = [r for r in held if "possibly_occluded" not in r.flags][:3]
    pairs, _ = prepare_cases(held, 128, seed=0)
    checked = 0
    for clean, occ in pairs:
        np.testing.assert_array_equal(clean.gt_visible, clean.gt_known)
        assert clean.gt_visible.sum() > 0.2 * 128 * 128
        if occ is None:
            continue
        assert (occ.gt_visible <= occ.gt_known).all()
        assert (occ.gt_known - occ.gt_visible).sum() > 0  # occluder pixels: labelled, not face
        checked += 1
    assert checked >= 1
