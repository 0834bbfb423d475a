"""Command line: ``occrecon demo``, ``occrecon info``, ``occrecon model convert``, ``occrecon checkpoint export``,
``occrecon data ...``, ``occrecon reconstruct``, ``occrecon evaluate``, ``occrecon evaluate-fit`` and ``occrecon train``.

Exit status: 0 on success; 2 for bad arguments or inputs — argparse's usage errors, and a missing, unreadable or
refused file (checkpoint, photo, face model, landmark CSV), a value out of range, a device this machine does not
have, an optional package that is not installed: one line ``occrecon <command>: error: ...`` on stderr, no
traceback (set ``OCCRECON_TRACEBACK=1`` to see where such an error came from); 1 when a command ran but failed
(e.g. ``reconstruct`` reconstructed no photo). ``occrecon train`` reports its own errors (status 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .data.generate import add_synth_parser
from .data.landmarks_cmd import add_landmarks_parser


def _checkpoint_export(args: argparse.Namespace) -> int:
    from .api import export_checkpoint

    out = export_checkpoint(Path(args.src), Path(args.dst), trusted=args.trusted)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB, inference only)")
    return 0


def _demo_neighbour(args: argparse.Namespace) -> None:
    from .demo import run_neighbour_demo

    res = run_neighbour_demo(Path(args.out), image=Path(args.image) if args.image else None,
                             points=Path(args.points) if args.points else None)
    print(f"neighbourhood-min demo on {res['image']}")
    print("  render = photo shifted by (2, -3) px with sunglasses pasted over the eyes")
    print("   k   loss (mean d^2)   mean d visible   mean d occluder")
    for k in (1, 3, 5):
        print(f"   {k}   {res[f'loss_k{k}']:14.5f}   {res[f'mean_dist_visible_k{k}']:14.4f}"
              f"   {res[f'mean_dist_occluder_k{k}']:15.4f}")
    print(f"wrote {res['png']}  (target | render | distance k=1 | distance k=5)")


def _demo_reconstruction(args: argparse.Namespace) -> None:
    from .demo import run_reconstruction_demo

    fit = None if args.fit == "none" else args.fit
    res = run_reconstruction_demo(Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                                  fit=fit, trusted=args.trusted)
    print(f"occlusion-robust reconstruction of the development faces and the astronaut ({res['checkpoint']})")
    print("  each face as it is, and with random occluders pasted on (exact ground-truth mask); the bundled encoder"
          + (f" alone, then refined by the fitting engine ('{fit}')" if fit else ""))
    print("  share = occluded share of Φ (clean / occluded photo); F1 of the mask vs the truth on the occluded photo,")
    print("  beside the F1 of 'all of its Φ is face' (each method has its own Φ);")
    print("  lm = landmark error on the clean photo / inter-ocular distance")
    head = f"  {'face':12s} {'encoder: share':>15s} {'F1':>6s} {'all-Φ F1':>8s} {'lm':>6s}"
    if fit:
        head += f"   {'fit: share':>12s} {'F1':>6s} {'lm':>6s}   {'all-Φ F1':>8s}"
    print(head)

    def line(name, r, mean=False):
        key = (lambda k: f"mean_{k}") if mean else (lambda k: k)
        text = (f"  {name:12s} {r[key('fraction_clean') if mean else 'occlusion_fraction_clean']:7.3f}/"
                f"{r[key('fraction_occluded') if mean else 'occlusion_fraction_occluded']:.3f}"
                f" {r[key('f1_occluded')]:6.3f} {r[key('f1_all_visible')]:8.3f} {r[key('landmark_error')]:6.3f}")
        if fit:
            p = "fit_mean_" if mean else "fit_"
            text += (f"   {r[p + ('fraction_clean' if mean else 'occlusion_fraction_clean')]:5.3f}/"
                     f"{r[p + ('fraction_occluded' if mean else 'occlusion_fraction_occluded')]:.3f}"
                     f" {r[p + 'f1_occluded']:6.3f} {r[p + 'landmark_error']:6.3f}   {r[p + 'f1_all_visible']:8.3f}")
        print(text)

    for f in res["faces"]:
        line(f["face"][:12], f)
    line("mean", res, mean=True)
    print(f"wrote {res['png']}  (per face: target | encoder render | encoder mask"
          + (" | fitted render | fitted mask" if fit else "") + ", clean then occluded; red = rejected by the mask)")


def _demo(args: argparse.Namespace) -> int:
    if args.what in ("reconstruction", "all"):
        _demo_reconstruction(args)
    if args.what in ("neighbour", "all"):
        _demo_neighbour(args)
    return 0


def _info(_args: argparse.Namespace) -> int:
    import occrecon

    print(json.dumps(occrecon.build_info(), indent=2))
    return 0


def _model_convert(args: argparse.Namespace) -> int:
    from .morphable import load_model

    model = load_model(Path(args.src), args.format, albedo_components=args.albedo_components,
                       cache_dir=args.cache_dir)
    out = model.save(Path(args.dst))
    print(f"wrote {out}: {model.extra_repr()}")
    return 0


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
    from .api import UntrustedCheckpointError

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
    status 2."""
    if args.command == "train":  # occrecon.train.cli reports its own errors
        return args.func(args)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        if os.environ.get("OCCRECON_TRACEBACK"):
            raise
        print(error_line(command_name(args), exc), file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="occrecon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="reconstruct real faces with the bundled checkpoint (and the neighbourhood-min "
                                    "loss demo); writes PNGs")
    p.add_argument("what", nargs="?", choices=["reconstruction", "neighbour", "all"], default="all",
                   help="which demo (default: all)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--checkpoint", help="reconstruction: a training checkpoint (default: the bundled one)")
    p.add_argument("--fit", choices=["fast", "quality", "none"], default="fast",
                   help="reconstruction: refine the encoder's prediction with the fitting engine (default fast)")
    p.add_argument("--image", help="neighbour: a face photo (default: the first development face)")
    p.add_argument("--points", help="neighbour: its 5-point detection file: 'x y' per line (eyes, nose, mouth corners)")
    add_trusted_flag(p)
    p.set_defaults(func=_demo)
    p = sub.add_parser("info", help="how the compiled extension was built")
    p.set_defaults(func=_info)
    p = sub.add_parser("model", help="face models")
    model_sub = p.add_subparsers(dest="model_command", required=True)
    p = model_sub.add_parser("convert", help="convert a face model to occrecon's .npz format")
    p.add_argument("src", help="source model: a file, or the ICT-FaceKit FaceXModel folder")
    p.add_argument("dst", help="output .npz")
    p.add_argument("--format", choices=["ict-npz", "ict-obj", "sfm", "bfm2017", "deep3d"],
                   help="source format (default: guessed from the file)")
    p.add_argument("--albedo-components", type=int, default=80, metavar="K",
                   help="albedo prior components for models without albedo (ICT, SFM; default 80)")
    p.add_argument("--cache-dir", help="albedo prior cache (default: $OCCRECON_CACHE or ~/.cache/occrecon)")
    p.set_defaults(func=_model_convert)
    p = model_sub.add_parser("albedo", help="learned albedo models and illumination priors")
    albedo_sub = p.add_subparsers(dest="albedo_command", required=True)
    __import__("occrecon.fit.appearance", fromlist=["add_parser"]).add_parser(albedo_sub)
    p = sub.add_parser("checkpoint", help="training checkpoints")
    ckpt_sub = p.add_subparsers(dest="checkpoint_command", required=True)
    p = ckpt_sub.add_parser("export", help="inference-only copy of a training checkpoint (no optimiser/RNG state)")
    p.add_argument("src", help="a training checkpoint (occrecon train)")
    p.add_argument("dst", help="output file")
    add_trusted_flag(p)
    p.set_defaults(func=_checkpoint_export)
    p = sub.add_parser("data", help="face landmarks, alignment and occlusion datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    add_landmarks_parser(data_sub)
    add_synth_parser(data_sub)
    from .train.cli import add_parser as add_train_parser
    add_train_parser(sub)
    __import__("occrecon.eval.evaluate", fromlist=["add_parser"]).add_parser(sub)
    __import__("occrecon.eval.fitting", fromlist=["add_parser"]).add_parser(sub)
    __import__("occrecon.reconstruct", fromlist=["add_parser"]).add_parser(sub)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
