"""``occrecon evaluate`` (checkpoints on a dataset folder, :mod:`occrecon.eval.evaluate`) and ``occrecon
evaluate-fit`` (the fitting engine on held-out real photos, :mod:`occrecon.eval.fitting`)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..api import Reconstructor
from ..checkpoint import BUNDLED_CHECKPOINT, read_checkpoint
from ..data.faces import HELD_OUT, SPLIT_SEED, identity_split, read_face_folder
from ..device import check_device
from ..eval import evaluate as ev
from ..eval import fitting as fe
from ..eval.evaluate import (VALUE_KEYS, CheckpointSpec, _json_values, evaluate_reconstructor, format_paired,
                             format_report, held_out_ids, paired_differences, parse_checkpoint_arg, read_eval_dataset,
                             read_id_list, summarise_by_subset)
from ..eval.fitting import (FIGURE_ROWS, evaluate_fit, figure_images, format_fit_report, prepare_cases, result_json,
                            save_figure)
from ..eval.metrics import DEFAULT_THRESHOLD
from ..fit import FIT_PRESETS
from ..morphable import resolve_model
from . import add_trusted_flag

__all__ = ["evaluate", "register"]


def register(sub) -> None:
    add_evaluate_parser(sub)
    add_evaluate_fit_parser(sub)


def evaluate(data: str | Path, checkpoints: Sequence[CheckpointSpec], batch_size: int = 8, device: str = "cpu",
             model_path: str | Path | None = None, threshold: float = DEFAULT_THRESHOLD,
             ids: Sequence[str] | None = None, trusted: bool = False) -> dict:
    """Evaluate each checkpoint on the dataset folder ``data`` (only the samples ``ids`` when given; ``trusted``: read
    checkpoints that need a full unpickle, see :func:`occrecon.api.read_checkpoint`).

    Returns:
        ``{"data", "threshold", "ids", "occluded", "methods": {name: {"checkpoint", "segmentation", "per_image":
        {key: [N values, None for NaN]}, "summary": {subset: {key: Summary}}}}}``.
    """

    if not checkpoints:
        raise ValueError("checkpoints: give at least one NAME=PATH")
    names = [c.name for c in checkpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"checkpoints: method names repeat: {names}")
    check_device(device)
    samples = read_eval_dataset(data, ids)
    for spec in checkpoints:  # a damaged or refused checkpoint is reported before the first method runs
        if spec.fit is None:
            read_checkpoint(spec.path, trusted=trusted)
    methods = {}
    for spec in checkpoints:
        if spec.fit is not None:  # the fitting engine alone, at the dataset's crop size
            from PIL import Image

            with Image.open(samples[0].image) as im:
                size = im.size[0]
            rec = Reconstructor.for_model(model_path, image_size=size, fit=spec.fit, device=device)
        else:
            rec = Reconstructor.from_checkpoint(spec.path, model_path=model_path, device=device, trusted=trusted)
        values = evaluate_reconstructor(rec, samples, spec.segmentation, batch_size, threshold,
                                        progress=sys.stderr.isatty())
        methods[spec.name] = {"checkpoint": f"fitting engine ({spec.fit})" if spec.fit else str(spec.path),
                              "segmentation": "robust" if spec.fit else spec.segmentation,
                              "per_image": {k: _json_values(values[k]) for k in VALUE_KEYS},
                              "summary": summarise_by_subset(values)}
    return {"data": str(data), "threshold": threshold, "ids": [s.id for s in samples],
            "occluded": [s.occluded for s in samples], "methods": methods}


def _run_evaluate(args: argparse.Namespace) -> int:
    """The command; a bad argument or input raises (``occrecon.cli`` prints it in one line, exit status 2)."""
    specs = [parse_checkpoint_arg(c) for c in args.checkpoint]
    if args.ids and args.held_out:
        raise ValueError("give --ids or --held-out, not both")
    names = [spec.name for spec in specs]
    if args.paired_with is not None and args.paired_with not in names:
        raise ValueError(f"--paired-with {args.paired_with!r} is not one of the methods: {', '.join(names)}")
    check_device(args.device, "--device")
    ids = read_id_list(args.ids) if args.ids else None
    if args.held_out:
        ids = held_out_ids(args.data, args.held_out, args.split_seed)
    result = evaluate(args.data, specs, batch_size=args.batch_size, device=args.device, model_path=args.model,
                      threshold=args.threshold, ids=ids, trusted=args.trusted)
    print(format_report(result, markdown=args.markdown))
    if args.paired_with is not None:
        diffs = paired_differences(result, args.paired_with)
        if diffs:
            print("\n" + format_paired(diffs, args.paired_with, args.markdown))
        result["paired_with"] = {"base": args.paired_with, "methods": {
            name: {s: {k: v.as_dict() for k, v in by.items()} for s, by in subsets.items()}
            for name, subsets in diffs.items()}}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for m in result["methods"].values():
            m["summary"] = {s: {k: v.as_dict() for k, v in by.items()} for s, by in m["summary"].items()}
        out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {out}")
    return 0


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    """``occrecon evaluate``."""
    p = sub.add_parser("evaluate", help="segmentation and reconstruction metrics of checkpoints on a dataset folder",
                       description=ev.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (images/, masks/, meta.jsonl)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH[:MODE]",
                   help="a method to evaluate (repeatable); MODE 'unet' (default), 'pseudo' (eq. 9 pseudo-masks), "
                        "'all' (everything in Φ is face) or 'skin' (skin colour); NAME=fit[:PRESET] is the fitting "
                        "engine alone (--model, or the shipped model)")
    p.add_argument("--ids", help="evaluate only the sample ids listed in this text file (one per line)")
    p.add_argument("--held-out", type=float, metavar="FRACTION",
                   help="evaluate only the held-out part of the training split (data.held_out of the training "
                        "config; occrecon.data.dataset.split_ids)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that split (data.split_seed; default 0)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables instead of plain text")
    p.add_argument("--paired-with", metavar="NAME",
                   help="also print every other method minus this one, image by image: mean ± standard error of "
                        "F1, soft F1, RMSE and MAE, and on how many images it is better")
    p.add_argument("--out", help="write per-image values and summaries to this JSON file")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--model", help="face model file overriding the checkpoints' stored model_path")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"binarisation threshold of the hard metrics (default {DEFAULT_THRESHOLD})")
    add_trusted_flag(p)
    p.set_defaults(func=_run_evaluate)
    return p


def run_evaluate_fit(args: argparse.Namespace) -> int:

    rec = None  # the checkpoint or model first: a bad one is reported before the faces are read
    if args.no_fit and args.no_encoder:
        raise ValueError("--no-fit with --no-encoder: nothing to evaluate but the mean face")
    if not args.no_encoder:
        rec = Reconstructor.from_checkpoint(args.checkpoint or BUNDLED_CHECKPOINT, trusted=args.trusted)
    model = rec.model if rec is not None else resolve_model(args.model)
    records = read_face_folder(args.faces)
    _, held = identity_split(records, args.held_out, args.split_seed)
    held = [r for r in held if "possibly_occluded" not in r.flags]
    if args.limit:
        held = held[: args.limit]
    print(f"{len(held)} held-out faces (identity split {args.held_out}, seed {args.split_seed}; "
          f"real-mask faces left out)")
    size = rec.image_size[0] if rec is not None else args.size
    t0 = time.perf_counter()
    pairs, failures = prepare_cases(held, size, seed=args.seed, progress=sys.stderr.isatty())
    print(f"prepared {len(pairs)} faces in {time.perf_counter() - t0:.0f} s")
    result = evaluate_fit(pairs, model=model, fit_config=args.preset, encoder_rec=rec, batch_size=args.batch_size,
                          encoder_init=args.encoder_init, fit=not args.no_fit)
    result["failures"] = failures
    report = format_fit_report(result, markdown=True)
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit_eval.json").write_text(json.dumps(result_json(result)))
    (out / "fit_eval.md").write_text(report + "\n")
    if args.figure:
        # only faces whose owners published them under a licence may appear in a published figure
        all_held = [r for r in identity_split(records, args.held_out, args.split_seed)[1]
                    if r.image_rights == "licensed" and "possibly_occluded" not in r.flags]
        chosen = [all_held[int(i)] for i in np.linspace(0, len(all_held) - 1, min(FIGURE_ROWS, len(all_held)))]
        fig_pairs, _ = prepare_cases(chosen, size, seed=args.seed)
        imgs = figure_images(fig_pairs, model=model, fit_config=args.preset, encoder_rec=rec, rows=FIGURE_ROWS)
        path = save_figure(fig_pairs, imgs, Path(args.figure), rows=FIGURE_ROWS)
        shown = {p[0].id for p in fig_pairs if p[1] is not None}
        shown_records = [r for r in chosen if r.id in shown]
        credits = sorted({f"{r.source} ({r.licence})" for r in shown_records})
        note = (f"Figure ({path.name}): held-out faces {', '.join(r.id for r in shown_records)} of "
                f"{'; '.join(credits)}.")
        (out / "fit_eval.md").write_text(report + "\n\n" + note + "\n")
        print(f"wrote {path}\n{note}")
    print(f"wrote {out}/fit_eval.json, fit_eval.md")
    return 0


def add_evaluate_fit_parser(sub) -> argparse.ArgumentParser:
    """``occrecon evaluate-fit``."""

    p = sub.add_parser("evaluate-fit", help="the fitting engine on held-out real photos, clean and with pasted "
                                            "occluders, beside the mean face and the bundled encoder",
                       description=fe.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", help="real-face folder (default: shared/assets/faces/train)")
    p.add_argument("--held-out", type=float, default=HELD_OUT, help=f"held-out identity share (default {HELD_OUT})")
    p.add_argument("--split-seed", type=int, default=SPLIT_SEED, help=f"seed of the split (default {SPLIT_SEED})")
    p.add_argument("--preset", choices=sorted(FIT_PRESETS), default="quality", help="fit preset (default quality)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N held-out faces")
    p.add_argument("--seed", type=int, default=0, help="occluder draw")
    p.add_argument("--checkpoint", help="encoder checkpoint (default: the bundled one)")
    p.add_argument("--no-encoder", action="store_true", help="no encoder baseline; fit --model at --size")
    p.add_argument("--model", help="face model to fit with --no-encoder (default: the shipped model, ICT narrow face "
                                   "with a learned albedo)")
    p.add_argument("--size", type=int, default=128, help="crop size with --no-encoder (default 128)")
    p.add_argument("--encoder-init", action="store_true", help="also fit from the encoder's prediction")
    p.add_argument("--no-fit", action="store_true", help="score the mean face and the encoder only (no fitting)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--figure", help="also write the photo | encoder | fit | mask picture here (PNG or JPEG), made "
                                    "of held-out faces whose images are published under a licence")
    p.add_argument("--out", default="runs/fit_eval", help="output folder (default runs/fit_eval)")
    add_trusted_flag(p)
    p.set_defaults(func=run_evaluate_fit)
    return p
