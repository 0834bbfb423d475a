"""End-to-end training on a tiny synthetic dataset: every stage runs (finite losses, parameters move),
bit-for-bit resume after a kill, refusal of a changed config, NaN stop keeping the last good checkpoint, CLI."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from occrecon.assets import shared_dir
from occrecon.train import loop as loop_mod
from occrecon.train import stages as stages_mod
from occrecon.checkpoint import Checkpoint
from occrecon.train.config import TrainConfig
from occrecon.train.loop import ConfigMismatchError, Trainer, TrainingDiverged

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ORDER = ["init", "unet_pretrain", "em", "mofa"]
ICT = shared_dir() / "assets" / "models" / "ict_narrowface.npz"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from occrecon.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("data") / "tiny"
    # rendered with the ICT model, which has all 68 landmarks (SFM lacks the jaw contour)
    generate_dataset(root, n_synthetic=6, n_real=0, seed=0, progress=False, model_path=ICT)
    return root


def tiny_config(dataset: Path, out: Path, **stages) -> TrainConfig:
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(dataset)]
    cfg.logging.out_dir = str(out)
    for name, iterations in stages.items():
        cfg.stages.stage(name).iterations = iterations
    return cfg


def read_log(out: Path, stage: str) -> list[dict[str, str]]:
    with open(out / "log" / f"{stage}.csv", newline="") as f:
        return list(csv.DictReader(f))


def loss_columns(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def states(out: Path, name: str) -> Checkpoint:
    return Checkpoint.load(out / f"{name}.pt")


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    cfg = tiny_config(dataset, out)
    trainer = Trainer(cfg)
    fresh_encoder = {k: v.clone() for k, v in trainer.nets.encoder.state_dict().items()}
    fresh_unet = {k: v.clone() for k, v in trainer.nets.unet.state_dict().items()}
    trainer.run()
    torch.save({"encoder": fresh_encoder, "unet": fresh_unet}, out / "fresh.pt")
    return out


def _changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_every_stage_runs_with_finite_losses_and_moves_parameters(straight):
    cfg = TrainConfig.from_yaml(straight / "config.yaml")
    fresh = torch.load(straight / "fresh.pt", weights_only=True)
    for stage in ORDER:
        rows = read_log(straight, stage)
        assert [int(r["iteration"]) for r in rows] == list(range(1, cfg.stages.stage(stage).iterations + 1))
        for r in rows:
            terms = {k: float(v) for k, v in r.items() if k not in ("stage", "iteration") and v != ""}
            assert all(torch.isfinite(torch.tensor(list(terms.values())))), (stage, r)
        ck = states(straight, stage)
        assert (ck.stage, ck.iteration) == (stage, cfg.stages.stage(stage).iterations)
        assert ck.nets["encoder_arch"] == "compact" and ck.nets["unet"] == "compact"
        assert ck.nets["image_size"] == 64 and ck.nets["model_path"].startswith("shared:")
    em_rows = read_log(straight, "em")  # cycle 2 UNet + 2 encoder steps, UNet first
    assert em_rows[0]["seg_neighbour"] != "" and em_rows[0]["rec_photometric"] == ""
    assert em_rows[2]["rec_photometric"] != "" and em_rows[2]["seg_neighbour"] == ""
    assert "bce" in read_log(straight, "unet_pretrain")[0]
    init, pre, em, mofa = (states(straight, s) for s in ORDER)
    assert _changed(fresh["encoder"], init.encoder) and not _changed(fresh["unet"], init.unet)
    assert _changed(init.unet, pre.unet) and not _changed(init.encoder, pre.encoder)  # encoder frozen
    assert _changed(pre.unet, em.unet) and _changed(pre.encoder, em.encoder)
    assert _changed(init.encoder, mofa.encoder) and not _changed(em.unet, mofa.unet)
    # learning rates: Adadelta 0.06 for the encoder, 0.06 × 0.06 for the UNet (no decay within 4 steps)
    assert float(em_rows[-1]["lr_encoder"]) == 0.06 and float(em_rows[-1]["lr_unet"]) == pytest.approx(0.0036)
    assert sorted(p.name for p in (straight / "samples").glob("*.png"))[:2] == ["em_0000002.png", "em_0000004.png"]
    assert list((straight / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_rebuilds_with_the_inference_api(straight):
    from occrecon.api import Reconstructor

    em = states(straight, "em")
    rec = Reconstructor.from_checkpoint(straight / "em.pt")
    assert rec.image_size == (64, 64)
    for net in ("encoder", "unet"):
        got = getattr(rec, net).state_dict()
        assert all(torch.equal(got[k], em.__dict__[net][k]) for k in em.__dict__[net]), net
    out = rec(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.theta).all() and bool((out.mask <= out.region + 1e-6).all())


def test_resume_after_kill_is_bit_for_bit(straight, dataset, tmp_path, monkeypatch):
    cfg = tiny_config(dataset, tmp_path)
    real = loop_mod.prepare_batch
    calls = {"n": 0}
    kill_at = 3 + 2 + 3  # the 3rd EM batch: checkpoint em@2 exists, em@3 is logged, then the process "dies"

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at + 1:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "prepare_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).run()
    monkeypatch.setattr(loop_mod, "prepare_batch", real)
    assert [int(r["iteration"]) for r in read_log(tmp_path, "em")] == [1, 2, 3]
    assert (states(tmp_path, "last").stage, states(tmp_path, "last").iteration) == ("em", 2)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(cfg)  # a fresh run must not overwrite the killed one
    Trainer(cfg, resume=True).run()
    for stage in ORDER:
        a, b = states(straight, stage), states(tmp_path, stage)
        for net in ("encoder", "unet"):
            assert all(torch.equal(a.__dict__[net][k], b.__dict__[net][k]) for k in a.__dict__[net]), (stage, net)
        assert loss_columns(read_log(straight, stage)) == loss_columns(read_log(tmp_path, stage)), stage


def test_resume_with_changed_config_is_refused(straight, dataset, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    cfg = tiny_config(dataset, out)
    cfg.seed = 1
    cfg.stages.em.unet_iters = 3
    with pytest.raises(ConfigMismatchError) as e:
        Trainer(cfg, resume=True, allow_config_change=True)
    assert "seed: 0 → 1" in str(e.value) and "stages.em.unet_iters: 2 → 3" in str(e.value)
    cfg = tiny_config(dataset, out)
    cfg.stages.mofa.iterations = 3
    cfg.logging.log_every = 2
    with pytest.raises(ConfigMismatchError, match=r"stages\.mofa\.iterations: 2 → 3  \(harmless\)"):
        Trainer(cfg, resume=True)
    t = Trainer(cfg, resume=True, allow_config_change=True)  # harmless: the run may be extended
    t.run()
    assert [int(r["iteration"]) for r in read_log(out, "mofa")] == [1, 2, 3]


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_nan_stops_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch, poison):
    cfg = tiny_config(dataset, tmp_path, init=4)
    cfg.stages.order = ["init"]
    real = stages_mod.init_loss
    calls = {"n": 0}

    def poisoned(target, render, region, theta, *args, **kwargs):
        total, terms = real(target, render, region, theta, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            if poison == "loss":
                terms = dict(terms, landmark=terms["landmark"] * float("nan"))
            else:  # finite value 0, gradient 0 · d sqrt(x)/dx at 0 = 0 · inf = NaN
                terms = dict(terms, landmark=terms["landmark"] + 0.0 * torch.sqrt(theta * 0.0).sum())
            total = sum(terms.values())
        return total, terms

    monkeypatch.setattr(stages_mod, "init_loss", poisoned)
    what = "term 'landmark' is nan" if poison == "loss" else "the gradient of the encoder is NaN/Inf"
    with pytest.raises(TrainingDiverged, match=rf"stage init, iteration 3: {what}") as e:
        Trainer(cfg).run()
    assert "iteration 2" in str(e.value)  # names the last good checkpoint
    last = states(tmp_path, "last")
    assert (last.stage, last.iteration) == ("init", 2)
    assert all(torch.isfinite(v).all() for v in last.encoder.values() if v.is_floating_point())
    assert not (tmp_path / "init.pt").exists()
    monkeypatch.setattr(stages_mod, "init_loss", real)
    Trainer(cfg, resume=True).run()  # the kept checkpoint resumes
    assert [int(r["iteration"]) for r in read_log(tmp_path, "init")] == [1, 2, 3, 4]
    assert states(tmp_path, "init").iteration == 4


def test_cli_train_command(dataset, tmp_path, capsys):
    from occrecon.cli import main

    cfg = tiny_config(dataset, tmp_path / "unused", init=1)
    cfg.stages.order = ["init"]
    cfg.to_yaml(tmp_path / "c.yaml")
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 0
    assert "init: " in capsys.readouterr().out
    assert states(tmp_path / "out", "init").iteration == 1
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 1  # exists: refused
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--resume"]) == 0  # nothing left
