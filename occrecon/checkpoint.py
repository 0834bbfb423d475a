"""The checkpoint contract, one home for training and inference: the ``occrecon-checkpoint-v1`` format, atomic
writes, reading and checking (for inference: :func:`read_checkpoint`; for resuming training:
:meth:`Checkpoint.load`), the ``"nets"`` spec (:func:`nets_spec` writes it, :func:`build_nets` and
:func:`build_renderer` rebuild from it), and face-model path resolution (:func:`resolve_model_path`).

A checkpoint is ``torch.save`` of a plain dict (see :class:`Checkpoint`); everything in it loads with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts), so readers never unpickle code
(``trusted=True`` of :func:`read_checkpoint` allows a full unpickle, for files from a trusted source).
Writes go to a temporary file in the same folder (``.<name>.<8 random characters>.tmp``), are flushed and fsync'ed,
then renamed over the target with ``os.replace``: a crash or a full disk mid-write leaves the previous checkpoint
intact. A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
:func:`remove_stale_temp_files` removes such files (the trainer calls it when a run starts or resumes).

Reading checks the archive's CRC-32 of every record before unpickling (a truncated or bit-flipped file is refused
instead of loading silently altered weights) and refuses NaN/Inf in any network (and, for training, optimiser)
tensor.

Face-model paths in ``nets.model_path``: ``package:rel/path`` is inside the installed package (a model shipped in
the wheel, e.g. ``package:models/ict_narrowface_learned.npz``), ``shared:rel/path`` inside the shared asset folder
(:func:`occrecon.assets.shared_dir`); an absolute path as it is; another relative path is tried against the
working directory, the checkpoint's folder and the shared asset folder.
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

from .assets import PACKAGE_PREFIX, SHARED_PREFIX, resolve_asset_path

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "UntrustedCheckpointError", "atomic_save",
           "remove_stale_temp_files", "capture_rng", "BUNDLED_CHECKPOINT", "restore_rng", "read_checkpoint", "nets_spec", "build_nets",
           "build_renderer", "resolve_model_path", "load_spec_model", "INFERENCE_KEYS", "NETS_KEYS", "SHARED_PREFIX", "PACKAGE_PREFIX"]

#: Value of the ``"format"`` key of every checkpoint this module writes.
FORMAT = "occrecon-checkpoint-v1"

_STAGES = ("init", "unet_pretrain", "em", "mofa")
#: Keys a training checkpoint holds (all of them: :meth:`Checkpoint.load` resumes from it).
_REQUIRED = ("format", "stage", "iteration", "config", "nets", "encoder", "unet", "optimizers", "schedulers",
             "rng", "metrics")
#: Keys every checkpoint must hold for inference (an exported one drops the optimiser and RNG states), and the keys
#: of its ``"nets"`` entry.
INFERENCE_KEYS = ("format", "stage", "nets", "encoder", "unet")
NETS_KEYS = ("model_path", "encoder_arch", "unet", "image_size", "layout", "encoder_scales")
#: The checkpoint shipped inside the package (``occrecon demo``, ``occrecon reconstruct``'s default).
BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "occrecon_compact_ict.pt"
#: ``nets.albedo`` (optional): ``"model"`` (default) uses the model file's albedo; ``"laplacian-prior"`` replaces it by
#: the generic Laplacian prior (:meth:`occrecon.morphable.MorphableModel.with_albedo_prior`), for nets trained with
#: the prior on a model file that now ships a learned albedo.
SPEC_ALBEDO = ("model", "laplacian-prior")
#: The UNet architectures a ``"nets"`` spec may name.
UNET_KINDS = ("paper", "compact")


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would keep the file from others (a shipped model)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        problem, _ = _archive_problem(path)
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


def _archive_problem(path: Path, legacy_pickle: bool = False) -> tuple[str | None, bool]:
    """``(why path is not a readable checkpoint file or None, whether it is an intact zip archive)``.

    ``torch.save``'s zip archive: every record is read and its CRC-32 compared with the archive's (torch itself
    does not, so a flipped bit would load silently). An empty file and a file that is neither a zip archive nor
    (with ``legacy_pickle``, torch's old format, which ``torch.load`` checks itself) a pickle are refused."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file, not a checkpoint", False
    if not head.startswith(b"PK"):
        if legacy_pickle and head.startswith(b"\x80"):
            return None, False
        return "not a torch checkpoint (neither torch.save's zip archive nor a pickle)", False
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile as e:
        return f"not a torch checkpoint archive, or a truncated one ({e})", False
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}", False
    except Exception as e:  # noqa: BLE001  (a damaged directory or header: a bad name encoding, a bad offset, ...)
        return f"a damaged or truncated archive ({type(e).__name__}: {_first_line(str(e))})", False
    if damaged is not None:
        return (f"a damaged file: the record {damaged!r} fails its CRC-32 check (corrupted on disk or in transfer, "
                f"or changed after it was written)"), False
    return None, True


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


