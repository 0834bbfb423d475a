"""Multi-process data parallel helpers: ``torchrun`` environment, process group, collectives used by the loop.

``torchrun --nproc_per_node=N -m occrecon.train CONFIG`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR``/``MASTER_PORT``; :func:`init_distributed` reads them and starts a ``gloo`` (CPU) or ``nccl`` (CUDA)
process group. Without them everything runs as a single process and the collectives here are no-ops.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "shutdown_distributed", "all_reduce_mean", "any_flag",
           "check_replicas_identical", "parameter_digest", "broadcast_buffers", "ReplicaMismatchError"]


class ReplicaMismatchError(RuntimeError):
    """The processes of a data-parallel run hold different parameters (they must stay identical)."""


@dataclass(frozen=True)
class DistInfo:
    """Rank of this process, number of processes, local rank (GPU index) and whether it owns the outputs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, samples and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); return this process's place.

    Backend: ``nccl`` for CUDA devices, ``gloo`` otherwise. An already initialised group is reused.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} / WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    if world == 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def shutdown_distributed() -> None:
    """Destroy the process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average ``{name: number}`` over the processes (every process must pass the same keys, in any order)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one process (so every process can stop together)."""
    if not info.distributed:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_buffers(module: torch.nn.Module | None, info: DistInfo) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every process.

    DDP broadcasts buffers at the start of each forward pass, so after a stage's last step every rank still holds
    the statistics of its own last batch; this makes them rank 0's (the ones its checkpoint stores)."""
    if module is None or not info.distributed:
        return
    for b in module.buffers():
        dist.broadcast(b.data, src=0)


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the raw bytes of a module's parameters and floating buffers, in ``state_dict`` order."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        if t.is_floating_point():
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_replicas_identical(modules: dict[str, torch.nn.Module | None], info: DistInfo) -> None:
    """Raise :class:`ReplicaMismatchError` unless every process holds bit-identical parameters and buffers.

    Compares :func:`parameter_digest` of each module across the ranks (exact, not a tolerance); a no-op in a
    single process.
    """
    if not info.distributed:
        return
    mine = {name: parameter_digest(m) for name, m in modules.items() if m is not None}
    gathered: list[dict[str, str] | None] = [None] * info.world_size
    dist.all_gather_object(gathered, mine)
    for r, theirs in enumerate(gathered):
        for name in mine:
            if theirs.get(name) != gathered[0].get(name):
                raise ReplicaMismatchError(f"{name}: the parameters of rank {r} differ from those of rank 0")
