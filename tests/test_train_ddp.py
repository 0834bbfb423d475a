"""Data-parallel training with torchrun: 2 CPU processes (gloo), identical replicas, rank-0 outputs.
(The DistributedSampler split itself is tested in test_train_parts.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from occrecon.assets import shared_dir
from occrecon.checkpoint import Checkpoint
from occrecon.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Each rank runs the public Trainer and saves its own parameters, so the test compares the replicas itself.
SCRIPT = textwrap.dedent("""
    import sys, torch
    from occrecon.train.config import TrainConfig
    from occrecon.train.loop import Trainer
    from occrecon.train.distributed import shutdown_distributed
    t = Trainer(TrainConfig.from_yaml(sys.argv[1]))
    summary = t.run()
    torch.save({"encoder": t.nets.encoder.state_dict(), "unet": t.nets.unet.state_dict(), "summary": summary,
                "world": t.dist.world_size}, f"{sys.argv[2]}/rank{t.dist.rank}.pt")
    shutdown_distributed()
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_two_process_ddp_run(tmp_path):
    from occrecon.data.generate import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, n_synthetic=4, n_real=0, seed=1, progress=False,
                     model_path=shared_dir() / "assets" / "models" / "ict_narrowface.npz")
    cfg = TrainConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg.data.train = [str(data)]
    cfg.logging.out_dir = str(tmp_path / "run")
    cfg.stages.order = ["init", "unet_pretrain", "em"]
    cfg.stages.init.iterations, cfg.stages.unet_pretrain.iterations, cfg.stages.em.iterations = 2, 1, 2
    cfg.stages.em.unet_iters = cfg.stages.em.encoder_iters = 1
    cfg.batch_size = 1
    cfg.to_yaml(tmp_path / "c.yaml")
    (tmp_path / "rank_script.py").write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "rank_script.py"), str(tmp_path / "c.yaml"), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for net in ("encoder", "unet"):
        assert all(torch.equal(r0[net][k], r1[net][k]) for k in r0[net]), net
    # rank 0 alone wrote the outputs; its checkpoint holds the common parameters, its losses are finite
    run = tmp_path / "run"
    em = Checkpoint.load(run / "em.pt")
    assert all(torch.equal(em.encoder[k], r0["encoder"][k]) for k in em.encoder)
    for stage, values in r0["summary"].items():
        assert all(torch.isfinite(torch.tensor(v)) for v in values.values()), stage
    assert not list(run.glob("rank*"))