# ---- reading for inference -------------------------------------------------------------------------------------
class UntrustedCheckpointError(ValueError):
    """An intact checkpoint holds objects that the plain (weights-only) load refuses, e.g. a pickled class; only a
    full unpickle reads it, which can run code. The message names the file, what was refused, and how to allow it:
    ``remedy`` (the API's ``pass trusted=True``; the command line's ``pass --trusted``, see :meth:`with_remedy`)."""

    def __init__(self, path: str | Path, reason: str, remedy: str = "pass trusted=True"):
        self.path, self.reason, self.remedy = Path(path), reason, remedy
        super().__init__(f"{path}: cannot be read as a plain checkpoint ({reason}); if it comes from a trusted "
                         f"source, {remedy} (a full unpickle can run code)")

    def with_remedy(self, remedy: str) -> UntrustedCheckpointError:
        """The same error, naming another way to allow the full unpickle (e.g. a command-line flag)."""
        return UntrustedCheckpointError(self.path, self.reason, remedy)


def _numpy_safe_globals() -> list:
    """Allow-list for numpy arrays/scalars inside checkpoints written by other tools (numpy RNG states)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover  (numpy 1.x)
        from numpy.core import multiarray

    out = [multiarray._reconstruct, np.ndarray, np.dtype, multiarray.scalar]
    out += [type(np.dtype(t)) for t in ("uint32", "int64", "float64", "uint8", "int32", "float32", "bool")]
    return out


def _refusal(exc: Exception, intact_archive: bool) -> str | None:
    """What the weights-only unpickler refused, or None when the error says the data is damaged rather than an
    object it does not allow (only an intact archive, or a named global, is a refusal)."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it refers to {found.group(1)}, which a weights-only load does not allow"
    if not intact_archive or "Weights only load failed" not in text:
        return None
    found = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    return f"weights-only load: {found.group(1).strip() if found else _first_line(text)}"


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """Load a checkpoint dict for inference and check its ``"format"``, the keys inference needs
    (:data:`INFERENCE_KEYS`, :data:`NETS_KEYS`) and the nets' weights.

    Args:
        path: the checkpoint file.
        trusted: False: ``torch.load(weights_only=True)`` with numpy arrays allowed; True: full unpickle.

    Returns:
        the checkpoint dict, tensors on the CPU.

    Raises:
        FileNotFoundError / IsADirectoryError: no file at ``path``.
        UntrustedCheckpointError: an intact file that only ``trusted=True`` can read (a ValueError).
        ValueError: anything else that is not a usable checkpoint, naming the file: an empty, text or truncated
            file, a zip member whose CRC does not match (a flipped bit), damaged pickle data, a wrong ``"format"``,
            missing keys, NaN or Inf in the ``"encoder"`` / ``"unet"`` weights (naming the tensor).
    """
    import pickle

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path: {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {path}")
    problem, intact = _archive_problem(path, legacy_pickle=True)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    try:
        if trusted:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = None if trusted else _refusal(exc, intact)
        if reason is not None:
            raise UntrustedCheckpointError(path, reason) from None
        raise ValueError(f"{path}: not a readable torch checkpoint (damaged pickle data: "
                         f"{_first_line(str(exc))})") from None
    except Exception as exc:  # noqa: BLE001  (damaged data raises anything: IndexError, KeyError, UnicodeDecodeError ...)
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                         f"{_first_line(str(exc))})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{path}: 'format' is {fmt!r}, expected {FORMAT!r}")
    missing = [k for k in INFERENCE_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: key(s) {missing} missing")
    nets = ckpt["nets"]
    if not isinstance(nets, dict):
        raise ValueError(f"{path}: 'nets' must be a dict, got {type(nets).__name__}")
    missing = [k for k in NETS_KEYS if k not in nets]
    if missing:
        raise ValueError(f"{path}: key(s) {['nets.' + k for k in missing]} missing")
    for name in ("encoder", "unet"):
        state = ckpt[name]
        if isinstance(state, dict):
            bad = _non_finite(state)
            if bad is not None:
                t = state[bad] if bad in state else None
                count = f"{int((~torch.isfinite(t)).sum())} NaN/Inf value(s) of {t.numel()}" if t is not None \
                    else "NaN/Inf values"
                raise ValueError(f"{path}: '{name}' tensor {bad!r} holds {count}; weights like these cannot "
                                 f"reconstruct a face (a diverged training run?)")
    return dict(ckpt)


# ---- the nets spec ---------------------------------------------------------------------------------------------
def nets_spec(*, model_path: str, encoder_arch: str, unet: str | None, image_size: int, layout,
              encoder_scales: dict, use_antialias: bool, focal: float) -> dict[str, Any]:
    """The checkpoint's ``"nets"`` entry: what :func:`build_nets` and :func:`build_renderer` rebuild.

    Args:
        model_path: the face model, as :func:`resolve_model_path` reads it (``package:`` / ``shared:`` paths stay
            portable).
        encoder_arch: :class:`occrecon.nets.Encoder`'s ``arch``.
        unet: one of :data:`UNET_KINDS`, or None (no UNet).
        image_size: the square crop size.
        layout: the model's :class:`~occrecon.morphable.ParamLayout`.
        encoder_scales: the encoder's resolved output scales.
        use_antialias, focal: the renderer's antialias switch and the camera's focal length in pixels.
    """
    if unet is not None and unet not in UNET_KINDS:
        raise ValueError(f"unet: expected one of {UNET_KINDS} or None, got {unet!r}")
    scales = {k: (list(map(float, v)) if isinstance(v, (list, tuple)) else float(v)) for k, v in encoder_scales.items()}
    return {"model_path": str(model_path), "encoder_arch": str(encoder_arch), "unet": unet,
            "image_size": int(image_size), "layout": [[n, int(k)] for n, k in layout.entries],
            "encoder_scales": scales, "renderer": {"use_antialias": bool(use_antialias), "focal": float(focal)}}


def spec_layout(nets: dict):
    """The :class:`~occrecon.morphable.ParamLayout` a ``"nets"`` spec names; ValueError naming ``nets.layout``."""
    from .morphable import ParamLayout

    entries = nets["layout"]
    try:
        return ParamLayout([(str(n), int(k)) for n, k in entries])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"nets.layout: expected [[name, size], ...], got {entries!r} ({exc})") from None


