"""``TrainConfig``: the whole training experiment as a tree of dataclasses, read from and written to YAML.

One YAML file per experiment (``configs/*.yaml``). Every key is checked: an unknown key, a key given twice, a value
of the wrong type or out of range (every number finite; counts integers; rates, sizes and lengths positive) raises
:class:`ConfigError` naming the dotted key (``stages.em.unet_iters``). Defaults are the paper's schedule ("To fit or
not to fit", Sec. 4 "Implementation details"); everything else is documented where it is defined.

Batch size: a stage's own ``stages.<stage>.batch_size`` wins; else the top-level ``batch_size``; else the paper's
batch for that stage (12 for ``init``, ``unet_pretrain`` and ``mofa``, 6 for ``em``). See
:meth:`TrainConfig.stage_batch_size`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..assets import PACKAGE_PREFIX, SHARED_PREFIX, resolve_asset_path  # noqa: F401  (re-exported for configs)

__all__ = ["TrainConfig", "DataConfig", "ModelConfig", "NetsConfig", "LossPresetConfig", "StageConfig", "EMConfig",
           "MofaConfig", "StagesConfig", "OptimConfig", "LoggingConfig", "ConfigError", "STAGES",
           "resolve_path", "flatten", "config_diff", "resolved_batch_sizes"]

#: The training stages, in the paper's order (``mofa``, the baseline without segmentation, runs when named).
STAGES = ("init", "unet_pretrain", "em", "mofa")

# Paper, Sec. 4: "Adadelta ... initial learning rate of 0.06, and a decay rate of 0.99 at every 5k iterations.
# The learning rate for the segmentation network is 0.06 times the one for the reconstruction network. In every
# 30k iterations, 25k iters are for the face autoencoder ... the face autoencoder is trained for 300k iterations,
# with batch size 12. Afterwards ... trained jointly for 400k iterations, with a batch size of 6."
PAPER_ENCODER_LR = 0.06
PAPER_LR_DECAY = 0.99
PAPER_LR_DECAY_EVERY = 5_000
PAPER_UNET_LR_FACTOR = 0.06
PAPER_INIT_ITERATIONS = 300_000
PAPER_INIT_BATCH = 12
PAPER_EM_ITERATIONS = 400_000
PAPER_EM_BATCH = 6
PAPER_EM_ENCODER_ITERS = 25_000
PAPER_EM_UNET_ITERS = 5_000
#: The paper does not state the length of the UNet pretraining: our choice, one EM cycle's worth.
DEFAULT_UNET_PRETRAIN_ITERATIONS = 30_000
#: Batch size of a stage when neither the stage nor the top level sets one (the UNet pretraining and the MoFA
#: baseline as the init stage).
PAPER_STAGE_BATCH = {"init": PAPER_INIT_BATCH, "unet_pretrain": PAPER_INIT_BATCH, "em": PAPER_EM_BATCH,
                     "mofa": PAPER_INIT_BATCH}
#: Seeds are integers in [0, SEED_LIMIT) (numpy's range; torch's generators take them exactly).
SEED_LIMIT = 2 ** 32



#: ``stages.mofa.mask`` values (see :class:`MofaConfig`).
MOFA_MASKS = ("region", "ground_truth", "skin")


class ConfigError(ValueError):
    """A configuration key is unknown, missing or has a bad value; the message names the dotted key."""


@dataclass
class DataConfig:
    """Training data.

    Attributes:
        train: dataset folders in ``FaceDataset`` format (``images/``, ``masks/``, ``landmarks.csv``); several are
            concatenated. Relative paths are relative to the working directory; ``shared:...`` is inside the
            shared asset folder.
        image_size: side of the square training image in pixels. The datasets are 224² crops; a smaller size
            resizes image and landmarks and scales the camera's focal length with it (same framing).
        augment: ``FaceDataset`` augmentation (±10 px, ±10 %, ±10°, flip).
        num_workers: DataLoader worker processes. 0 (default) loads in the training process, which makes
            ``--resume`` bit-for-bit even with augmentation.
        held_out: fraction of each dataset kept out of training for evaluation, split by identity with
            ``occrecon.data.dataset.split_ids(folder, held_out, split_seed)`` (0: train on everything).
        split_seed: seed of that split (evaluate the held-out part with the same fraction and seed).
        cache: keep the decoded images and masks in memory (``FaceDataset(cache=True)``, ~200 kB per sample and
            per loading process): worth it for small datasets on CPU, where decoding is ~10 % of a step.
        teacher: give each sample the fitting engine's θ* (``occrecon data fit`` on every training folder; needed
            by the ``teacher_vertex`` / ``teacher_landmark`` loss weights).
    """

    train: list[str] = field(default_factory=list)
    image_size: int = 224
    augment: bool = True
    num_workers: int = 0
    held_out: float = 0.0
    split_seed: int = 0
    cache: bool = False
    teacher: bool = False


@dataclass
class ModelConfig:
    """Face model and renderer.

    Attributes:
        path: face model file for ``occrecon.morphable.load_model`` (``shared:`` prefix allowed).
        use_antialias: antialiased silhouettes in ``FaceRenderer`` (off in the paper).
    """

    path: str = "shared:assets/models/sfm_3448.npz"
    use_antialias: bool = False


@dataclass
class NetsConfig:
    """Networks.

    Attributes:
        encoder_arch: ``occrecon.nets.Encoder`` architecture: ``resnet50`` (paper), ``resnet18`` or ``compact``.
        unet: ``paper`` (64-1024 filters) or ``compact`` (``UNet.compact()``).
        encoder_scales: per-group output scales for the encoder (``None``: the encoder's defaults).
        perceptual: perceptual backbone for ``occrecon.nets.load_backbone`` (``dlib``, ``arcface_iresnet50``,
            ``vggface2_resnet50``), or ``None`` to switch every perceptual loss term off (fast tiny runs).
        perceptual_weights: weight file of the backbone (``None``: its default; dlib's ships with the package).
    """

    encoder_arch: str = "resnet50"
    unet: str = "paper"
    encoder_scales: dict[str, Any] | None = None
    perceptual: str | None = "dlib"
    perceptual_weights: str | None = None


@dataclass
class LossPresetConfig:
    """The ``losses`` section of a training config: the name of an ``occrecon.losses.LossConfig`` preset plus
    overrides (the weights themselves are the ``LossConfig`` it builds).

    Attributes:
        preset: ``paper`` (default) or ``focus``.
        overrides: dotted keys into the ``LossConfig`` dataclass tree and their values, e.g.
            ``{"segmentation.neighbour": 10.0, "k": 5}``; an unknown key is an error.
    """

    preset: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageConfig:
    """One stage: number of iterations (0 skips it) and its batch size per process (``None``: the top-level
    ``batch_size``, or when that is ``None`` too the paper's batch for the stage, :data:`PAPER_STAGE_BATCH`)."""

    iterations: int = 0
    batch_size: int | None = None


@dataclass
class EMConfig(StageConfig):
    """Stage 3, EM alternation. Each cycle is ``unet_iters`` UNet steps (encoder frozen) and ``encoder_iters``
    encoder steps (UNet frozen); ``unet_first`` puts the UNet steps first, as in the authors' code."""

    encoder_iters: int = PAPER_EM_ENCODER_ITERS
    unet_iters: int = PAPER_EM_UNET_ITERS
    unet_first: bool = True


@dataclass
class MofaConfig(StageConfig):
    """The "MoFA" baseline: the encoder trained with the reconstruction loss and M = Φ (no segmentation).

    ``start_from``: ``init`` — the encoder at the end of this run's ``init`` stage (``<out>/init.pt``; the fair
    comparison with EM, which starts there too); ``scratch`` — a freshly initialised encoder; ``current`` — the
    encoder as the previous stage left it.

    ``mask``: the M of its reconstruction loss — ``region`` (M = Φ: MoFA), ``ground_truth`` (M = Φ · the dataset's
    ground-truth visible-face mask: "Supervised MoFA", an upper bound that uses labels the method never sees) or
    ``skin`` (M = Φ · a skin-colour mask of the photo, :func:`occrecon.losses.skin_mask`: the Deep3D-style
    baseline).
    """

    start_from: str = "init"
    mask: str = "region"


@dataclass
class StagesConfig:
    """Which stages run, in which order, and for how long."""

    order: list[str] = field(default_factory=lambda: ["init", "unet_pretrain", "em"])
    init: StageConfig = field(default_factory=lambda: StageConfig(PAPER_INIT_ITERATIONS))
    unet_pretrain: StageConfig = field(default_factory=lambda: StageConfig(DEFAULT_UNET_PRETRAIN_ITERATIONS))
    em: EMConfig = field(default_factory=lambda: EMConfig(PAPER_EM_ITERATIONS))
    mofa: MofaConfig = field(default_factory=lambda: MofaConfig(0))

    def stage(self, name: str) -> StageConfig:
        """The configuration of stage ``name`` (ConfigError for an unknown one)."""
        if name not in STAGES:
            raise ConfigError(f"stages.order: unknown stage {name!r}; known: {', '.join(STAGES)}")
        return getattr(self, name)


@dataclass
class OptimConfig:
    """Optimisers and learning-rate schedule (the paper's by default).

    Attributes:
        name: ``adadelta`` (paper) or ``adam`` (not in the paper; converges faster in short CPU runs).
        encoder_lr: encoder learning rate (paper 0.06).
        unet_lr_factor: UNet learning rate = ``unet_lr_factor × encoder_lr`` (paper 0.06).
        decay: multiplicative learning-rate decay in (0, 1] (paper 0.99; 1: constant) ...
        decay_every: ... applied every this many iterations of a stage (paper 5k).
        rho, eps: Adadelta's (torch defaults; rho in [0, 1), eps > 0); ``eps`` is also Adam's.
        weight_decay: L2 weight decay, >= 0 (paper: none).
    """

    name: str = "adadelta"
    encoder_lr: float = PAPER_ENCODER_LR
    unet_lr_factor: float = PAPER_UNET_LR_FACTOR
    decay: float = PAPER_LR_DECAY
    decay_every: int = PAPER_LR_DECAY_EVERY
    rho: float = 0.9
    eps: float = 1e-6
    weight_decay: float = 0.0


@dataclass
class LoggingConfig:
    """Outputs of a run.

    Attributes:
        out_dir: run folder: ``last.pt`` (rolling checkpoint), ``<stage>.pt`` (end of each stage),
            ``log/<stage>.csv``, ``tensorboard/``, ``samples/``, ``config.yaml``.
        log_every: one CSV row (and TensorBoard scalars) every this many iterations.
        sample_every: a sample overlay PNG (target | render | mask) every this many iterations (0: never).
        checkpoint_every: ``last.pt`` every this many iterations (and always at the end of a stage).
        num_samples: images per sample PNG.
        progress: tqdm progress bar.
        tensorboard: write TensorBoard event files (needs the ``tensorboard`` package, the ``train`` extra; off
            by default).
    """

    out_dir: str = "runs/default"
    log_every: int = 100
    sample_every: int = 1000
    checkpoint_every: int = 5000
    num_samples: int = 4
    progress: bool = True
    tensorboard: bool = False


@dataclass
class TrainConfig:
    """A training experiment. ``TrainConfig.from_yaml(path)`` / ``to_yaml(path)``; ``to_dict`` / ``from_dict``.

    Attributes:
        batch_size: images per process and step, for every stage without its own ``stages.<stage>.batch_size``
            (``None``: the paper's batch of each stage, :data:`PAPER_STAGE_BATCH`).
        seed: seeds Python, numpy and torch (and the data order) at the start of a run; in [0, 2³²).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        init_from: optional checkpoint whose encoder (and UNet, when it has one) weights start this run.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    nets: NetsConfig = field(default_factory=NetsConfig)
    losses: LossPresetConfig = field(default_factory=LossPresetConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    init_from: str | None = None

    # ---- conversion -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (only str/int/float/bool/None/list/dict), as stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a nested dict; missing keys take defaults, unknown keys raise ConfigError naming them."""
        cfg = _build(cls, data, "")
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML experiment file (see ``configs/``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no config file {path}")
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.load(f, Loader=_ConfigLoader)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The YAML text of this config; also written to ``path`` when given, atomically (a temp file named like
        ``atomic_save``'s, then ``os.replace``: a kill leaves the previous file, never half of one)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return text

    # ---- checks -----------------------------------------------------------------------------------------------
    def stage_batch_size(self, name: str) -> int:
        """Batch size per process of stage ``name``: its own, else the top-level ``batch_size``, else the paper's
        (:data:`PAPER_STAGE_BATCH`)."""
        b = self.stages.stage(name).batch_size
        if b is None:
            b = self.batch_size
        return PAPER_STAGE_BATCH[name] if b is None else b

    def validate(self) -> None:
        """Check values and their combinations; ConfigError naming the dotted key otherwise."""
        if self.batch_size is not None:
            _count("batch_size", self.batch_size)
        _count("seed", self.seed, allow_zero=True, below=SEED_LIMIT)
        _count("data.image_size", self.data.image_size)
        _count("data.num_workers", self.data.num_workers, allow_zero=True)
        _real("data.held_out", self.data.held_out, high=1.0, low_open=False)
        _count("data.split_seed", self.data.split_seed, allow_zero=True, below=SEED_LIMIT)
        if not self.stages.order:
            raise ConfigError("stages.order: no stage to run")
        if len(set(self.stages.order)) != len(self.stages.order):
            raise ConfigError(f"stages.order: a stage is listed twice: {self.stages.order}")
        for name in self.stages.order:
            self.stages.stage(name)
        for name in STAGES:
            st = self.stages.stage(name)
            _count(f"stages.{name}.iterations", st.iterations, allow_zero=True)
            if st.batch_size is not None:
                _count(f"stages.{name}.batch_size", st.batch_size)
        _count("stages.em.encoder_iters", self.stages.em.encoder_iters, allow_zero=True)
        _count("stages.em.unet_iters", self.stages.em.unet_iters, allow_zero=True)
        if self.stages.em.encoder_iters + self.stages.em.unet_iters == 0:
            raise ConfigError("stages.em: encoder_iters + unet_iters must be > 0")
        if self.stages.mofa.mask not in MOFA_MASKS:
            raise ConfigError(f"stages.mofa.mask: one of {', '.join(MOFA_MASKS)}, got {self.stages.mofa.mask!r}")
        if self.stages.mofa.start_from not in ("init", "scratch", "current"):
            raise ConfigError(f"stages.mofa.start_from: 'init', 'scratch' or 'current', got "
                              f"{self.stages.mofa.start_from!r}")
        if self.optim.name not in ("adadelta", "adam"):
            raise ConfigError(f"optim.name: 'adadelta' or 'adam', got {self.optim.name!r}")
        _real("optim.encoder_lr", self.optim.encoder_lr)
        _real("optim.unet_lr_factor", self.optim.unet_lr_factor)
        _real("optim.decay", self.optim.decay, high=1.0, high_open=False)
        _count("optim.decay_every", self.optim.decay_every)
        _real("optim.eps", self.optim.eps)
        _real("optim.rho", self.optim.rho, high=1.0, low_open=False)
        _real("optim.weight_decay", self.optim.weight_decay, low_open=False)
        if self.nets.unet not in ("paper", "compact"):
            raise ConfigError(f"nets.unet: 'paper' or 'compact', got {self.nets.unet!r}")
        for group, scale in (self.nets.encoder_scales or {}).items():
            values = scale if isinstance(scale, list) else [scale]
            if not values or not all(_is_real(v) for v in values):
                raise ConfigError(f"nets.encoder_scales.{group}: must be a finite number or a list of finite "
                                  f"numbers, got {scale!r}")
        for key, value in self.losses.overrides.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"losses.overrides.{key}: must be a finite number, got {value!r}")
        for key in ("log_every", "checkpoint_every", "num_samples"):
            _count(f"logging.{key}", getattr(self.logging, key))
        _count("logging.sample_every", self.logging.sample_every, allow_zero=True)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(key: str, v: Any, allow_zero: bool = False, below: int | None = None) -> None:
    """``v`` must be an int > 0 (>= 0 with ``allow_zero``) and < ``below``."""
    ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
    if not ok or (below is not None and v >= below):
        what = "a non-negative integer" if allow_zero else "a positive integer"
        raise ConfigError(f"{key}: must be {what}{f' < {below}' if below is not None else ''}, got {v!r}")


def _real(key: str, v: Any, low: float = 0.0, high: float = math.inf, low_open: bool = True,
          high_open: bool = True) -> None:
    """``v`` must be a finite number in the interval from ``low`` to ``high`` (bounds excluded when ``*_open``);
    by default (0, inf): a positive finite number."""
    ok = _is_real(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        if (low, low_open, high) == (0.0, True, math.inf):
            what = "a positive finite number"
        elif high == math.inf:
            what = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            what = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key}: must be {what}, got {v!r}")


# ---- YAML reading: no key twice, YAML 1.2 floats -----------------------------------------------------------------
class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently) and
    reads ``1e-3`` as a number (YAML 1.2; PyYAML's YAML 1.1 reads it as the string ``"1e-3"``)."""


def _construct_mapping(loader: _ConfigLoader, node: yaml.MappingNode) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if duplicate:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice in the same "
                              f"mapping (remove one)")
        seen.add(key)
    return loader.construct_mapping(node)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


# ---- generic dataclass <- dict conversion with key checking ---------------------------------------------------
def _build(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    """``cls`` from a mapping; keys not given keep their value in ``base`` (the parent's default instance, so a
    partial ``stages.em`` keeps the paper's EM length), or ``cls()``'s defaults."""
    where = prefix.rstrip(".") or "<top level>"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known under {where}: {', '.join(sorted(names))})")
    base = cls() if base is None else base
    kwargs = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]):
            kwargs[k] = _build(hints[k], v, f"{prefix}{k}.", getattr(base, k))
        else:
            kwargs[k] = _convert(hints[k], v, f"{prefix}{k}")
    return dataclasses.replace(base, **kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} does not fit {tp}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # a programming error in the dataclasses above


# ---- helpers ---------------------------------------------------------------------------------------------------
def resolve_path(path: str | Path) -> Path:
    """A config path: ``shared:rel/path`` → inside the shared asset folder, ``package:rel/path`` → inside the
    installed package (:func:`occrecon.assets.resolve_asset_path`); otherwise as given."""
    return resolve_asset_path(path)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"dotted.key": leaf}`` (lists are leaves)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): data}


def resolved_batch_sizes(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict (``to_dict()``, maybe of an older checkpoint) with the batch size each stage trains
    with in ``stages.<stage>.batch_size`` and without the top-level ``batch_size``, which only provides that
    default: configs that train with the same batches compare equal however they say it."""
    if not isinstance(config, dict) or not isinstance(config.get("stages"), dict):
        return config
    out = dict(config, stages=dict(config["stages"]))
    top = out.pop("batch_size", None)
    for name in STAGES:
        stage = out["stages"].get(name)
        if isinstance(stage, dict):
            own = stage.get("batch_size")
            out["stages"][name] = dict(stage, batch_size=own if own is not None else
                                       top if top is not None else PAPER_STAGE_BATCH[name])
    return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted_key, old_value, new_value)`` for every leaf that differs (missing leaves are ``None``), sorted."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
