"""Torch devices named by users: :func:`check_device` (one check and one message for every command and API)."""
from __future__ import annotations

import torch

__all__ = ["check_device"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine; ValueError naming ``name`` (the argument, or a
    command-line flag) otherwise: a malformed device string, CUDA (or another backend) missing, an index beyond the
    devices present."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {device!r} is not a torch device ({_first_line(exc)})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} {device}: no CUDA device is available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, ValueError) as exc:  # a build without the backend asserts
        raise ValueError(f"{name} {device}: not available on this machine ({_first_line(exc)})") from None
    return dev