def build_nets(nets: dict, layout, units: str | None = None) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Encoder and UNet (or None) of the architectures a ``"nets"`` spec names, untrained, for ``layout``.
    The spec's ``encoder_scales`` are used when present (a checkpoint's), else the encoder's defaults for
    ``units``."""
    from .nets import Encoder, UNet

    scales = nets.get("encoder_scales")
    encoder = Encoder(layout, arch=str(nets["encoder_arch"]), scales=scales, units=units)
    kind = nets.get("unet")
    if kind is None:
        return encoder, None
    if kind not in UNET_KINDS:
        raise ValueError(f"nets.unet: expected one of {UNET_KINDS} or None, got {kind!r}")
    return encoder, UNet() if kind == "paper" else UNet.compact()


def build_renderer(nets: dict, model, use_antialias: bool | None = None):
    """The :class:`~occrecon.render.FaceRenderer` of a ``"nets"`` spec: the standard framing
    (:func:`occrecon.render.camera.default_camera`) for ``image_size`` with the spec's focal length and antialias
    switch (``use_antialias`` fills in a spec without one, e.g. from the training config)."""
    from .render import FaceRenderer
    from .render.camera import default_camera

    opts = dict(nets.get("renderer") or {})
    if use_antialias is not None:
        opts.setdefault("use_antialias", use_antialias)
    focal = opts.pop("focal", None)
    return FaceRenderer(model, camera=default_camera(int(nets["image_size"]), focal), **opts)


def resolve_model_path(stored: str | Path, ckpt_path: str | Path | None = None) -> Path:
    """The face-model file a checkpoint's ``nets.model_path`` names (see the module docstring for the rules);
    FileNotFoundError naming ``nets.model_path`` and what was tried."""
    text = str(stored)
    if text.startswith((SHARED_PREFIX, PACKAGE_PREFIX)):
        try:
            p = resolve_asset_path(text)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"nets.model_path: {text!r}: {exc}; pass model_path=") from None
        if p.exists():
            return p
        raise FileNotFoundError(f"nets.model_path: {text!r} -> {p} does not exist; pass model_path=")
    p = Path(text)
    if p.is_absolute():
        if p.exists():
            return p
        raise FileNotFoundError(f"nets.model_path: {p} does not exist; pass model_path=")
    from .assets import shared_dir

    bases = [Path.cwd()] + ([Path(ckpt_path).resolve().parent] if ckpt_path is not None else [])
    shared = shared_dir(required=False)
    if shared is not None:
        bases.append(shared)
    for base in bases:
        if (base / p).exists():
            return base / p
    raise FileNotFoundError(f"nets.model_path: {text!r} not found under {[str(b) for b in bases]}; pass model_path=")


def load_spec_model(nets: dict, ckpt_path: str | Path | None = None, model_path: str | Path | None = None):
    """The face model a ``"nets"`` spec names: ``model_path`` if given, else ``nets.model_path`` resolved by
    :func:`resolve_model_path`, loaded, with ``nets.albedo`` applied (:data:`SPEC_ALBEDO`). Returns
    ``(model, the file it was read from)``."""
    from .morphable import load_model

    albedo = nets.get("albedo", "model")
    if albedo not in SPEC_ALBEDO:
        raise ValueError(f"nets.albedo: expected one of {SPEC_ALBEDO}, got {albedo!r}")
    src = Path(model_path) if model_path is not None else resolve_model_path(nets["model_path"], ckpt_path)
    model = load_model(src)
    if albedo == "laplacian-prior":
        model = model.with_albedo_prior()
    return model, src
