"""Training of the occlusion-robust face autoencoder ("To fit or not to fit"): config, checkpoints, stages, loop.

```python
from occrecon.train import TrainConfig, train
cfg = TrainConfig.from_yaml("configs/tiny.yaml")
train(cfg, out_dir="runs/tiny")                 # init -> unet_pretrain -> em (as cfg.stages.order says)
train(cfg, out_dir="runs/tiny", resume=True)    # continue a killed run bit for bit
```
Command line: ``occrecon train CONFIG.yaml [--resume [CKPT]] [--out DIR]``, ``python -m occrecon.train ...``, and
``torchrun --nproc_per_node=N -m occrecon.train CONFIG.yaml`` for data-parallel training.
"""
from __future__ import annotations

from ..checkpoint import FORMAT, Checkpoint, CheckpointError, atomic_save, capture_rng, restore_rng
from .config import (STAGES, ConfigError, DataConfig, EMConfig, LoggingConfig, LossPresetConfig, ModelConfig, MofaConfig,
                     NetsConfig, OptimConfig, StageConfig, StagesConfig, TrainConfig)

__all__ = ["TrainConfig", "DataConfig", "ModelConfig", "NetsConfig", "LossPresetConfig", "StageConfig", "EMConfig",
           "MofaConfig", "StagesConfig", "OptimConfig", "LoggingConfig", "ConfigError", "STAGES", "FORMAT",
           "Checkpoint", "CheckpointError", "atomic_save", "capture_rng", "restore_rng", "Trainer", "train",
           "TrainingDiverged", "ConfigMismatchError", "HARMLESS_KEYS"]

_LOOP = ("Trainer", "train", "TrainingDiverged", "ConfigMismatchError", "HARMLESS_KEYS")


def __getattr__(name: str):
    # the loop imports the networks and losses: load it only when asked for
    if name in _LOOP:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'occrecon.train' has no attribute {name!r}")
