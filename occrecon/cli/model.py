"""``occrecon model convert`` and ``occrecon model albedo build`` (:mod:`occrecon.fit.appearance`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.faces import HELD_OUT, LICENCE_FILTERS, SPLIT_SEED, identity_split, licence_filter, read_face_folder
from ..fit import appearance
from ..fit.appearance import build_albedo_model
from ..fit.config import FIT_PRESETS
from ..morphable import load_model

__all__ = ["register"]


def _model_convert(args: argparse.Namespace) -> int:
    model = load_model(Path(args.src), args.format, albedo_components=args.albedo_components,
                       cache_dir=args.cache_dir)
    out = model.save(Path(args.dst))
    print(f"wrote {out}: {model.extra_repr()}")
    return 0


def run_albedo_build(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    records = read_face_folder(args.faces)
    n_all = len(records)
    if not args.include_held_out:
        records, _ = identity_split(records, args.held_out, args.split_seed)
    records = [r for r in licence_filter(records, args.licence) if "possibly_occluded" not in r.flags]
    if args.limit:
        records = records[: args.limit]
    if not records:
        raise ValueError(f"faces: no face of {args.faces or 'the shared folder'} passes the licence filter "
                         f"'{args.licence}'{'' if args.include_held_out else ' in the training identities'}")
    split = ("all identities" if args.include_held_out else
             f"training identities only (held out {args.held_out}, seed {args.split_seed})")
    print(f"{len(records)} of {n_all} faces: licence '{args.licence}', {split}, real-mask faces left out")
    command = "occrecon " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("occrecon") else ""
    learned, report = build_albedo_model(model, records, components=args.components, rounds=args.rounds,
                                         size=args.size, fit_size=args.fit_size, preset=args.preset,
                                         batch_size=args.batch_size, licence=args.licence, command=command,
                                         pca_iterations=args.pca_iterations)
    learned.provenance["split"] = split
    out = learned.save(args.out, compact=args.compact)
    Path(str(out) + ".json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out} ({learned.extra_repr()}) in {report['seconds']:.0f} s; "
          f"{report['faces']} faces, {100 * sum(report['explained']):.1f} % of the albedo variance in "
          f"{args.components} modes; report {out}.json")
    return 0


def add_albedo_build_parser(sub) -> argparse.ArgumentParser:
    """``occrecon model albedo build`` (``sub``: the ``model albedo`` subparsers)."""
    p = sub.add_parser("build", help="learn an albedo model and an illumination prior from fits of real photos",
                       description=appearance.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the face model (.npz, or any format load_model reads)")
    p.add_argument("--faces", help="real-face folder (default: shared/assets/faces/train)")
    p.add_argument("--licence", choices=LICENCE_FILTERS, default="licensed",
                   help="which faces may be used (default licensed: images published under a licence, the only "
                        "ones a shipped model may learn from; 'all' is for experiments)")
    p.add_argument("--include-held-out", action="store_true",
                   help="also use the held-out identities (experiments only: they are the evaluation's)")
    p.add_argument("--held-out", type=float, default=HELD_OUT, help=f"held-out identity share (default {HELD_OUT})")
    p.add_argument("--split-seed", type=int, default=SPLIT_SEED, help=f"seed of the split (default {SPLIT_SEED})")
    p.add_argument("--components", "-K", type=int, default=80, help="albedo modes (default 80)")
    p.add_argument("--rounds", type=int, default=3, help="light re-estimation rounds (default 3)")
    p.add_argument("--preset", choices=sorted(FIT_PRESETS), default="standard", help="fit preset (default standard)")
    p.add_argument("--size", type=int, default=224, help="crop size the colours are read at (default 224)")
    p.add_argument("--fit-size", type=int, default=128, help="image size of the fit (default 128)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pca-iterations", type=int, default=200, help="EM-PCA iterations at most (default 200)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N faces")
    p.add_argument("--compact", action="store_true", help="float16 bases, compressed (a model to ship)")
    p.add_argument("--out", required=True, help="output model .npz (a report is written beside it)")
    p.set_defaults(func=run_albedo_build)
    return p


def register(sub) -> None:
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
    add_albedo_build_parser(albedo_sub)
