"""The training loop: builds the run from a :class:`TrainConfig`, runs its stages, checkpoints, resumes.

``Trainer(config, out_dir=None, resume=False).run()`` executes ``config.stages.order``. Per stage it creates
fresh optimisers (Adadelta by default) and step-decay schedulers (×``decay`` every ``decay_every`` iterations),
then for each iteration: batch → step forward (``stages.py``) → NaN/Inf check → backward → update → logs,
samples, checkpoints. ``<out>/last.pt`` is the rolling checkpoint, ``<out>/<stage>.pt`` the state at the end of
each stage, written before ``last.pt`` says the stage is finished: a kill between the two writes leaves the stage
file, and ``resume=True`` continues from whichever of ``last.pt`` and the stage files is further along.

Resuming (``resume=True`` or a path) restores the networks, optimisers, schedulers, RNG states, log accumulators
and the position, then continues bit for bit: the data order is a function of (seed, step) and nothing between
the checkpoint and the next step draws random numbers. A config that differs from the checkpoint's is refused
with the differences listed; ``allow_config_change=True`` accepts differences in :data:`HARMLESS_KEYS` only.
A resume also repairs what a kill can leave: temp files of interrupted checkpoint writes are removed, a finished
stage's lost or damaged ``<stage>.pt`` is re-created from ``last.pt`` (the same checkpoint), and ``last.pt`` is
brought up to a newer stage file.
"""
from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import (Checkpoint, CheckpointError, build_nets, build_renderer, capture_rng, nets_spec,
                          remove_stale_temp_files, restore_rng)
from .config import (PACKAGE_PREFIX, SHARED_PREFIX, STAGES, ConfigError, TrainConfig, config_diff, resolve_path,
                     resolved_batch_sizes)
from .data import build_dataset, make_loader, prepare_batch
from .distributed import (DistInfo, all_reduce_mean, any_flag, broadcast_buffers, check_replicas_identical,
                          init_distributed)
from .stages import STAGE_NETS, Nets, StepOutput, set_trainable, step_function

__all__ = ["Trainer", "TrainingDiverged", "ConfigMismatchError", "HARMLESS_KEYS", "check_resume_config",
           "resolve_device", "seed_everything", "build_loss_config", "train"]

#: Config keys (glob patterns over dotted keys) that may differ when resuming with ``allow_config_change``:
#: outputs and their frequencies, the length of stages (extend or shorten a run), the in-memory cache. Anything
#: else changes what is trained and is always refused.
HARMLESS_KEYS = ("logging.*", "stages.*.iterations", "data.cache")

LAST = "last.pt"


class TrainingDiverged(RuntimeError):
    """A loss term or a parameter became NaN/Inf; the message names stage, iteration and term."""


class ConfigMismatchError(ValueError):
    """Resuming with a config that differs from the checkpoint's; the message lists ``key: old → new``."""


def check_resume_config(old: dict[str, Any], new: dict[str, Any], allow_harmless: bool = False
                        ) -> list[tuple[str, Any, Any]]:
    """Compare the checkpoint's config with the new one (batch sizes as each stage uses them:
    :func:`~occrecon.train.config.resolved_batch_sizes`); return the (accepted) differences or raise
    :class:`ConfigMismatchError` listing every difference as ``dotted.key: old → new``."""
    diffs = config_diff(resolved_batch_sizes(old), resolved_batch_sizes(new))
    if not diffs:
        return []
    harmless = [any(fnmatch.fnmatchcase(k, pat) for pat in HARMLESS_KEYS) for k, _, _ in diffs]
    if allow_harmless and all(harmless):
        return diffs
    lines = [f"  {k}: {a!r} → {b!r}" + ("  (harmless)" if h else "") for (k, a, b), h in zip(diffs, harmless)]
    hint = ("; only keys matching " + ", ".join(HARMLESS_KEYS) + " may change, with --allow-config-change"
            if not all(harmless) else "; pass --allow-config-change (allow_config_change=True) to accept them")
    raise ConfigMismatchError("the config differs from the checkpoint's:\n" + "\n".join(lines) + "\n" + hint)


