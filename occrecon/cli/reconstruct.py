"""``occrecon reconstruct``: photos → occlusion-robust 3D face reconstructions, with a trained checkpoint, the
fitting engine, or both.

For every photo: every face in it, through the one photo → aligned face path (:mod:`occrecon.data.prepare`:
dlib's 68 landmarks on the photo, or a 5-point file per photo plus dlib on the aligned crop), then
:meth:`occrecon.api.Reconstructor.reconstruct_prepared`: θ, the rendered face I_R, the rendered region Φ and the
face mask M, mapped back into the photo. With ``--fit fast|quality`` the encoder's prediction is refined per face by
the fitting engine (:func:`occrecon.fit.fit_image`); with ``--model MODEL.npz`` and no checkpoint the face is fitted
from the mean face (no network at all). Per face (``<name>`` is the photo's stem, ``<name>_face<k>`` when the photo
holds several faces, best detection first):

- ``<name>_overlay.png``: photo | render over the photo | occluded pixels of Φ in red, at the photo's resolution;
- ``<name>_mask.png``: M in the photo frame (8-bit, 255 = visible face); ``<name>_render.png``: I_R in the photo
  frame, RGBA with Φ as alpha;
- ``<name>.obj`` and ``<name>.ply``: the posed mesh with its albedo as vertex colours, in photo space (x, y the
  photo pixel, y up; z toward the viewer in pixels; :func:`occrecon.api.photo_vertices`) or, with
  ``--mesh-space camera``, in the renderer's camera space (model units);
- ``<name>.json``: θ by group, the 68 detected and fitted landmarks (photo pixels), the occlusion fraction and
  verdict, the crop transform, the detector score, the fit's flags.

Prints one line per face and reports every photo without a face, unreadable, or a face that cannot be aligned
(never skipped silently). Exit status 0 when every photo and face was reconstructed, 1 when any failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tqdm import tqdm

from ..api import DEFAULT_OCCLUSION_THRESHOLD, Reconstructor
from ..device import check_device
from ..data.io import IMAGE_EXTENSIONS, ImageReadError, read_five_points, read_image
from ..data.prepare import AlignmentError, FaceNotFound, prepare_face, prepare_faces
from ..morphable.export import write_obj, write_ply


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
                       mesh_space: str = "photo", progress: bool = False) -> ReconstructionReport:
    """Reconstruct every face of each photo of ``paths`` (see the module docstring); writes into ``out_dir``.

    Args:
        paths: photo files.
        rec: a :class:`Reconstructor` (its ``image_size`` sets the crop size, its ``fit`` whether to fit).
        out_dir: output folder (created).
        points_dir: folder with ``<stem>.txt`` 5-point files (one face per photo); photos without one: every face
            the detector finds.
        detector: landmark detector (default dlib).
        batch_size: crops per network batch.
        threshold: occlusion fraction above which a face is reported as occluded.
        mesh_space: ``"photo"`` or ``"camera"``: the frame of the OBJ / PLY vertices.
        progress: show a tqdm progress bar over the photos.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if mesh_space not in MESH_SPACES:
        raise ValueError(f"mesh_space: expected one of {MESH_SPACES}, got {mesh_space!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = rec.image_size[0]
    report = ReconstructionReport()
    for path in tqdm(paths, desc="reconstruct", unit="photo", disable=not progress):
        five_file = points_dir / f"{path.stem}.txt" if points_dir is not None else None
        try:
            image = read_image(path)
            if five_file is not None and five_file.exists():  # the file names one face
                faces = [prepare_face(image, size, five=read_five_points(five_file), detector=detector,
                                      redetect=rec.fit is not None)]
            else:  # every face the detector finds
                faces, bad = prepare_faces(image, size, detector=detector)
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
        usable = []
        for k, face in enumerate(faces):
            stem = path.stem if len(faces) == 1 else f"{path.stem}_face{k}"
            if face.landmarks is None and rec.encoder is None:
                report.failures.append((f"{path} ({stem})", "no 68 landmarks found on the aligned crop (the fit "
                                                            "needs them)"))
                continue
            usable.append((k, stem, face))
        results = rec.reconstruct_prepared([image] * len(usable), [f for _, _, f in usable], threshold=threshold,
                                           batch_size=batch_size)
        for (k, stem, face), res in zip(usable, results):
            report.results.append(_write_face(out_dir, stem, path, k, len(faces), face, res, image, rec, mesh_space))
    return report


#: Frames of the written meshes.
MESH_SPACES = ("photo", "camera")


def _nan_list(a) -> list | None:
    if a is None:
        return None
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a, np.float64)]


def _write_face(out_dir: Path, stem: str, path: Path, k: int, n: int, face, res, image: np.ndarray,
                rec: Reconstructor, mesh_space: str) -> dict:
    """Write one face's files (module docstring); returns its JSON record."""
    Image.fromarray(res.overlay(image)).save(out_dir / f"{stem}_overlay.png")
    Image.fromarray((np.clip(res.mask, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out_dir / f"{stem}_mask.png")
    rgba = np.concatenate([np.clip(res.render, 0, 1), np.clip(res.region, 0, 1)[..., None]], -1)
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(out_dir / f"{stem}_render.png")
    verts = res.vertices_photo if mesh_space == "photo" else res.vertices_camera
    write_obj(out_dir / f"{stem}.obj", verts, rec.model.triangles, res.albedo)
    write_ply(out_dir / f"{stem}.ply", verts, rec.model.triangles, res.albedo)
    frac = res.occlusion_fraction
    meta = {"image": str(path), "face": k, "faces_in_photo": n, "stem": stem, "landmarks_from": face.source,
            "detector_score": res.score, "crop_transform": res.crop_transform.tolist(),
            "occlusion_fraction": None if np.isnan(frac) else frac, "occluded": res.occluded,
            "landmarks_detected": _nan_list(res.landmarks_detected), "landmarks_fitted": _nan_list(res.landmarks_fitted),
            "mesh_space": mesh_space, "theta": {g: v.tolist() for g, v in rec.layout.split(res.theta).items()}}
    if res.fit is not None:
        meta["fit"] = res.fit
    (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    return meta


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
                                batch_size=args.batch_size, threshold=args.threshold, mesh_space=args.mesh_space,
                                progress=sys.stderr.isatty() and not args.quiet)
    print(f"{'photo':40s} {'landmarks':>24s} {'occluded':>9s} {'fraction':>9s}")
    for r in report.results:
        frac = "n/a" if r["occlusion_fraction"] is None else f"{r['occlusion_fraction']:.3f}"
        name = Path(r["image"]).name + (f" #{r['face']}" if r["faces_in_photo"] > 1 else "")
        print(f"{name[:40]:40s} {r['landmarks_from'][:24]:>24s} {str(r['occluded']):>9s} {frac:>9s}")
    for path, why in report.failures:
        print(f"NOT RECONSTRUCTED {path}: {why}")
    print(f"{len(report.results)} reconstructed, {len(report.failures)} not; wrote {args.out}/<name>_overlay.png, "
          f"_mask.png, _render.png, .obj, .ply, .json")
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
    p.add_argument("--mesh-space", choices=MESH_SPACES, default="photo",
                   help="frame of the OBJ/PLY vertices: photo (pixels over the photo, y up; default) or camera "
                        "(the renderer's camera space, model units)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu")
    add_trusted_flag(p)
    p.set_defaults(func=_run)
