"""Checkpoints: atomic writes (a failure mid-write keeps the old file), format checks, RNG capture/restore."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from occrecon.train import checkpoint as ckmod
from occrecon.train.checkpoint import FORMAT, Checkpoint, CheckpointError, atomic_save, capture_rng, restore_rng


def _ckpt(iteration: int) -> Checkpoint:
    enc = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(enc.weight, float(iteration))
    return Checkpoint(stage="init", iteration=iteration, config={"seed": 0}, nets={"encoder_arch": "compact"},
                      encoder=enc.state_dict(), metrics={"loss": 0.5})


def test_save_load_round_trip(tmp_path):
    path = _ckpt(7).save(tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)  # everything in it is weights_only-loadable
    assert raw["format"] == FORMAT and raw["iteration"] == 7 and raw["unet"] is None
    back = Checkpoint.load(path)
    assert back.stage == "init" and back.iteration == 7 and back.metrics == {"loss": 0.5}
    assert torch.equal(back.encoder["weight"], torch.full((2, 3), 7.0))
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_failure_mid_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _ckpt(1).save(path)
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f):  # write part of the file, then fail like a full disk
        real_save(obj, f)
        f.truncate(10)
        raise OSError("No space left on device")

    monkeypatch.setattr(ckmod.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        _ckpt(2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert Checkpoint.load(path).iteration == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_save_creates_folders(tmp_path):
    p = atomic_save({"a": torch.ones(2)}, tmp_path / "x" / "y.pt")
    assert torch.equal(torch.load(p, weights_only=True)["a"], torch.ones(2))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        Checkpoint.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        Checkpoint.load(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an occrecon-checkpoint-v1"):
        Checkpoint.load(tmp_path / "other.pt")
    d = _ckpt(1).to_dict()
    del d["rng"]
    torch.save(d, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks the keys"):
        Checkpoint.load(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="stage"):
        Checkpoint(stage="warmup", iteration=0, config={}, nets={}, encoder={})
    with pytest.raises(CheckpointError, match="iteration"):
        Checkpoint(stage="em", iteration=-1, config={}, nets={}, encoder={})


def test_rng_capture_restore_survives_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = (random.random(), np.random.standard_normal(3), torch.rand(4))
    atomic_save({"rng": state}, tmp_path / "r.pt")
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert random.random() == expected[0]
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert torch.equal(torch.rand(4), expected[2])
    with pytest.raises(CheckpointError, match="state"):
        restore_rng({"torch": torch.get_rng_state()})
