"""Checkpoints: atomic writes (a failure mid-write keeps the old file), format checks, RNG capture/restore."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from occrecon import checkpoint as ckmod
from occrecon.checkpoint import FORMAT, Checkpoint, CheckpointError, atomic_save, capture_rng, restore_rng


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


def test_atomic_save_gives_the_mode_of_a_plain_open(tmp_path):
    """Not mkstemp's 0600: an exported checkpoint that ships must be readable by others (umask 022: 0644)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        p = atomic_save({"a": torch.ones(1)}, tmp_path / "m.pt")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_save({}, tmp_path / "n.pt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


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


def _flip_bit_in_record(path, record: str) -> None:
    """Flip one bit in the middle of the data of zip record ``record`` (a tensor's storage)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(record))
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind, phrase", [
    ("text", "not a torch checkpoint (neither torch.save's zip archive nor a pickle)"),
    ("latin1", "not a torch checkpoint (neither"),
    ("empty", "an empty file, not a checkpoint"),
    ("truncated", "not a torch checkpoint archive, or a truncated one"),
    ("bit_flip", "fails its CRC-32 check"),
    ("folder", "is a folder, not a checkpoint file"),
    ("missing", "no checkpoint file"),
])
def test_load_refuses_a_damaged_file_with_one_error_naming_it(tmp_path, kind, phrase):
    path = tmp_path / "last.pt"
    good = Checkpoint(stage="em", iteration=3, config={}, nets={}, encoder=torch.nn.Linear(40, 30).state_dict())
    if kind == "text":
        path.write_text("stage: em\niteration: 3\n", encoding="utf-8")
    elif kind == "latin1":
        path.write_bytes("itération échouée\xff\x00".encode("latin-1"))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good.save(path)
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif kind == "bit_flip":  # in the weights: torch.load alone would return altered weights without a word
        good.save(path)
        _flip_bit_in_record(path, "data/0")
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(CheckpointError) as e:
        Checkpoint.load(path)
    msg = str(e.value)
    assert phrase in msg and str(path) in msg and "\n" not in msg, msg
    assert type(e.value) is CheckpointError and e.value.__cause__ is None


def test_load_refuses_nan_or_inf_in_weights_and_optimiser_states(tmp_path):
    enc = torch.nn.Linear(3, 2)
    with torch.no_grad():
        enc.weight[1, 2] = float("nan")
    Checkpoint(stage="init", iteration=1, config={}, nets={}, encoder=enc.state_dict()).save(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan\.pt: the tensor encoder\.weight holds NaN/Inf"):
        Checkpoint.load(tmp_path / "nan.pt")
    opt = {"state": {0: {"square_avg": torch.tensor([1.0, float("inf")])}}, "param_groups": []}
    Checkpoint(stage="init", iteration=1, config={}, nets={}, encoder=torch.nn.Linear(3, 2).state_dict(),
               optimizers={"encoder": opt}).save(tmp_path / "inf.pt")
    with pytest.raises(CheckpointError, match=r"inf\.pt: the tensor optimizers\.encoder\.state\.0\.square_avg"):
        Checkpoint.load(tmp_path / "inf.pt")
    d = _ckpt(1).to_dict()
    d["encoder"] = {"weight": "not a tensor"}
    torch.save(d, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"odd\.pt: encoder is not a state_dict"):
        Checkpoint.load(tmp_path / "odd.pt")


def test_remove_stale_temp_files_only_removes_atomic_save_leftovers(tmp_path):
    stale = [tmp_path / ".last.pt.k3x_9a0q.tmp", tmp_path / ".init.pt.abcdefgh.tmp"]
    kept = [tmp_path / "last.pt", tmp_path / "notes.tmp", tmp_path / ".last.pt.tmp", tmp_path / ".last.pt.ABCDEFGH.tmp",
            tmp_path / ".x.pt.abcdefghi.tmp", tmp_path / "sub" / ".em.pt.abcdefgh.tmp"]
    for p in stale + kept:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"partial")
    (tmp_path / ".em.pt.folder00.tmp").mkdir()  # a folder with the pattern's name is not atomic_save's
    (tmp_path / ".mofa.pt.link0000.tmp").symlink_to(tmp_path / "last.pt")
    assert ckmod.remove_stale_temp_files(tmp_path) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert (tmp_path / ".em.pt.folder00.tmp").is_dir() and (tmp_path / ".mofa.pt.link0000.tmp").is_symlink()
    assert ckmod.remove_stale_temp_files(tmp_path / "absent") == []
