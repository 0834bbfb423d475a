"""Kill -9 of a training process at the dangerous moments, then ``resume``: the stage boundary (between the two
checkpoint writes at the end of a stage), a checkpoint write in progress (its temp file half written), a log row
half written. After the resume the run must end with the checkpoints and logs of an uninterrupted run, and no
stray temp file. Each kill is a real SIGKILL of a small training subprocess (``configs/tiny.yaml`` cut down to
``init`` → ``mofa``, two iterations each, ``mofa.start_from: init``), sent from inside it by a patched function.
"""
from __future__ import annotations

import contextlib
import csv
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from occrecon.assets import shared_dir
from occrecon.checkpoint import Checkpoint
from occrecon.train.config import TrainConfig
from occrecon.train.loop import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ICT = shared_dir() / "assets" / "models" / "ict_narrowface.npz"
FINAL = ("init.pt", "mofa.pt", "last.pt")

# The child: train the config at argv[1]; SIGKILL itself at the point named by argv[2:] = (mode, stage, n):
#   after  — right after the n-th of the two checkpoint writes at the end of `stage` has completed;
#   during — inside the n-th of those writes, once half of its temp file is on disk;
#   csv    — inside the write of the log row of iteration n of `stage`, after its first 3 characters.
CHILD = r"""
import os, signal, sys
from pathlib import Path
from occrecon import checkpoint as ck
from occrecon.train import logs
from occrecon.train.config import TrainConfig
from occrecon.train.loop import Trainer
import torch

torch.set_num_threads(1)  # as the parent's runs (one_thread): CPU kernels' reduction order depends on the threads
cfg = TrainConfig.from_yaml(sys.argv[1])
mode, stage, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
writes = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_save, real_torch_save, real_append = ck.Checkpoint.save, ck.torch.save, logs.CsvLog.append

def half_written(obj, f):
    real_torch_save(obj, f)
    f.truncate(f.tell() // 2)
    f.flush()
    os.fsync(f.fileno())
    die()

def save(self, path):
    if mode in ("after", "during") and self.stage == stage and self.iteration == cfg.stages.stage(stage).iterations:
        writes["n"] += 1
        if writes["n"] == n and mode == "during":
            ck.torch.save = half_written
        out = real_save(self, path)
        if writes["n"] == n:
            die()
        return out
    return real_save(self, path)

def append(self, row):
    if mode == "csv" and row["stage"] == stage and row["iteration"] == n:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(",".join(str(v) for v in row.values())[:3])
            f.flush()
            os.fsync(f.fileno())
        die()
    return real_append(self, row)

ck.Checkpoint.save = save
logs.CsvLog.append = append
Trainer(cfg).run()
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from occrecon.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("data") / "tiny"
    generate_dataset(root, n_synthetic=2, n_real=0, seed=0, progress=False, model_path=ICT)
    return root


def small_config(dataset: Path, out: Path) -> TrainConfig:
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(dataset)]
    cfg.stages.order = ["init", "mofa"]
    cfg.stages.init.iterations = cfg.stages.mofa.iterations = 2
    cfg.stages.mofa.start_from = "init"
    cfg.logging.out_dir = str(out)
    cfg.logging.checkpoint_every = 1
    cfg.logging.sample_every = 0
    cfg.logging.tensorboard = False
    return cfg


def read_log(out: Path, stage: str) -> list[dict[str, str]]:
    with open(out / "log" / f"{stage}.csv", newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@contextlib.contextmanager
def one_thread():
    """Train on one intra-op thread, as the child does: a run's bits depend on the thread count (the reduction order of
    some CPU kernels, e.g. in torch builds with CUDA), and other tests of the session may have changed it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    with one_thread():
        Trainer(small_config(dataset, out)).run()
    return out


def assert_same_run(out: Path, straight: Path) -> None:
    """The checkpoints and logs of ``out`` are those of the uninterrupted run; no temp file is left anywhere."""
    for name in FINAL:
        a, b = Checkpoint.load(straight / name), Checkpoint.load(out / name)
        assert (a.stage, a.iteration) == (b.stage, b.iteration), name
        for net in ("encoder", "unet"):
            sa, sb = getattr(a, net) or {}, getattr(b, net) or {}
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), (name, net)
    for stage in ("init", "mofa"):
        assert read_log(out, stage) == read_log(straight, stage), stage
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("mode, stage, n", [
    ("after", "init", 1),   # init.pt is written, last.pt is not: mofa (start_from: init) needs init.pt
    ("after", "mofa", 1),   # the last stage: its checkpoint is the run's result
    ("during", "init", 1),  # the first of the two writes at init's end is half on disk
    ("during", "init", 2),  # the second
    ("csv", "init", 2),     # a log row is cut after 3 characters
])
def test_sigkill_then_resume_ends_like_a_straight_run(dataset, straight, tmp_path, mode, stage, n):
    out = tmp_path / "run"
    cfg = small_config(dataset, out)
    cfg.to_yaml(tmp_path / "c.yaml")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "c.yaml"), mode, stage, str(n)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if mode == "during":
        assert [p.name[:len(".init.pt.")] for p in out.glob(".*.tmp")] == [".init.pt." if n == 1 else ".last.pt."]
    with one_thread():
        Trainer(cfg, resume=True).run()
    assert_same_run(out, straight)


@pytest.mark.parametrize("damage", ["missing", "text", "truncated"])
def test_resume_recreates_a_lost_stage_file_from_last(dataset, straight, tmp_path, damage):
    """A run killed under the old write order: ``last.pt`` says init finished, ``init.pt`` is lost or damaged."""
    out = tmp_path / "run"
    (out / "log").mkdir(parents=True)
    shutil.copy(straight / "log" / "init.csv", out / "log" / "init.csv")
    shutil.copy(straight / "init.pt", out / "last.pt")  # last.pt at the end of init is the same checkpoint
    if damage == "text":
        (out / "init.pt").write_text("not a checkpoint\n", encoding="utf-8")
    elif damage == "truncated":
        (out / "init.pt").write_bytes((straight / "init.pt").read_bytes()[:1000])
    (out / ".last.pt.a1b2c3d4.tmp").write_bytes(b"half a checkpoint")  # and a kill mid-write left this
    with one_thread():
        Trainer(small_config(dataset, out), resume=True, allow_config_change=True).run()  # logging.out_dir differs
    assert_same_run(out, straight)


def test_resume_from_a_stage_file_when_last_is_missing(dataset, straight, tmp_path):
    """Killed between the two writes of the first stage before any ``last.pt``: the stage file is the state."""
    out = tmp_path / "run"
    (out / "log").mkdir(parents=True)
    shutil.copy(straight / "log" / "init.csv", out / "log" / "init.csv")
    shutil.copy(straight / "init.pt", out / "init.pt")
    cfg = small_config(dataset, out)
    with pytest.raises(FileExistsError, match="init.pt"):
        Trainer(cfg)  # a fresh run must not overwrite it
    with one_thread():
        Trainer(cfg, resume=True, allow_config_change=True).run()
    assert_same_run(out, straight)