@contextlib.contextmanager
def _config_errors(key: str):
    """Turn what building a part of the run raises for a bad config value or input file into one error naming
    ``key``: CheckpointError for a checkpoint, FileNotFoundError for a missing file, ConfigError otherwise."""
    try:
        yield
    except ConfigError:
        raise
    except (CheckpointError, ValueError, TypeError, KeyError, OSError) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        text = text if text.startswith(key) else f"{key}: {text}"
        kind = CheckpointError if isinstance(e, CheckpointError) else \
            FileNotFoundError if isinstance(e, FileNotFoundError) else ConfigError
        raise kind(text) from e


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` → ``cuda:<local_rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device: {name!r} requested but there are {torch.cuda.device_count()} CUDA devices")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loss_config(cfg: TrainConfig, perceptual: bool):
    """``occrecon.losses.LossConfig`` of ``cfg.losses``: the preset, then the dotted ``overrides``; without a
    perceptual network every perceptual term is switched off (weights 0, ``perceptual_ex/in`` False).
    ConfigError naming ``losses.preset`` or the override's key otherwise."""
    from ..losses import LossConfig

    try:
        base = LossConfig.preset(cfg.losses.preset).to_dict()
    except (KeyError, ValueError) as e:
        raise ConfigError(f"losses.preset: {e}") from None
    for key, value in cfg.losses.overrides.items():
        node = base
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"losses.overrides.{key}: no LossConfig group {p!r}")
            node = node[p]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ConfigError(f"losses.overrides.{key}: unknown LossConfig key (known: {', '.join(sorted(node))})")
        node[parts[-1]] = value
    if not perceptual:
        base["perceptual_ex"] = base["perceptual_in"] = False
        base["segmentation"]["perceptual_ex"] = base["segmentation"]["perceptual_in"] = 0.0
        base["reconstruction"]["perceptual"] = 0.0
        base["init"]["perceptual"] = 0.0
    try:
        out = LossConfig.from_dict(base)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"losses.overrides: {e}") from None
    teacher = [f"{g}.{k}" for g in ("init", "reconstruction") for k in ("teacher_vertex", "teacher_landmark")
               if getattr(getattr(out, g), k)]
    if teacher and not cfg.data.teacher:
        raise ConfigError(f"losses.overrides: {', '.join(teacher)} weigh the fitting-engine teacher, which needs "
                          f"data.teacher: true (and occrecon data fit on every training folder)")
    return out


class Trainer:
    """A training run.

    Args:
        config: the experiment.
        out_dir: overrides ``config.logging.out_dir``.
        resume: False (fresh run; refuses to overwrite a folder that already has ``last.pt`` or a ``<stage>.pt``),
            True (``<out>/last.pt``, or a ``<stage>.pt`` that is further along) or a checkpoint path.
        allow_config_change: when resuming, accept differences in :data:`HARMLESS_KEYS`.
        dataset: use this dataset instead of ``config.data.train`` (items as ``FaceDataset``'s: ``image``
            ``(3, 224, 224)``, ``landmarks`` ``(68, 2)``, ``mask`` ``(1, 224, 224)``).
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path | None = None, resume: bool | str | Path = False,
                 allow_config_change: bool = False, dataset: torch.utils.data.Dataset | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        cfg = copy.deepcopy(config)
        if out_dir is not None:
            cfg.logging.out_dir = str(out_dir)
        cfg.validate()
        self.cfg = cfg
        self.out = Path(cfg.logging.out_dir)
        self._t0 = time.perf_counter()
        probe = resolve_device(cfg.device)
        self.dist: DistInfo = init_distributed(probe)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

        ckpt, ckpt_path = self._read_resume(resume, allow_config_change)
        seed_everything(cfg.seed)
        self.nets = self._build_nets()
        perceptual_on = self.nets.perceptual is not None
        self.loss_config = build_loss_config(cfg, perceptual_on)

        self.stage_index, self.stage_iteration = 0, 0
        self.seconds_before = 0.0
        self.acc: dict[str, float] = {}
        self.acc_n: dict[str, int] = {}
        self.last_logged: dict[str, float] = {}
        self._resume_ckpt = ckpt
        if ckpt is not None:
            self._load_weights(ckpt.encoder, ckpt.unet, "checkpoint")
            self.stage_index = cfg.stages.order.index(ckpt.stage)
            self.stage_iteration = ckpt.iteration
            m = ckpt.metrics
            self.seconds_before = float(m.get("seconds", 0.0))
            self.acc = {k: float(v) for k, v in m.get("log_acc", {}).items()}
            self.acc_n = {k: int(v) for k, v in m.get("log_count", {}).items()}
            self.last_logged = dict(m.get("last", {}))
        elif cfg.init_from:
            with _config_errors("init_from"):
                init = Checkpoint.load(resolve_path(cfg.init_from))
            self._load_weights(init.encoder, init.unet, f"init_from {cfg.init_from}")
        if dataset is None:
            with _config_errors("data.train"):
                dataset = build_dataset(cfg.data.train, cfg.data.augment, cfg.data.held_out, cfg.data.split_seed,
                                        cfg.data.cache, cfg.data.teacher)
        self.dataset = dataset
        self._wrap_ddp()

        self.logger = None
        if self.dist.is_main:
            from .logs import RunLogger

            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.out)  # left by checkpoint writes of a killed run
            if ckpt is not None:
                self._repair_checkpoints(ckpt, ckpt_path, auto=resume is True)
            cfg.to_yaml(self.out / "config.yaml")
            # drop what a killed run logged after its checkpoint (a fresh run: everything an aborted one logged)
            purge = self._global_step(self.stage_index, self.stage_iteration) if ckpt is not None else 0
            self.logger = RunLogger(self.out, tensorboard=cfg.logging.tensorboard, purge_step=purge)
            for i, name in enumerate(cfg.stages.order):
                if i == self.stage_index:
                    self.logger.csv(name).truncate(self.stage_iteration)
                elif i > self.stage_index:
                    self.logger.csv(name).truncate(0)
        self._check_mofa_source()  # now, not after the stages before it have run
        if ckpt is not None:
            restore_rng(ckpt.rng)  # last: everything above may draw random numbers, the straight run did not

    # ---- set-up ----------------------------------------------------------------------------------------------
    def _read_resume(self, resume: bool | str | Path, allow_change: bool) -> tuple[Checkpoint | None, Path | None]:
        if resume is False or resume is None:
            held = [n for n in (LAST, *(f"{s}.pt" for s in STAGES)) if (self.out / n).exists()]
            if held:
                raise FileExistsError(f"out_dir: {self.out} already holds {', '.join(held)}; resume it (--resume) or "
                                      f"choose another output folder (--out)")
            return None, None
        path, ckpt = self._latest_checkpoint() if resume is True else (Path(resume), Checkpoint.load(resume))
        check_resume_config(ckpt.config, self.cfg.to_dict(), allow_change)
        if ckpt.stage not in self.cfg.stages.order:
            raise CheckpointError(f"path: {path} is at stage {ckpt.stage!r}, which stages.order does not run")
        return ckpt, path

    def _latest_checkpoint(self) -> tuple[Path, Checkpoint]:
        """``last.pt``, or a ``<stage>.pt`` of its stage or a later one that is further along (a run killed between
        the two writes at the end of a stage); damaged stage files are passed over (they are re-created)."""
        order = self.cfg.stages.order
        last = self.out / LAST
        best = (last, Checkpoint.load(last)) if last.exists() or last.is_symlink() else None

        def position(c: Checkpoint) -> tuple[int, int]:
            return (order.index(c.stage), c.iteration) if c.stage in order else (-1, c.iteration)

        first = max(position(best[1])[0], 0) if best is not None else 0
        damaged = []
        for name in order[first:]:
            path = self.out / f"{name}.pt"
            if not path.exists():
                continue
            try:
                c = Checkpoint.load(path)
            except CheckpointError as e:
                damaged.append(e)
                continue
            if c.stage == name and (best is None or position(c) > position(best[1])):
                best = (path, c)
        if best is None:
            if damaged:
                raise damaged[0]
            raise CheckpointError(f"path: no checkpoint file {last} (nor a stage checkpoint) to resume from")
        return best

    def _repair_checkpoints(self, ckpt: Checkpoint, path: Path, auto: bool) -> None:
        """Restore the invariant a kill may have broken: a finished stage has its ``<stage>.pt`` (re-created from
        the resumed checkpoint, which is the same state, when missing or damaged), and ``last.pt`` is the latest
        checkpoint (when resuming automatically from a newer stage file). Stage file first, as when training."""
        stage_file = self.out / f"{ckpt.stage}.pt"
        if ckpt.iteration >= self.cfg.stages.stage(ckpt.stage).iterations and path.resolve() != stage_file.resolve():
            try:
                Checkpoint.load(stage_file)
            except CheckpointError:
                ckpt.save(stage_file)
        last = self.out / LAST
        if auto and path.resolve() != last.resolve():
            ckpt.save(last)

    def _mofa_source(self) -> Checkpoint:
        """``<out>/init.pt``, the start of ``mofa`` with ``start_from: init`` (FileNotFoundError / CheckpointError
        saying what is needed)."""
        path = self.out / "init.pt"
        if not (path.exists() or path.is_symlink()):
            raise FileNotFoundError(f"stages.mofa.start_from: 'init' needs {path} (run the init stage in this "
                                    f"output folder first, or use 'current' / 'scratch')")
        try:
            return Checkpoint.load(path)
        except CheckpointError as e:
            raise CheckpointError(f"stages.mofa.start_from: 'init' needs a readable {path}: {e}") from None

    def _check_mofa_source(self) -> None:
        """Before anything runs: when ``mofa`` will start from ``init.pt`` and no stage of this run writes it first,
        the file must be there."""
        cfg, order = self.cfg, self.cfg.stages.order
        if "mofa" not in order or cfg.stages.mofa.start_from != "init" or cfg.stages.mofa.iterations == 0:
            return
        m = order.index("mofa")
        if self.stage_index > m or (self.stage_index == m and self.stage_iteration > 0):
            return  # mofa has started: its start is in the checkpoint
        i = order.index("init") if "init" in order else m
        if self.stage_index <= i < m and cfg.stages.init.iterations > 0:
            return  # this run writes (or, resumed at the end of init, has repaired) init.pt before mofa
        self._mofa_source()

    def _build_nets(self) -> Nets:
        from ..morphable import load_model
        from ..nets import UNet, load_backbone

        cfg = self.cfg
        with _config_errors("model.path"):
            self.model_path = resolve_path(cfg.model.path)
            model = load_model(self.model_path).to(self.device)
        spec = {"encoder_arch": cfg.nets.encoder_arch, "encoder_scales": cfg.nets.encoder_scales,
                "image_size": cfg.data.image_size, "renderer": {"use_antialias": cfg.model.use_antialias}, "unet": None}
        renderer = build_renderer(spec, model).to(self.device)  # the checkpoint's framing, as inference rebuilds it
        with _config_errors("nets"):
            encoder, _ = build_nets(spec, model.layout, units=model.units)
            encoder = encoder.to(self.device)
        needs_unet = any(s in cfg.stages.order for s in ("unet_pretrain", "em"))
        unet = None
        if needs_unet:
            unet = (UNet() if cfg.nets.unet == "paper" else UNet.compact()).to(self.device)
        perceptual = None
        if cfg.nets.perceptual:
            with _config_errors("nets.perceptual"):
                weights = resolve_path(cfg.nets.perceptual_weights) if cfg.nets.perceptual_weights else None
                perceptual = load_backbone(cfg.nets.perceptual, weights).to(self.device)
            set_trainable(perceptual, False)
        return Nets(encoder, unet, renderer, perceptual, encoder, unet)

    def _load_weights(self, encoder_state: dict, unet_state: dict | None, source: str) -> None:
        try:
            self.nets.encoder.load_state_dict(encoder_state)
            if self.nets.unet is not None and unet_state is not None:
                self.nets.unet.load_state_dict(unet_state)
        except RuntimeError as e:
            raise CheckpointError(f"{source}: its network weights do not fit this config's networks: {e}") from e

    def _wrap_ddp(self) -> None:
        if not self.dist.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.nets.encoder_train = DDP(self.nets.encoder, device_ids=ids)
        if self.nets.unet is not None:
            self.nets.unet_train = DDP(self.nets.unet, device_ids=ids)

    def nets_info(self) -> dict[str, Any]:
        """The checkpoint's ``"nets"`` entry (:func:`occrecon.checkpoint.nets_spec`): ``model_path`` as configured
        when it is a ``shared:`` / ``package:`` path (portable), else absolute."""
        path = self.cfg.model.path
        if not path.startswith((SHARED_PREFIX, PACKAGE_PREFIX)):
            path = str(self.model_path.resolve())
        return nets_spec(model_path=path, encoder_arch=self.cfg.nets.encoder_arch,
                         unet=self.cfg.nets.unet if self.nets.unet is not None else None,
                         image_size=self.cfg.data.image_size, layout=self.nets.layout,
                         encoder_scales=self.nets.encoder.scales, use_antialias=self.cfg.model.use_antialias,
                         focal=float(self.nets.renderer.camera.focal))

    # ---- optimisation -----------------------------------------------------------------------------------------
    def _optimisers(self, stage: str) -> tuple[dict, dict]:
        o = self.cfg.optim
        lrs = {"encoder": o.encoder_lr, "unet": o.encoder_lr * o.unet_lr_factor}
        opts, scheds = {}, {}
        for name in STAGE_NETS[stage]:
            params = getattr(self.nets, name).parameters()
            if o.name == "adadelta":
                opt = torch.optim.Adadelta(params, lr=lrs[name], rho=o.rho, eps=o.eps, weight_decay=o.weight_decay)
            else:
                opt = torch.optim.Adam(params, lr=lrs[name], eps=o.eps, weight_decay=o.weight_decay)
            opts[name] = opt
            scheds[name] = torch.optim.lr_scheduler.StepLR(opt, step_size=o.decay_every, gamma=o.decay)
        return opts, scheds

    def _global_step(self, stage_index: int, iteration: int) -> int:
        order = self.cfg.stages.order
        return sum(self.cfg.stages.stage(s).iterations for s in order[:stage_index]) + iteration

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def _check_parameters(self, stage: str, iteration: int) -> None:
        for name in ("encoder", "unet"):
            module = getattr(self.nets, name)
            if module is None:
                continue
            for pname, p in module.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    raise TrainingDiverged(f"stage {stage}, iteration {iteration}: parameter {name}.{pname} is "
                                           f"NaN/Inf; stopped without saving; {self._last_good()}")

    def _last_good(self) -> str:
        last = self.out / LAST
        if not last.is_file():
            return "no checkpoint was written yet"
        try:
            c = Checkpoint.load(last)
            return f"the last good checkpoint is {last} (stage {c.stage}, iteration {c.iteration})"
        except CheckpointError:
            return f"the last checkpoint is {last}"

    def _checkpoint(self, stage: str, iteration: int, opts: dict, scheds: dict, stage_done: bool) -> None:
        self._check_parameters(stage, iteration)
        if self.dist.is_main:
            metrics = {"seconds": self.seconds_before + time.perf_counter() - self._t0,
                       "global_step": self._global_step(self.stage_index, iteration),
                       "log_acc": dict(self.acc), "log_count": dict(self.acc_n), "last": dict(self.last_logged)}
            ck = Checkpoint(stage=stage, iteration=iteration, config=self.cfg.to_dict(), nets=self.nets_info(),
                            encoder=self.nets.encoder.state_dict(),
                            unet=self.nets.unet.state_dict() if self.nets.unet is not None else None,
                            optimizers={k: v.state_dict() for k, v in opts.items()},
                            schedulers={k: v.state_dict() for k, v in scheds.items()},
                            rng=capture_rng(), metrics=metrics)
            if stage_done:  # first: last.pt may only say "finished" once the stage's own file is on disk
                ck.save(self.out / f"{stage}.pt")
            ck.save(self.out / LAST)
        if stage_done and self.dist.distributed:
            torch.distributed.barrier()

    # ---- the loop --------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or continue) every stage of ``stages.order``; returns the last logged values per stage."""
        summary: dict[str, Any] = {}
        try:
            order = self.cfg.stages.order
            for idx in range(self.stage_index, len(order)):
                start = self.stage_iteration if idx == self.stage_index else 0
                self.stage_index, self.stage_iteration = idx, start
                summary[order[idx]] = self._run_stage(order[idx], start)
        finally:
            if self.logger is not None:
                self.logger.close()
        return summary

    def _start_stage(self, stage: str) -> None:
        if stage != "mofa":
            return
        how = self.cfg.stages.mofa.start_from
        if how == "init":
            self.nets.encoder.load_state_dict(self._mofa_source().encoder)
        elif how == "scratch":
            from ..nets import Encoder

            fresh = Encoder(self.nets.layout, arch=self.cfg.nets.encoder_arch, scales=self.cfg.nets.encoder_scales,
                            units=self.nets.renderer.model.units)
            self.nets.encoder.load_state_dict(fresh.state_dict())

    def _run_stage(self, stage: str, start: int) -> dict[str, float]:
        cfg = self.cfg
        total = cfg.stages.stage(stage).iterations
        ck = self._resume_ckpt
        resuming_here = ck is not None and ck.stage == stage and ck.iteration == start
        self._resume_ckpt = None
        if start >= total:
            return dict(self.last_logged)
        if start == 0 and not resuming_here:
            self._start_stage(stage)
            self.acc, self.acc_n = {}, {}
        opts, scheds = self._optimisers(stage)
        if resuming_here:
            for k in opts:
                opts[k].load_state_dict(ck.optimizers[k])
                scheds[k].load_state_dict(ck.schedulers[k])
        batch_size = cfg.stage_batch_size(stage)
        stage_seed = cfg.seed + 1000 * cfg.stages.order.index(stage)
        loader = iter(make_loader(self.dataset, batch_size, stage_seed, self.dist.rank, self.dist.world_size,
                                  start, cfg.data.num_workers))
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=stage, dynamic_ncols=True,
                   disable=not (cfg.logging.progress and self.dist.is_main))
        log = cfg.logging
        try:
            for it in range(start, total):
                batch = prepare_batch(next(loader), self.device, cfg.data.image_size)
                step = step_function(stage, it, cfg.stages.em, cfg.stages.mofa.mask)
                out = step(self.nets, batch, self.loss_config)
                self._check_finite(stage, it + 1, out)
                for name in out.optimise:
                    opts[name].zero_grad(set_to_none=True)
                out.loss.backward()
                self._check_gradients(stage, it + 1, out.optimise)
                for name in out.optimise:
                    opts[name].step()
                with warnings.catch_warnings():  # EM steps both schedules each iteration, one optimiser idles
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                    for s in scheds.values():
                        s.step()
                self._accumulate(out)
                done = it + 1
                self.stage_iteration = done
                bar.update(1)
                if done % log.log_every == 0 or done == total:
                    self._log(stage, done, opts, bar)
                if log.sample_every and done % log.sample_every == 0 and self.logger is not None:
                    self.logger.sample(stage, done, self._global_step(self.stage_index, done), out.target,
                                       out.render, out.mask, log.num_samples)
                if done % log.checkpoint_every == 0 or done == total:
                    self._checkpoint(stage, done, opts, scheds, stage_done=done == total)
        finally:
            bar.close()
        for module in (self.nets.encoder, self.nets.unet):
            broadcast_buffers(module, self.dist)
        check_replicas_identical({"encoder": self.nets.encoder, "unet": self.nets.unet}, self.dist)
        return dict(self.last_logged)

    def _check_finite(self, stage: str, iteration: int, out: StepOutput) -> None:
        values = {k: float(v.detach()) for k, v in out.terms.items()}
        values["loss"] = float(out.loss.detach())
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if any_flag(bool(bad), self.dist, self.device):
            where = (f"term {bad[0]!r} is {values[bad[0]]}" if bad else "a loss term is NaN/Inf on another process")
            raise TrainingDiverged(f"stage {stage}, iteration {iteration}: {where}; training stopped, "
                                   f"{self._last_good()}")

    def _check_gradients(self, stage: str, iteration: int, names: tuple[str, ...]) -> None:
        """Stop before an update with NaN/Inf gradients (finite loss, e.g. an overflow in a backward pass), so
        the parameters stay finite. After DDP's all-reduce every process sees the same gradients."""
        for name in names:
            grads = [p.grad for p in getattr(self.nets, name).parameters() if p.grad is not None]
            if grads and not math.isfinite(float(torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])))):
                raise TrainingDiverged(f"stage {stage}, iteration {iteration}: the gradient of the {name} is "
                                       f"NaN/Inf; training stopped before the update, {self._last_good()}")

    def _accumulate(self, out: StepOutput) -> None:
        values = {k: float(v.detach()) for k, v in out.terms.items()}
        values["loss"] = float(out.loss.detach())
        for k, v in values.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
            self.acc_n[k] = self.acc_n.get(k, 0) + 1

    def _log(self, stage: str, iteration: int, opts: dict, bar) -> None:
        means = {k: self.acc[k] / self.acc_n[k] for k in sorted(self.acc)}
        means = all_reduce_mean(means, self.dist, self.device)
        for name, opt in opts.items():
            means[f"lr_{name}"] = float(opt.param_groups[0]["lr"])
        self.acc, self.acc_n = {}, {}
        self.last_logged = means
        if self.logger is not None:
            seconds = self.seconds_before + time.perf_counter() - self._t0
            self.logger.log(stage, iteration, self._global_step(self.stage_index, iteration), means, seconds)
            bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4g}")


def train(config: TrainConfig | str | Path, out_dir: str | Path | None = None, resume: bool | str | Path = False,
          allow_config_change: bool = False) -> dict[str, Any]:
    """Run a training experiment (a :class:`TrainConfig` or a YAML path); returns :meth:`Trainer.run`'s summary."""
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_yaml(config)
    return Trainer(config, out_dir=out_dir, resume=resume, allow_config_change=allow_config_change).run()
