"""``occrecon data fit``: the fitting engine as the teacher of a dataset folder — recovers the landmarks of rendered
samples, deterministic, resumable after a kill, refuses a folder made with other settings."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from occrecon import assets
from occrecon.cli import main
from occrecon.data.dataset import FaceDataset
from occrecon.data.generate import generate_dataset
from occrecon.fit.dataset import FitDatasetError, fit_dataset, read_fit

pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitds") / "d"
    path = assets.shared_dir() / "assets/models/ict_narrowface.npz"
    generate_dataset(root, 5, 0, seed=4, model_path=path, workers=1, progress=False, occluded_fraction=0.5,
                     appearance="legacy")
    return root


def _model():
    return assets.shared_dir() / "assets/models/ict_narrowface.npz"


def test_the_teacher_reproduces_the_samples_landmarks(dataset, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(dataset, root)
    res = fit_dataset(root, _model(), preset="fast", batch_size=2)
    assert res["samples"] == 5 and res["fitted"] == 5 and res["resumed"] == 0
    fit = read_fit(root)
    assert fit["theta"].shape == (5, sum(k for _, k in fit["info"]["layout"])) and fit["theta"].dtype == np.float32
    assert fit["ids"] == [r["id"] for r in FaceDataset(root).records]
    # independent reference: the dataset's ground-truth landmarks of the rendered samples
    from occrecon.morphable import load_model
    from occrecon.render import FaceRenderer
    from occrecon.render.camera import default_camera

    model = load_model(_model())
    renderer = FaceRenderer(model, camera=default_camera(224))
    with torch.no_grad():
        lm = renderer(torch.from_numpy(fit["theta"])).landmarks
    ds = FaceDataset(root)
    gt = torch.stack([ds[i]["landmarks"] for i in range(5)])
    err = (lm - gt).norm(dim=-1).nanmean(1)
    iod = (gt[:, 36] - gt[:, 45]).norm(dim=-1)
    assert (err / iod).max() < 0.05, err / iod
    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(root / "fit/masks" / f"{fit['ids'][0]}_fit_mask.png"))
    assert mask.shape == (224, 224) and mask.max() == 255


def test_resumes_after_a_kill_with_the_same_bytes(dataset, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    shutil.copytree(dataset, full)
    shutil.copytree(dataset, cut)
    fit_dataset(full, _model(), batch_size=2)
    fit_dataset(cut, _model(), batch_size=2)
    # a run killed during its last chunk: that chunk and the assembled arrays are missing, info says incomplete
    (cut / "fit/chunks/000004.npz").unlink()
    for k in ("theta", "loss", "converged", "diverged"):
        (cut / f"fit/{k}.npy").unlink()
    info = json.loads((cut / "fit/info.json").read_text())
    (cut / "fit/info.json").write_text(json.dumps({**info, "complete": False}))
    with pytest.raises(FitDatasetError, match="incomplete"):
        read_fit(cut)
    res = fit_dataset(cut, _model(), batch_size=2)
    assert res["resumed"] == 2 and res["fitted"] == 1
    for k in ("theta", "loss", "converged", "diverged"):
        assert (cut / f"fit/{k}.npy").read_bytes() == (full / f"fit/{k}.npy").read_bytes(), k
    with pytest.raises(FitDatasetError, match="batch_size"):
        fit_dataset(cut, _model(), batch_size=3)
    res = fit_dataset(cut, _model(), batch_size=3, overwrite=True)
    assert res["fitted"] == 5 and read_fit(cut)["info"]["batch_size"] == 3


def test_data_fit_command_and_its_errors(dataset, tmp_path, capsys):
    root = tmp_path / "d"
    shutil.copytree(dataset, root)
    assert main(["data", "fit", str(root), "--model", str(_model()), "--batch-size", "5"]) == 0
    assert "fitted 5 samples" in capsys.readouterr().out
    assert main(["data", "fit", str(root), "--model", str(_model()), "--batch-size", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size" in err and "--overwrite" in err
    assert main(["data", "fit", str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="occrecon data fit"):
        read_fit(tmp_path)


def test_samples_written_as_held_out_are_not_fitted_unless_asked(dataset, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(dataset, root)
    meta = [json.loads(line) for line in (root / "meta.jsonl").read_text().splitlines()]
    for i, r in enumerate(meta):
        r["split"] = "held_out" if i in (1, 3) else "train"
    (root / "meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in meta))
    res = fit_dataset(root, _model(), batch_size=2)
    assert res["samples"] == 3
    assert read_fit(root)["ids"] == [meta[i]["id"] for i in (0, 2, 4)]
    # the trainer's teacher: NaN rows for the samples the fit skipped
    ds = FaceDataset(root, teacher=True)
    assert [bool(np.isnan(t).all()) for t in ds.teacher] == [False, True, False, True, False]
    with pytest.raises(FitDatasetError, match="ids"):
        fit_dataset(root, _model(), batch_size=2, held_out=True)
    assert fit_dataset(root, _model(), batch_size=2, held_out=True, overwrite=True)["samples"] == 5
    for r in meta:
        r["split"] = "held_out"
    (root / "meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in meta))
    with pytest.raises(ValueError, match="held out"):
        fit_dataset(root, _model(), batch_size=2)
