"""``occrecon reconstruct``: photos → occlusion-robust 3D face reconstructions, with a trained checkpoint, the
fitting engine, or both.

For every photo: the one photo → aligned face path (:func:`occrecon.data.prepare.prepare_photo`: dlib's 68
landmarks, or a 5-point file per photo plus dlib on the aligned crop), then the :class:`~occrecon.api.Reconstructor`:
θ, the rendered face I_R, the rendered region Φ and the face mask M. With ``--fit fast|quality`` the encoder's
prediction is refined per photo by the fitting engine (:func:`occrecon.fit.fit_image`); with ``--model MODEL.npz``
and no checkpoint the face is fitted from the mean face (no network at all). Writes per photo
``<name>_overlay.png`` (aligned target | render over target | mask: occluded pixels of Φ in red),
``<name>.obj`` (the reconstructed shape with its albedo, in model units) and ``<name>.json`` (θ by group,
occlusion fraction, the crop transform, the fit's flags); prints one line per photo and reports every photo
without a face or unreadable (never skipped silently).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..api import DEFAULT_OCCLUSION_THRESHOLD, Reconstructor, overlay
from ..device import check_device
from ..data.io import IMAGE_EXTENSIONS, ImageReadError, read_image
from ..data.prepare import AlignmentError, FaceNotFound, prepare_faces, prepare_photo
from ..morphable.export import write_obj


@dataclass
class ReconstructionReport:
    """Outcome of :func:`reconstruct_photos`: one dict per reconstructed photo, and the photos left out."""

    results: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Files given directly, plus the image files (by suffix, sorted) of the folders given."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"images: {p} does not exist")
    return out


def reconstruct_photos(paths: list[Path], rec: Reconstructor, out_dir: str | Path, *, points_dir: Path | None = None,
                       detector=None, batch_size: int = 8, threshold: float = DEFAULT_OCCLUSION_THRESHOLD,
                       log=None) -> ReconstructionReport:
    """Reconstruct each photo of ``paths`` (see the module docstring); writes into ``out_dir``.

    Args:
        paths: photo files.
        rec: a :class:`Reconstructor` (its ``image_size`` sets the crop size, its ``fit`` whether to fit).
        out_dir: output folder (created).
        points_dir: folder with ``<stem>.txt`` 5-point files; photos without one fall back to dlib.
        detector: landmark detector for :func:`occrecon.data.prepare.prepare_face` (default dlib).
        batch_size: crops per network batch.
        threshold: occlusion fraction above which a face is reported as occluded.
        log: called with a progress line per batch (None: quiet).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = rec.image_size[0]
    report = ReconstructionReport()
    crops, lms, metas = [], [], []
    for path in paths:
        five_file = points_dir / f"{path.stem}.txt" if points_dir is not None else None
        try:
            if five_file is not None and five_file.exists():  # the file names one face
                faces = [prepare_photo(path, size, five_file=five_file, detector=detector,
                                       redetect=rec.fit is not None)]
            else:  # every face the detector finds
                faces, bad = prepare_faces(read_image(path), size, detector=detector)
                report.failures.extend((f"{path} (a face)", str(e)) for e in bad)
        except ImageReadError as e:
            report.failures.append((str(path), f"unreadable: {e}"))
            continue
        except FaceNotFound:
            report.failures.append((str(path), "no face found"))
            continue
        except AlignmentError as e:
            report.failures.append((str(path), str(e)))
            continue
        for k, face in enumerate(faces):
            stem = path.stem if len(faces) == 1 else f"{path.stem}_face{k}"
            if face.landmarks is None and rec.encoder is None:
                report.failures.append((f"{path} ({stem})", "no 68 landmarks found on the aligned crop (the fit "
                                                            "needs them)"))
                continue
            crops.append(torch.from_numpy(face.crop).permute(2, 0, 1).float() / 255.0)
            lms.append(torch.from_numpy(face.landmarks) if face.landmarks is not None
                       else torch.full((68, 2), float("nan")))
            metas.append({"image": str(path), "face": k, "faces_in_photo": len(faces), "stem": stem,
                          "landmarks_from": face.source, "crop_transform": face.transform.tolist()})

    device = rec.renderer.tri.device
    for start in range(0, len(crops), batch_size):
        batch = torch.stack(crops[start:start + batch_size])
        lm = torch.stack(lms[start:start + batch_size])
        out = rec(batch.to(device), lm.to(device) if rec.fit is not None else None)
        fit = out.fit
        out = out.cpu()
        fractions = out.occlusion_fraction
        parts = rec.layout.split(out.theta)
        with torch.no_grad():
            verts, albedo = rec.model(parts["id"], parts["exp"], parts["tex"])
        for i, meta in enumerate(metas[start:start + batch_size]):
            stem = meta["stem"]
            Image.fromarray(overlay(batch, out, i)).save(out_dir / f"{stem}_overlay.png")
            write_obj(out_dir / f"{stem}.obj", verts[i], rec.model.triangles, albedo[i].clamp(0, 1))
            frac = float(fractions[i])
            meta.update(occlusion_fraction=None if np.isnan(frac) else frac,
                        occluded=bool(np.nan_to_num(frac) > threshold),
                        theta={k: v[i].tolist() for k, v in parts.items()})
            if fit is not None:
                lm_err = None
                if fit.landmark_fit is not None and not bool(fit.landmark_fit.failed[i]):
                    lm_err = float(fit.landmark_fit.error[i]) / fit.scale
                meta["fit"] = {"converged": bool(fit.converged[i]), "diverged": bool(fit.diverged[i]),
                               "landmark_error_px": lm_err, "light_inliers": float(fit.light_inliers[i])}
            (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
            report.results.append(meta)
        if log is not None:
            log(f"  {min(start + batch_size, len(crops))}/{len(crops)} faces reconstructed")
    return report


def _make_reconstructor(args: argparse.Namespace) -> Reconstructor:
    if args.checkpoint is None and args.model is not None:  # no network: pure fitting
        return Reconstructor.for_model(args.model, image_size=args.size, fit=args.fit or "fast", device=args.device)
    from ..checkpoint import BUNDLED_CHECKPOINT

    ckpt = args.checkpoint if args.checkpoint is not None else BUNDLED_CHECKPOINT
    return Reconstructor.from_checkpoint(ckpt, model_path=args.model, device=args.device, fit=args.fit,
                                         trusted=args.trusted)


def _run(args: argparse.Namespace) -> int:
    """The command; a bad argument or input raises (``occrecon.cli`` prints it in one line, exit status 2)."""
    args.device = str(check_device(args.device, "--device"))
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: must be >= 1, got {args.batch_size}")
    paths = collect_images(args.images)
    rec = _make_reconstructor(args)
    mode = ("fitting only" if rec.encoder is None else "encoder") + (f" + fit ({args.fit or 'fast'})"
                                                                      if rec.fit is not None and rec.encoder else "")
    print(f"{len(paths)} photo(s); {mode}")
    report = reconstruct_photos(paths, rec, args.out, points_dir=Path(args.points_dir) if args.points_dir else None,
                                batch_size=args.batch_size, threshold=args.threshold, log=print)
    print(f"{'photo':40s} {'landmarks':>24s} {'occluded':>9s} {'fraction':>9s}")
    for r in report.results:
        frac = "n/a" if r["occlusion_fraction"] is None else f"{r['occlusion_fraction']:.3f}"
        name = Path(r["image"]).name + (f" #{r['face']}" if r["faces_in_photo"] > 1 else "")
        print(f"{name[:40]:40s} {r['landmarks_from'][:24]:>24s} {str(r['occluded']):>9s} {frac:>9s}")
    for path, why in report.failures:
        print(f"NOT RECONSTRUCTED {path}: {why}")
    print(f"{len(report.results)} reconstructed, {len(report.failures)} not; wrote {args.out}/<name>_overlay.png, "
          f".obj, .json")
    return 1 if report.failures else 0


def register(sub) -> None:
    """``occrecon reconstruct``."""
    from ..fit import FIT_PRESETS
    from . import add_trusted_flag

    p = sub.add_parser("reconstruct", help="photos -> 3D face, render and occlusion mask (a checkpoint, the fitting "
                                           "engine, or both)")
    p.add_argument("images", nargs="+", help="photo files and/or folders of photos")
    p.add_argument("--checkpoint", help="a training checkpoint (default: the bundled one, unless --model is given "
                                        "alone: then the face is fitted without a network)")
    p.add_argument("--fit", nargs="?", const="fast", choices=sorted(FIT_PRESETS),
                   help="refine each face with the fitting engine (preset; 'fast' when given without one)")
    p.add_argument("--out", default="reconstruct_out", help="output folder (default: reconstruct_out)")
    p.add_argument("--model", help="face model file (or 'default': the shipped ICT narrow face with a learned albedo): "
                                   "overrides the checkpoint's, or, without --checkpoint, fit this model with no "
                                   "network")
    p.add_argument("--size", type=int, default=224, help="crop size when fitting without a checkpoint (default 224)")
    p.add_argument("--points-dir", help="folder of <stem>.txt 5-point files (else dlib finds the face)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threshold", type=float, default=DEFAULT_OCCLUSION_THRESHOLD,
                   help=f"occlusion fraction that counts as occluded (default {DEFAULT_OCCLUSION_THRESHOLD})")
    p.add_argument("--device", default="cpu")
    add_trusted_flag(p)
    p.set_defaults(func=_run)
