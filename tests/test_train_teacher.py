"""The fitting-engine teacher in training: the dataset gives each sample θ* with its augmentation, the batch moves
the teacher's vertices with it (checked against the dataset's own augmented landmarks), and the init stage trains
with the teacher terms when the config weighs them."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from occrecon.assets import shared_dir
from occrecon.data.dataset import FIT_FORMAT, FaceDataset
from occrecon.morphable import load_model
from occrecon.render import FaceRenderer
from occrecon.render.camera import default_camera
from occrecon.train import TrainConfig
from occrecon.train.config import ConfigError
from occrecon.train.data import prepare_batch
from occrecon.train.loop import Trainer
from occrecon.train.stages import _teacher_weights, teacher_terms

pytestmark = pytest.mark.skipif(shared_dir(required=False) is None, reason="shared assets not present")
ICT = shared_dir() / "assets" / "models" / "ict_narrowface.npz"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Rendered samples whose θ is known, with the ground-truth θ written as their teacher (the fit/ format)."""
    from occrecon.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("teacher") / "d"
    generate_dataset(root, n_synthetic=6, n_real=0, seed=2, progress=False, model_path=ICT, appearance="legacy")
    ids = json.loads((root / "theta_ids.json").read_text())
    theta = np.load(root / "theta.npy")
    model = load_model(ICT)
    fit = root / "fit"
    fit.mkdir()
    np.save(fit / "theta.npy", theta.astype(np.float32))
    for k, v in (("loss", np.zeros(6, np.float32)), ("converged", np.ones(6, bool)), ("diverged", np.zeros(6, bool))):
        np.save(fit / f"{k}.npy", v)
    (fit / "info.json").write_text(json.dumps({"format": FIT_FORMAT, "model": str(ICT), "albedo_source": "x",
                                               "preset": "ground truth", "batch_size": 6, "complete": True,
                                               "layout": [[n, k] for n, k in model.layout.entries], "ids": ids}))
    return root


def test_the_teacher_moves_with_the_augmentation_like_the_landmarks(dataset):
    """Teacher θ* = the ground truth: at the landmark vertices, the targets the batch builds from θ*, the sample's
    augmentation affine and flip (rescaled to the training size) are the dataset's own augmented landmarks."""
    torch.manual_seed(0)
    ds = FaceDataset(dataset, augment=True, teacher=True)
    items = [ds[i] for i in range(6)]
    assert any(bool(it["flip"]) for it in items) and any(not bool(it["flip"]) for it in items)
    sample = {k: torch.stack([it[k] for it in items]) for k in ("image", "landmarks", "mask", "affine", "flip",
                                                                 "teacher_theta")}
    size = 96
    batch = prepare_batch(sample, torch.device("cpu"), size)
    model = load_model(ICT)
    renderer = FaceRenderer(model, camera=default_camera(size))
    from occrecon.losses import teacher_targets

    _, _, mirror = _teacher_weights(renderer)
    with torch.no_grad():
        p_t = renderer.camera.project(renderer.camera_vertices(batch.teacher_theta))
    targets = teacher_targets(p_t, batch.affine, batch.flip, mirror)
    lm_vertices = model.landmarks.long()
    mapped = lm_vertices >= 0
    got = targets[:, lm_vertices[mapped]]
    want = batch.landmarks[:, mapped]
    iod = (want[:, 36] - want[:, 45]).norm(dim=-1)
    err = (got - want).norm(dim=-1).mean(1) / iod
    assert (err < 0.03).all(), err  # the mirror map is nearest-vertex: a small residue on flipped samples
    # and with no augmentation the targets are the teacher's own projection
    plain = FaceDataset(dataset, augment=False, teacher=True)[0]
    assert torch.equal(plain["affine"], torch.eye(2, 3)) and not bool(plain["flip"])


