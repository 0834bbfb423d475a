"""``occrecon train`` / ``python -m occrecon.train``: run a training experiment from a YAML config."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "configure_parser", "run_command", "one_line", "main"]


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` arguments to ``p``."""
    p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue a killed run: from OUT/last.pt, or from the checkpoint CKPT")
    p.add_argument("--out", help="output folder (overrides logging.out_dir)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="when resuming, accept changes of logging.* and stages.*.iterations")
    p.set_defaults(func=run_command)
    return p


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``occrecon train`` on the CLI's subparsers."""
    return configure_parser(sub.add_parser(
        "train", help="train the encoder and the segmentation UNet (init, unet_pretrain, em, mofa stages)"))


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a diverged run, a refused resume, a bad config, an unreadable checkpoint or a file
    error exits with status 1 after one line on stderr."""
    from ..checkpoint import CheckpointError
    from ..train.config import ConfigError, TrainConfig
    from ..train.distributed import shutdown_distributed
    from ..train.loop import ConfigMismatchError, TrainingDiverged, train

    try:
        summary = train(TrainConfig.from_yaml(args.config), out_dir=args.out, resume=args.resume,
                        allow_config_change=args.allow_config_change)
    except (TrainingDiverged, ConfigMismatchError, ConfigError, CheckpointError, OSError, ImportError) as e:
        print(f"occrecon train: error: {one_line(e)}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed()
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    for stage, values in summary.items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if not k.startswith("lr_"))
        print(f"{stage}: {shown}")
    return 0


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line: its lines stripped and joined with "; " (after a line that ends with
    a colon, with a space), e.g. the list of config differences of a refused resume."""
    parts = [line.strip().lstrip(";").strip() for line in str(error).splitlines()]
    parts = [p for p in parts if p] or [type(error).__name__]
    text = parts[0]
    for p in parts[1:]:
        text += (" " if text.endswith(":") else "; ") + p
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m occrecon.train``."""
    parser = configure_parser(argparse.ArgumentParser(prog="python -m occrecon.train", description=__doc__))
    args = parser.parse_args(argv)
    return args.func(args)
