"""``occrecon data landmarks`` (:mod:`occrecon.data.landmarks_cmd`) and ``occrecon data synth``
(:mod:`occrecon.data.generate`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import landmarks_cmd
from ..data.align import TEMPLATE_SIZE
from ..data.faces import LICENCE_FILTERS
from ..data.generate import generate_dataset
from ..data.landmarks_cmd import make_detector, run_landmarks
from ..device import check_device

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("data", help="face landmarks, alignment and occlusion datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    add_landmarks_parser(data_sub)
    add_synth_parser(data_sub)
    add_fit_parser(data_sub)


def _fit_command(args: argparse.Namespace) -> int:
    from ..fit.dataset import fit_dataset

    res = fit_dataset(args.dataset, args.model, preset=args.preset, batch_size=args.batch_size,
                      held_out=args.held_out, overwrite=args.overwrite, progress=sys.stderr.isatty())
    print(f"fitted {res['fitted']} samples ({res['resumed']} chunks already done) of {res['samples']} in "
          f"{res['seconds']:.0f} s; wrote {res['root']}/theta.npy, loss.npy, converged.npy, diverged.npy, masks/")
    return 0


def add_fit_parser(data_subparsers) -> argparse.ArgumentParser:
    """``occrecon data fit``."""
    from ..fit import FIT_PRESETS
    from ..fit import dataset as fit_dataset_module

    p = data_subparsers.add_parser("fit", help="fit every sample of a dataset with the fitting engine: the teacher "
                                                "of training (DATASET/fit/)",
                                   description=fit_dataset_module.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset folder (occrecon data synth)")
    p.add_argument("--model", help="face model (default: the shipped model; must be the encoder's)")
    p.add_argument("--preset", choices=sorted(FIT_PRESETS), default="standard", help="fit preset (default standard)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per fit and per resumable chunk (default 16)")
    p.add_argument("--held-out", action="store_true",
                   help="also fit the samples written as held out (split: held_out; by default they are skipped)")
    p.add_argument("--overwrite", action="store_true", help="discard a fit/ folder made with other settings")
    p.set_defaults(func=_fit_command)
    return p


def _landmarks_command(args: argparse.Namespace) -> int:
    if not Path(args.images_dir).is_dir():
        print(f"occrecon data landmarks: error: images_dir {args.images_dir}: not a folder", file=sys.stderr)
        return 2
    if args.backend == "fan":
        check_device(args.device, "--device")  # ValueError: one line from occrecon.cli, exit status 2
    detector = make_detector(args.backend, args.upsample, args.fan_weights, args.device)
    run_landmarks(args.images_dir, args.out, detector, aligned_out=args.aligned_out, size=args.size,
                  progress=sys.stderr.isatty())
    return 0


def add_landmarks_parser(data_subparsers) -> argparse.ArgumentParser:
    """Register ``landmarks`` under the ``occrecon data`` sub-command group."""
    p = data_subparsers.add_parser("landmarks", help="detect 68 landmarks in a folder of photos (authors' CSV)",
                                   description=landmarks_cmd.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images_dir", help="folder of photos (scanned recursively)")
    p.add_argument("--out", required=True, help="landmark CSV to write (relative_path,x1,y1,...,x68,y68)")
    p.add_argument("--backend", choices=["dlib", "fan"], default="dlib",
                   help="dlib HOG + 68-point predictor (default) or face-alignment's FAN (optional package)")
    p.add_argument("--aligned-out", help="also write aligned crops, their landmarks.csv and transforms.csv here")
    p.add_argument("--size", type=int, default=TEMPLATE_SIZE, help="aligned crop size (default 224)")
    p.add_argument("--upsample", type=int, default=1, help="dlib: image doublings before detection (default 1)")
    p.add_argument("--fan-weights", help="fan: torch-hub folder whose checkpoints/ holds face-alignment's weights")
    p.add_argument("--device", default="cpu", help="fan: torch device (default cpu)")
    p.set_defaults(func=_landmarks_command)
    return p


def _synth_command(args: argparse.Namespace) -> int:
    try:
        res = generate_dataset(args.out, args.synthetic, args.real, seed=args.seed, model_path=args.model,
                               permissive_only=args.permissive_only, occluded_fraction=args.occluded_fraction,
                               max_occluders=args.max_occluders, workers=args.workers, overwrite=args.overwrite,
                               appearance=args.appearance, faces=args.faces, licence=args.licence,
                               n_held_out=args.held_out_real)
    except (ValueError, FileNotFoundError) as e:
        print(f"occrecon data synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {res['samples']} samples to {res['root']} in {res['seconds']:.1f} s "
          f"({res['samples_per_s']:.1f} samples/s)")
    return 0


def add_synth_parser(data_subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` under the ``occrecon data`` sub-command group."""
    p = data_subparsers.add_parser("synth", help="write an occlusion dataset (synthetic renders + real faces)",
                                   description="write an occlusion dataset folder (synthetic renders + real "
                                               "faces) from a seed")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="synthetic samples (default 0)")
    p.add_argument("--real", type=int, default=0, metavar="N", help="real-face samples (default 0)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="dataset seed (default 0)")
    p.add_argument("--model", metavar="PATH", help="face model (default: shared/assets/models/sfm_3448.npz)")
    p.add_argument("--permissive-only", action="store_true",
                   help="use only permissively licensed library cut-outs (required for shipped checkpoints)")
    p.add_argument("--occluded-fraction", type=float, default=0.75, metavar="F",
                   help="probability that a sample gets occluders (default 0.75)")
    p.add_argument("--max-occluders", type=int, default=3, metavar="K", help="occluders per sample, 1..K (default 3)")
    p.add_argument("--appearance", default="auto", metavar="auto|learned|legacy",
                   help="albedo and light of the synthetic faces: learned (the model's learned albedo and "
                        "illumination prior), legacy (generic prior, random skin tone, hand-set light ranges) or "
                        "auto (default: learned when the model has both)")
    p.add_argument("--faces", nargs="?", const=True, metavar="FOLDER",
                   help="real faces from a real-face folder (default with the flag alone: shared/assets/faces/train) "
                        "instead of the development photos: its training identities, split as evaluate-fit splits")
    p.add_argument("--licence", choices=LICENCE_FILTERS, default="licensed",
                   help="with --faces: which training faces may be used (default licensed: the only ones a shipped "
                        "model may learn from; 'all' is for experiments)")
    p.add_argument("--held-out-real", type=int, default=0, metavar="N",
                   help="with --faces: also N samples of the held-out identities (split: held_out; never trained on)")
    p.add_argument("--workers", type=int, default=2, metavar="W", help="processes (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.set_defaults(func=_synth_command)
    return p
