"""Command line (``occrecon`` or ``python -m occrecon``): ``demo``, ``info``, ``model convert``, ``model albedo
build``, ``checkpoint export``, ``data landmarks``, ``data synth``, ``train``, ``evaluate``, ``evaluate-fit`` and
``reconstruct``. Each command lives in its own module of this package and registers itself with
``register(subparsers)`` (:data:`COMMANDS`, in the order of the help).

Exit status: 0 when everything asked for was done; 1 when a command ran but some inputs failed (e.g. ``reconstruct``
could not reconstruct every photo; each one is named); 2 for bad arguments or inputs — argparse's usage errors, and
a missing, unreadable or refused file (checkpoint, photo, face model, landmark CSV), a value out of range, a device
this machine does not have, an optional package that is not installed: one line ``occrecon <command>: error: ...``
on stderr, no traceback (``--debug``, or ``OCCRECON_TRACEBACK=1``, shows where such an error came from).
``occrecon train`` reports its own errors (status 1).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

#: The command modules of this package, in the order of the help; each has ``register(subparsers)``.
COMMANDS = ("demo", "reconstruct", "evaluate", "train", "data", "model", "checkpoint", "info")


#: What a bad argument or input raises (see the module docstring): reported in one line, exit status 2.
USER_ERRORS = (OSError, ValueError, ImportError)
#: Help of the ``--trusted`` flag of every command that reads checkpoints.
TRUSTED_HELP = ("read checkpoints that hold objects other than tensors and plain containers (a full unpickle: it "
                "can run code, so only for checkpoints from a trusted source)")


def add_trusted_flag(p: argparse.ArgumentParser) -> None:
    """The ``--trusted`` flag of a command that reads checkpoints (``trusted=True`` of the API)."""
    p.add_argument("--trusted", action="store_true", help=TRUSTED_HELP)


def command_name(args: argparse.Namespace) -> str:
    """``"reconstruct"``, ``"data synth"``, ``"model convert"`` ...: the command as typed, for error lines."""
    sub = {"data": "data_command", "model": "model_command", "checkpoint": "checkpoint_command"}.get(args.command)
    name = f"{args.command} {getattr(args, sub)}" if sub else args.command
    return f"{name} {args.albedo_command}" if getattr(args, "albedo_command", None) else name


def error_line(command: str, exc: BaseException | str) -> str:
    """``occrecon <command>: error: <message>`` on one line (a multi-line message joined)."""
    from ..checkpoint import UntrustedCheckpointError

    if isinstance(exc, UntrustedCheckpointError):
        exc = exc.with_remedy("pass --trusted")  # the API's trusted=True is this flag here
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, BaseException) and not text:
        text = type(exc).__name__
    elif isinstance(exc, ModuleNotFoundError):
        text = f"{text} (an optional package this command needs is not installed)"
    return f"occrecon {command}: error: {text}"


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; a bad argument or input (:data:`USER_ERRORS`) becomes one line on stderr and exit
    status 2 (with ``args.debug`` or ``OCCRECON_TRACEBACK`` set, the traceback instead)."""
    if args.command == "train":  # occrecon.cli.train reports its own errors
        return args.func(args)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        if getattr(args, "debug", False) or os.environ.get("OCCRECON_TRACEBACK"):
            raise
        print(error_line(command_name(args), exc), file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``occrecon`` parser with every command of :data:`COMMANDS` registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="occrecon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"occrecon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``occrecon`` and ``python -m occrecon``."""
    return run(build_parser().parse_args(argv))