def test_teacher_terms_are_zero_at_the_teacher_and_positive_elsewhere(dataset):
    ds = FaceDataset(dataset, augment=False, teacher=True)
    sample = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "landmarks", "mask", "affine", "flip",
                                                                      "teacher_theta")}
    batch = prepare_batch(sample, torch.device("cpu"), 64)
    model = load_model(ICT)

    class N:
        renderer = FaceRenderer(model, camera=default_camera(64))

    w = type("W", (), {"teacher_vertex": 1.0, "teacher_landmark": 2.0})()
    at = teacher_terms(N, batch, N.renderer.camera_vertices(batch.teacher_theta), w)
    assert set(at) == {"teacher_vertex", "teacher_landmark"} and all(v.item() < 1e-10 for v in at.values())
    off = batch.teacher_theta.clone()
    off[:, model.layout.slice("trans")] += 0.5
    away = teacher_terms(N, batch, N.renderer.camera_vertices(off), w)
    assert all(v.item() > 1e-5 for v in away.values())
    batch.teacher_theta[1] = float("nan")  # a sample without a teacher adds nothing and stays finite
    theta = off.clone().requires_grad_()
    total = sum(teacher_terms(N, batch, N.renderer.camera_vertices(theta), w).values())
    total.backward()
    assert torch.isfinite(theta.grad).all() and (theta.grad[1] == 0).all()


def _config(dataset: Path, out: Path) -> TrainConfig:
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(dataset)]
    cfg.model.path = str(ICT)
    cfg.logging.out_dir = str(out)
    cfg.logging.tensorboard = False
    cfg.stages.order = ["init"]
    cfg.stages.init.iterations = 3
    cfg.losses.overrides = {"init.teacher_vertex": 10.0, "init.teacher_landmark": 10.0}
    return cfg


def test_the_init_stage_trains_with_the_teacher(dataset, tmp_path):
    cfg = _config(dataset, tmp_path / "run")
    with pytest.raises(ConfigError, match="data.teacher"):
        Trainer(cfg)
    cfg.data.teacher = True
    Trainer(cfg).run()
    with open(tmp_path / "run" / "log" / "init.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(math.isfinite(float(r["teacher_vertex"])) and float(r["teacher_vertex"]) > 0 for r in rows)
    # a training folder without a teacher is named
    bare = tmp_path / "bare"
    shutil.copytree(dataset, bare)
    shutil.rmtree(bare / "fit")
    cfg2 = _config(bare, tmp_path / "run2")
    cfg2.data.teacher = True
    with pytest.raises(Exception, match="occrecon data fit"):
        Trainer(cfg2)


@pytest.mark.parametrize("mask", ["region", "ground_truth", "skin"])
def test_the_mofa_baselines_run_in_the_tiny_configuration(dataset, tmp_path, mask):
    """MoFA (M = Φ), Supervised MoFA (M = Φ · the ground truth) and the Deep3D-style skin mask, as configs."""
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(dataset)]
    cfg.model.path = str(ICT)
    cfg.logging.out_dir = str(tmp_path / "run")
    cfg.logging.tensorboard = False
    cfg.stages.order = ["init", "mofa"]
    cfg.stages.init.iterations = 2
    cfg.stages.mofa.iterations = 2
    cfg.stages.mofa.mask = mask
    Trainer(cfg).run()
    with open(tmp_path / "run" / "log" / "mofa.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)


def test_the_supervised_mofa_mask_is_the_ground_truth_inside_phi(dataset):
    from occrecon.nets import Encoder
    from occrecon.train.stages import mofa_step

    ds = FaceDataset(dataset)
    sample = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ("image", "landmarks", "mask")}
    batch = prepare_batch(sample, torch.device("cpu"), 64)
    model = load_model(ICT)
    enc = Encoder(model.layout, arch="compact")

    class N:
        encoder = encoder_train = enc
        renderer = FaceRenderer(model, camera=default_camera(64))
        layout = model.layout
        perceptual = None

    from occrecon.losses import LossConfig

    cfg = LossConfig.from_dict({**LossConfig().to_dict(), "perceptual_ex": False, "perceptual_in": False,
                                "reconstruction": {**LossConfig().to_dict()["reconstruction"], "perceptual": 0.0}})
    gt = mofa_step(N, batch, cfg, mask_source="ground_truth")
    region = N.renderer(enc(batch.image)).region.detach()
    assert torch.equal(gt.mask, region * batch.mask)
    assert torch.equal(mofa_step(N, batch, cfg).mask, region)
    cfg_bad = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg_bad.stages.mofa.mask = "labels"
    with pytest.raises(ConfigError, match="stages.mofa.mask"):
        cfg_bad.validate()


