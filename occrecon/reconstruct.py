"""``occrecon reconstruct``: photos → occlusion-robust 3D face reconstructions with a trained checkpoint.

For every photo: read it (:func:`occrecon.data.io.read_image`), find the face (dlib's 68 landmarks, or a 5-point
file per photo), align it to the training crop (:func:`occrecon.data.align.align_face`), then run the
:class:`~occrecon.api.Reconstructor`: θ, the rendered face I_R, the rendered region Φ and the face mask M. Writes
per photo ``<name>_overlay.png`` (aligned target | render over target | mask: occluded pixels of Φ in red),
``<name>.obj`` (the reconstructed shape with its albedo, in model units) and ``<name>.json`` (θ by group,
occlusion fraction, the crop transform); prints one line per photo and reports every photo without a face or
unreadable (never skipped silently).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .api import DEFAULT_OCCLUSION_THRESHOLD, Reconstructor
from .data.align import align_face
from .data.io import IMAGE_EXTENSIONS, ImageReadError, read_five_points, read_image
from .data.landmarks import detect_landmarks
from .morphable.export import write_obj


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



def overlay(target: torch.Tensor, out, index: int) -> np.ndarray:
    """``uint8 (H, 3W, 3)``: target | render composited over the target | target with occluded Φ pixels in red."""
    t = target[index]
    region, mask = out.region[index], out.mask[index]
    render = out.image[index].clamp(0, 1) * region + t * (1 - region)
    occluded = (region - mask).clamp(0, 1)
    red = torch.tensor([1.0, 0.1, 0.1]).view(3, 1, 1)
    seg = t * (1 - 0.6 * occluded) + red * 0.6 * occluded
    row = torch.cat([t, render, seg], dim=2)
    return (row.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def reconstruct_photos(paths: list[Path], rec: Reconstructor, out_dir: str | Path, *, points_dir: Path | None = None,
                       detector=None, batch_size: int = 8,
                       threshold: float = DEFAULT_OCCLUSION_THRESHOLD) -> ReconstructionReport:
    """Reconstruct each photo of ``paths`` (see the module docstring); writes into ``out_dir``.

    Args:
        paths: photo files.
        rec: a :class:`Reconstructor` (its ``image_size`` sets the crop size).
        out_dir: output folder (created).
        points_dir: folder with ``<stem>.txt`` 5-point files; photos without one fall back to dlib.
        detector: landmark detector for :func:`occrecon.data.landmarks.detect_landmarks` (default dlib).
        batch_size: crops per network batch.
        threshold: occlusion fraction above which a face is reported as occluded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = rec.image_size[0]
    report = ReconstructionReport()
    crops, metas = [], []
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError as e:
            report.failures.append((str(path), f"unreadable: {e}"))
            continue
        five_file = points_dir / f"{path.stem}.txt" if points_dir is not None else None
        if five_file is not None and five_file.exists():
            five, source = read_five_points(five_file), "5-point file"
        else:
            face = detect_landmarks(image, detector)
            if face is None:
                report.failures.append((str(path), "no face found"))
                continue
            five, source = face.five(), "dlib"
        try:
            crop, m = align_face(image, five, size)
        except ValueError as e:
            report.failures.append((str(path), f"alignment failed: {e}"))
            continue
        crops.append(torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0)
        metas.append({"image": str(path), "landmarks_from": source, "crop_transform": m.tolist()})

    device = next(rec.encoder.parameters()).device
    for start in range(0, len(crops), batch_size):
        batch = torch.stack(crops[start:start + batch_size])
        out = rec(batch.to(device))
        out = type(out)(*(x.detach().cpu() for x in out))
        fractions = out.occlusion_fraction
        parts = rec.layout.split(out.theta)
        verts, albedo = rec.model(parts["id"], parts["exp"], parts["tex"])
        for i, meta in enumerate(metas[start:start + batch_size]):
            stem = Path(meta["image"]).stem
            Image.fromarray(overlay(batch, out, i)).save(out_dir / f"{stem}_overlay.png")
            write_obj(out_dir / f"{stem}.obj", verts[i], rec.model.triangles, albedo[i].clamp(0, 1))
            frac = float(fractions[i])
            meta.update(occlusion_fraction=None if np.isnan(frac) else frac,
                        occluded=bool(np.nan_to_num(frac) > threshold),
                        theta={k: v[i].tolist() for k, v in parts.items()})
            (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
            report.results.append(meta)
    return report


def _run(args: argparse.Namespace) -> int:
    rec = Reconstructor.from_checkpoint(args.checkpoint, model_path=args.model, device=args.device)
    paths = collect_images(args.images)
    report = reconstruct_photos(paths, rec, args.out, points_dir=Path(args.points_dir) if args.points_dir else None,
                                batch_size=args.batch_size, threshold=args.threshold)
    print(f"{'photo':40s} {'landmarks':>13s} {'occluded':>9s} {'fraction':>9s}")
    for r in report.results:
        frac = "n/a" if r["occlusion_fraction"] is None else f"{r['occlusion_fraction']:.3f}"
        print(f"{Path(r['image']).name[:40]:40s} {r['landmarks_from']:>13s} {str(r['occluded']):>9s} {frac:>9s}")
    for path, why in report.failures:
        print(f"NOT RECONSTRUCTED {path}: {why}")
    print(f"{len(report.results)} reconstructed, {len(report.failures)} not; wrote {args.out}/<name>_overlay.png, "
          f".obj, .json")
    return 0 if report.results or not paths else 1


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="photos -> 3D face, render and occlusion mask with a trained checkpoint")
    p.add_argument("images", nargs="+", help="photo files and/or folders of photos")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (occrecon train)")
    p.add_argument("--out", default="reconstruct_out", help="output folder (default: reconstruct_out)")
    p.add_argument("--model", help="face model file overriding the checkpoint's")
    p.add_argument("--points-dir", help="folder of <stem>.txt 5-point files (else dlib finds the face)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threshold", type=float, default=DEFAULT_OCCLUSION_THRESHOLD,
                   help=f"occlusion fraction that counts as occluded (default {DEFAULT_OCCLUSION_THRESHOLD})")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run)
