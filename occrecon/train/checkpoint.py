"""Training checkpoints: atomic writes, RNG capture/restore, and the ``occrecon-checkpoint-v1`` format.

A checkpoint is ``torch.save`` of a plain dict (see :class:`Checkpoint`); everything in it loads with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts), so readers never unpickle code.
Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over the target with
``os.replace``: a crash or a full disk mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "atomic_save", "capture_rng", "restore_rng"]

#: Value of the ``"format"`` key of every checkpoint this module writes.
FORMAT = "occrecon-checkpoint-v1"

_STAGES = ("init", "unet_pretrain", "em", "mofa")
_REQUIRED = ("format", "stage", "iteration", "config", "nets", "encoder", "unet", "optimizers", "schedulers",
             "rng", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not in the expected format."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: temp file in the same folder + fsync + ``os.replace``.

    On any failure the temp file is removed and ``path`` keeps its previous content (or stays absent).
    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


# ---- random number generators -----------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """The states of Python's ``random``, numpy's global generator, torch's CPU generator and (when CUDA is
    initialised) every CUDA device's generator, as tensors/lists/numbers (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored when present and CUDA is available)."""
    if not isinstance(state, dict) or not {"python", "numpy", "torch"} <= set(state):
        raise CheckpointError(f"state: expected the dict of capture_rng(), got keys "
                              f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---- the checkpoint --------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """One training checkpoint (format :data:`FORMAT`).

    Attributes:
        stage: ``init`` | ``unet_pretrain`` | ``em`` | ``mofa`` — the stage running when it was written.
        iteration: iterations of that stage completed (equal to the stage's length once it has finished).
        config: the ``TrainConfig`` as a plain nested dict.
        nets: how to rebuild the networks: ``model_path``, ``encoder_arch``, ``unet`` (``paper`` | ``compact`` |
            None), ``image_size``, ``layout`` (``[[name, size], ...]``), ``encoder_scales``.
        encoder, unet: ``state_dict``\\ s (``unet`` None when the run has no UNet yet).
        optimizers, schedulers: ``{name: state_dict}`` of the running stage.
        rng: :func:`capture_rng` at the time of writing.
        metrics: free-form numbers (last logged losses, ``stages_done``, wall time, ...).
    """

    stage: str
    iteration: int
    config: dict[str, Any]
    nets: dict[str, Any]
    encoder: dict[str, torch.Tensor]
    unet: dict[str, torch.Tensor] | None = None
    optimizers: dict[str, Any] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=capture_rng)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in _STAGES:
            raise CheckpointError(f"stage: one of {_STAGES}, got {self.stage!r}")
        if isinstance(self.iteration, bool) or not isinstance(self.iteration, int) or self.iteration < 0:
            raise CheckpointError(f"iteration: a non-negative int, got {self.iteration!r}")
        for key in ("config", "nets", "encoder", "optimizers", "schedulers", "rng", "metrics"):
            if not isinstance(getattr(self, key), dict):
                raise CheckpointError(f"{key}: expected a dict, got {type(getattr(self, key)).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The dict that is written: the attributes plus ``"format"``."""
        return {"format": FORMAT, "stage": self.stage, "iteration": self.iteration, "config": self.config,
                "nets": self.nets, "encoder": self.encoder, "unet": self.unet, "optimizers": self.optimizers,
                "schedulers": self.schedulers, "rng": self.rng, "metrics": self.metrics}

    def save(self, path: str | Path) -> Path:
        """Write atomically (:func:`atomic_save`); returns the path."""
        return atomic_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read and check a checkpoint file (``weights_only`` unpickling); CheckpointError naming the path and
        the problem otherwise."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"path: no checkpoint file {path}")
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated/corrupt file, not a torch file, ...
            raise CheckpointError(f"path: cannot read checkpoint {path}: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(f"path: {path} is not an {FORMAT} file (format: {got!r})")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise CheckpointError(f"path: {path} lacks the keys {missing}")
        try:
            return cls(**{k: data[k] for k in _REQUIRED if k != "format"})
        except CheckpointError as e:
            raise CheckpointError(f"path: {path}: {e}") from None