def test_the_real_face_recipe_configs_run_in_the_tiny_configuration(dataset, tmp_path):
    """configs/real_faces*.yaml as they are, shrunk to a few steps on a tiny dataset with a teacher: the main run
    (init with the teacher, UNet pretraining, EM, MoFA), then Supervised MoFA and the skin mask from its init.pt."""

    def shrink(name, out, init_from=None):
        cfg = TrainConfig.from_yaml(CONFIGS / f"{name}.yaml")
        cfg.data.train = [str(dataset)]
        cfg.data.image_size = 64
        cfg.nets.perceptual = None
        cfg.logging.out_dir = str(out)
        cfg.logging.tensorboard = False
        cfg.logging.log_every = cfg.logging.sample_every = cfg.logging.checkpoint_every = 1
        for stage in cfg.stages.order:
            st = cfg.stages.stage(stage)
            st.iterations, st.batch_size = 2, 2
        if "em" in cfg.stages.order:
            cfg.stages.em.iterations, cfg.stages.em.encoder_iters, cfg.stages.em.unet_iters = 4, 2, 2
        if init_from is not None:
            cfg.init_from = str(init_from)
        return cfg

    main = tmp_path / "real"
    Trainer(shrink("real_faces", main)).run()
    assert all((main / f"{s}.pt").is_file() for s in ("init", "unet_pretrain", "em", "mofa"))
    with open(main / "log" / "init.csv", newline="") as f:
        assert "teacher_vertex" in next(csv.DictReader(f))
    for name in ("real_faces_supervised_mofa", "real_faces_skin"):
        Trainer(shrink(name, tmp_path / name, init_from=main / "init.pt")).run()
        assert (tmp_path / name / "mofa.pt").is_file()
    # the all-faces experiment is the same recipe on another dataset folder, nothing else
    a, b = (TrainConfig.from_yaml(CONFIGS / f"{n}.yaml").to_dict() for n in ("real_faces", "real_faces_all"))
    assert (a["data"].pop("train"), b["data"].pop("train")) == (["runs/data/real"], ["runs/data/real_all"])
    assert (a["logging"].pop("out_dir"), b["logging"].pop("out_dir")) == ("runs/real", "runs/real_all")
    assert a == b


def test_evaluate_has_the_fitting_engine_as_a_row(dataset):
    """``NAME=fit:fast``: each sample fitted from the mean face with its landmarks; on renders of the model it
    reconstructs far better than the mean face (θ = 0, the same model, an encoder with a zero head)."""
    from occrecon.api import Reconstructor
    from occrecon.cli.evaluate import evaluate
    from occrecon.eval.evaluate import evaluate_reconstructor, parse_checkpoint_arg, read_eval_dataset
    from occrecon.nets import Encoder

    spec = parse_checkpoint_arg("Fit=fit:fast")
    assert spec.fit == "fast" and parse_checkpoint_arg("F=fit").fit == "fast"
    with pytest.raises(ValueError, match="fit preset"):
        parse_checkpoint_arg("F=fit:slowest")
    res = evaluate(dataset, [spec], model_path=ICT, batch_size=3)
    fit = np.array(res["methods"]["Fit"]["per_image"]["rmse"], float)
    assert res["methods"]["Fit"]["checkpoint"] == "fitting engine (fast)"
    model = load_model(ICT)
    mean_face = Reconstructor(model, Encoder(model.layout, arch="compact"), None,
                              FaceRenderer(model, camera=default_camera(224)))
    zero = evaluate_reconstructor(mean_face, read_eval_dataset(dataset))["rmse"]
    assert np.isfinite(fit).all() and np.median(fit) < 0.5 * np.median(zero), (fit, zero)
