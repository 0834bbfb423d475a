"""``occrecon checkpoint export``: an inference-only copy of a training checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_trusted_flag

__all__ = ["register"]


def _checkpoint_export(args: argparse.Namespace) -> int:
    from ..api import export_checkpoint

    out = export_checkpoint(Path(args.src), Path(args.dst), trusted=args.trusted)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB, inference only)")
    return 0



def register(sub) -> None:
    p = sub.add_parser("checkpoint", help="training checkpoints")
    ckpt_sub = p.add_subparsers(dest="checkpoint_command", required=True)
    p = ckpt_sub.add_parser("export", help="inference-only copy of a training checkpoint (no optimiser/RNG state)")
    p.add_argument("src", help="a training checkpoint (occrecon train)")
    p.add_argument("dst", help="output file")
    add_trusted_flag(p)
    p.set_defaults(func=_checkpoint_export)
