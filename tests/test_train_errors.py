"""User errors of ``occrecon train`` and ``Trainer``: each is ONE error naming the file or the config key, and the
command prints it as one line on stderr (no traceback) with exit status 1. None of these runs a training step."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from occrecon.cli import main
from occrecon.checkpoint import Checkpoint, CheckpointError
from occrecon.train.config import ConfigError, TrainConfig
from occrecon.train.loop import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(out: Path) -> TrainConfig:
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(out.parent / "no-data-needed")]
    cfg.logging.out_dir = str(out)
    return cfg


def run_cli(capsys, cfg: TrainConfig, tmp_path: Path, *extra: str) -> str:
    """``occrecon train`` on ``cfg``: asserts status 1 and one stderr line without a traceback; returns the line."""
    cfg.to_yaml(tmp_path / "c.yaml")
    capsys.readouterr()
    assert main(["train", str(tmp_path / "c.yaml"), "--out", cfg.logging.out_dir, *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("occrecon train: error: ")
    return err.rstrip("\n")


def _checkpoint(cfg: TrainConfig, **weights) -> Checkpoint:
    enc = {"w": torch.ones(3)}
    enc.update(weights)
    return Checkpoint(stage="init", iteration=1, config=cfg.to_dict(), nets={}, encoder=enc)


@pytest.mark.parametrize("damage, phrase", [
    ("text", "not a torch checkpoint (neither"),
    ("truncated", "not a torch checkpoint archive, or a truncated one"),
    ("folder", "is a folder, not a checkpoint file"),
    ("nan", "the tensor encoder.w holds NaN/Inf values"),
])
def test_resume_from_a_damaged_checkpoint_is_one_line(capsys, tmp_path, damage, phrase):
    out = tmp_path / "run"
    cfg = tiny(out)
    last = out / "last.pt"
    out.mkdir()
    if damage == "text":
        last.write_text("iteration: 3\n", encoding="utf-8")
    elif damage == "truncated":
        _checkpoint(cfg).save(last)
        last.write_bytes(last.read_bytes()[:300])
    elif damage == "folder":
        last.mkdir()
    else:
        _checkpoint(cfg, w=torch.tensor([1.0, float("nan"), 0.0])).save(last)
    line = run_cli(capsys, cfg, tmp_path, "--resume")
    assert phrase in line and str(last) in line, line


def test_refused_resume_lists_the_differences_on_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    cfg = tiny(out)
    old = tiny(out)
    old.seed, old.stages.em.unet_iters = 1, 3
    _checkpoint(old).save(out / "last.pt")
    line = run_cli(capsys, cfg, tmp_path, "--resume")
    assert "the config differs from the checkpoint's: seed: 1 → 0; stages.em.unet_iters: 3 → 2; only keys" in line


@pytest.mark.parametrize("change, phrase", [
    (lambda c: setattr(c.optim, "encoder_lr", float("inf")), "optim.encoder_lr: must be a finite number, got inf"),
    (lambda c: setattr(c.model, "path", "/nowhere/model.npz"), "model.path: "),
    (lambda c: setattr(c.nets, "encoder_scales", {"nose": 2.0}), "nets: scales: unknown group 'nose'"),
    (lambda c: setattr(c.losses, "overrides", {"neighbour_k": 4}), "losses.overrides: neighbour_k must be an odd"),
    (lambda c: setattr(c, "init_from", "/nowhere/init.pt"), "init_from: path: no checkpoint file /nowhere/init.pt"),
    (lambda c: c.data.train.clear(), "data.train: no dataset folder given"),
])
def test_bad_config_values_are_one_line(capsys, tmp_path, change, phrase):
    cfg = tiny(tmp_path / "run")
    change(cfg)
    line = run_cli(capsys, cfg, tmp_path)
    assert phrase in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_device_is_one_line(capsys, tmp_path):
    cfg = tiny(tmp_path / "run")
    cfg.device = "cuda:1"
    assert run_cli(capsys, cfg, tmp_path).endswith("device: 'cuda:1' requested but CUDA is not available")


def test_mofa_from_init_without_init_pt_fails_before_training(tmp_path):
    cfg = tiny(tmp_path / "run")
    cfg.stages.order = ["unet_pretrain", "mofa"]  # nothing in this run writes init.pt
    with pytest.raises(FileNotFoundError, match=r"stages\.mofa\.start_from: 'init' needs .*run/init\.pt"):
        Trainer(cfg, dataset=[{}])
    cfg.stages.order = ["init", "mofa"]
    cfg.stages.init.iterations = 0  # init is skipped
    with pytest.raises(FileNotFoundError, match=r"needs .*run/init\.pt"):
        Trainer(cfg, dataset=[{}])
    cfg.stages.init.iterations = 2  # init runs first and writes it: accepted
    trainer = Trainer(cfg, dataset=[{}])
    (tmp_path / "run" / "init.pt").write_text("junk", encoding="utf-8")  # what mofa then reads
    with pytest.raises(CheckpointError, match=r"needs a readable .*init\.pt: path: cannot read checkpoint"):
        trainer._mofa_source()


def test_config_error_type_for_bad_losses_preset():
    with pytest.raises(ConfigError, match=r"losses\.preset"):
        from occrecon.train.loop import build_loss_config

        build_loss_config(TrainConfig.from_dict({"losses": {"preset": "nonsense"}}), perceptual=False)
