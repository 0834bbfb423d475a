"""Run a module as in eval mode without changing it (thread-safe inference on shared nets)."""
from __future__ import annotations

import copy

import torch

__all__ = ["eval_view"]


def eval_view(module: torch.nn.Module | None) -> torch.nn.Module | None:
    """``module`` as in eval mode without touching it: a copy of its module tree (new module objects, each with
    ``training = False``) whose modules share the originals' parameter, buffer and hook dicts, so the view runs on
    the current weights and statistics and sees any later change of them. Made per call (a few microseconds per
    submodule), so it also follows a replaced submodule. A scripted module, whose flags live in TorchScript, is used
    as it is when it is in eval mode and refused otherwise."""
    if module is None:
        return None
    if isinstance(module, torch.jit.ScriptModule):
        if any(m.training for m in module.modules()):
            raise ValueError(f"{type(module).__name__}: a scripted net in training mode cannot be run in eval mode "
                             f"without changing it; call .eval() on it (or pass the unscripted module)")
        return module
    views: dict[int, torch.nn.Module] = {}

    def view(m: torch.nn.Module) -> torch.nn.Module:
        if id(m) not in views:  # a submodule reached twice stays one module
            v = copy.copy(m)  # a new __dict__ referring to the same _parameters / _buffers / hook dicts
            views[id(m)] = v
            v.__dict__["training"] = False
            v.__dict__["_modules"] = {k: None if c is None else view(c) for k, c in m._modules.items()}
        return views[id(m)]

    return view(module)
