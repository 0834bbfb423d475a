"""nvdiffrast's ``get_log_level`` / ``set_log_level``: the verbosity of the renderer's messages.

Levels as nvdiffrast's (c10's): 0 info, 1 warning (the default), 2 error, 3 fatal. They map onto the standard
``logging`` logger ``"occrecon.render"`` (INFO, WARNING, ERROR, CRITICAL), so a Python logging configuration sees
the same messages; unlike nvdiffrast this does not change PyTorch's own C++ log level. At level 0 the renderer
reports, for example, each mip stack :func:`occrecon.render.texture` builds inside a call (build it once with
``texture_construct_mip`` instead).
"""
from __future__ import annotations

import logging

__all__ = ["get_log_level", "set_log_level", "logger"]

logger = logging.getLogger("occrecon.render")
_LEVELS = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def get_log_level() -> int:
    """The current level: 0 info, 1 warning, 2 error, 3 fatal (the logger's effective level, rounded up)."""
    effective = logger.getEffectiveLevel()
    for i, lvl in enumerate(_LEVELS):
        if effective <= lvl:
            return i
    return 3


def set_log_level(level: int) -> None:
    """Print the renderer's messages at ``level`` and above (0 info, 1 warning, 2 error, 3 fatal)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
        raise ValueError(f"level must be an int in 0..3 (0 info, 1 warning, 2 error, 3 fatal), got {level!r}")
    logger.setLevel(_LEVELS[level])
    if level == 0 and not logger.handlers and not logging.getLogger().handlers:
        logging.basicConfig()  # nvdiffrast prints at level 0 with no set-up: so do we


if logger.level == logging.NOTSET:
    logger.setLevel(logging.WARNING)
