"""Training checkpoints: atomic writes, RNG capture/restore, and the ``occrecon-checkpoint-v1`` format.

A checkpoint is ``torch.save`` of a plain dict (see :class:`Checkpoint`); everything in it loads with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts), so readers never unpickle code.
Writes go to a temporary file in the same folder (``.<name>.<8 random characters>.tmp``), are flushed and fsync'ed,
then renamed over the target with ``os.replace``: a crash or a full disk mid-write leaves the previous checkpoint
intact. A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
:func:`remove_stale_temp_files` removes such files (the trainer calls it when a run starts or resumes).

Reading checks the archive's CRC-32 of every record before unpickling (a truncated or bit-flipped file is refused
instead of loading silently altered weights) and refuses NaN/Inf in any network or optimiser tensor.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "atomic_save", "remove_stale_temp_files", "capture_rng",
           "restore_rng"]

#: Value of the ``"format"`` key of every checkpoint this module writes.
FORMAT = "occrecon-checkpoint-v1"

_STAGES = ("init", "unet_pretrain", "em", "mofa")
_REQUIRED = ("format", "stage", "iteration", "config", "nets", "encoder", "unet", "optimizers", "schedulers",
             "rng", "metrics")


#: Names of :func:`atomic_save`'s temporary files: ``tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")``, whose
#: random part is 8 characters of ``[a-z0-9_]``.
_TMP_PREFIX, _TMP_SUFFIX = ".", ".tmp"
_TMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not in the expected format."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: temp file in the same folder + fsync + ``os.replace``.

    On any failure the temp file is removed and ``path`` keeps its previous content (or stays absent); only a
    killed process leaves the temp file (see :func:`remove_stale_temp_files`). Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
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


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_save` calls killed mid-write left in ``folder`` (not in its
    subfolders): regular files named like its temp files (``.<name>.<8 characters>.tmp``), nothing else.

    Call it only while no other process writes into ``folder``. Returns the files removed (sorted).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not _TMP_NAME.fullmatch(entry.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


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
        """Read and check a checkpoint file (``weights_only`` unpickling); one :class:`CheckpointError` naming the
        file and the problem otherwise (missing, a folder, not a torch archive, truncated, damaged — CRC-32 of
        every record —, not this format, missing keys, NaN/Inf in a network or optimiser tensor)."""
        path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"path: {path} is a folder, not a checkpoint file")
        if not path.is_file():
            raise CheckpointError(f"path: no checkpoint file {path}")
        problem = _archive_problem(path)
        if problem is not None:
            raise CheckpointError(f"path: cannot read checkpoint {path}: {problem}")
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # an intact archive whose pickle is not a plain checkpoint (or is not loadable)
            raise CheckpointError(f"path: cannot read checkpoint {path}: {_load_failure(e)}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(f"path: {path} is not an {FORMAT} file (format: {got!r})")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise CheckpointError(f"path: {path} lacks the keys {missing}")
        try:
            ckpt = cls(**{k: data[k] for k in _REQUIRED if k != "format"})
        except CheckpointError as e:
            raise CheckpointError(f"path: {path}: {e}") from None
        for key in ("encoder", "unet"):
            state = getattr(ckpt, key)
            if state is not None and not (isinstance(state, dict) and all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
                raise CheckpointError(f"path: {path}: {key} is not a state_dict (a dict of name → tensor)")
        bad = _non_finite({"encoder": ckpt.encoder, "unet": ckpt.unet, "optimizers": ckpt.optimizers})
        if bad is not None:
            raise CheckpointError(f"path: {path}: the tensor {bad} holds NaN/Inf values; a diverged or corrupted "
                                  f"checkpoint is refused")
        return ckpt


def _archive_problem(path: Path) -> str | None:
    """Why ``path`` is not an intact torch zip archive (``torch.save``'s format), or None: every record is read
    and its CRC-32 compared with the archive's (torch itself does not, so a flipped bit would load silently)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile as e:
        return f"not a torch checkpoint archive, or a truncated one ({e})"
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    except Exception as e:  # a damaged directory or header: a bad name encoding, a bad offset, ...
        return f"a damaged archive ({type(e).__name__}: {_first_line(str(e))})"
    if damaged is not None:
        return f"a damaged file: the record {damaged!r} fails its CRC-32 check (corrupted on disk or in transfer)"
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


def _load_failure(e: Exception) -> str:
    """One line for a ``torch.load`` failure: the unpickler's own reason when ``weights_only`` refused something
    (torch's message is a paragraph of advice), else the exception's first line."""
    text = str(e)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            return f"it holds objects other than tensors and plain values ({reason}), which this format never does"
    if "PytorchStreamReader failed" in text:  # "... zip archive: <reason>. This is an internal miniz error. ..."
        return f"a damaged archive ({_first_line(text).split('. ')[0]})"
    return f"{type(e).__name__}: {_first_line(text)}"


def _non_finite(tree: Any, prefix: str = "") -> str | None:
    """Dotted name of the first floating-point tensor in nested dicts/lists that holds NaN/Inf, or None."""
    if isinstance(tree, torch.Tensor):
        if (tree.is_floating_point() or tree.is_complex()) and not bool(torch.isfinite(tree).all()):
            return prefix.rstrip(".")
        return None
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for k, v in items:
        bad = _non_finite(v, f"{prefix}{k}.")
        if bad is not None:
            return bad
    return None
