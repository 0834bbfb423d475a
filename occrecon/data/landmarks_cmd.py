"""``occrecon data landmarks IMAGES_DIR --out landmarks.csv``: detect 68 landmarks in a folder of photos.

Writes the authors' CSV (``relative_path,x1,y1,...,x68,y68``, paths relative to IMAGES_DIR, raw-image pixels),
optionally the aligned 224² crops with their own landmark CSV, and a report. Images are never skipped silently:
every image without a face, unreadable or impossible to align is printed and listed in ``<out>.report.txt``
(tab-separated ``status, relative_path, detail``). The exit code is 0 whenever the folder could be processed,
problems included (read the report); 2 for bad arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .align import TEMPLATE_SIZE
from .io import IMAGE_EXTENSIONS, MASK_SUFFIX, ImageReadError, read_image, write_landmarks_csv
from .prepare import AlignmentError, FaceNotFound, prepare_face

__all__ = ["LandmarkReport", "find_images", "run_landmarks", "make_detector"]


@dataclass
class LandmarkReport:
    """Outcome per image (relative paths): ``found`` and the problems with a reason each."""

    found: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    not_aligned: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Tab-separated ``status, relative_path, detail`` lines, one per problem."""
        return ([f"no_face\t{p}\t" for p in self.no_face] + [f"unreadable\t{p}\t{r}" for p, r in self.unreadable]
                + [f"not_aligned\t{p}\t{r}" for p, r in self.not_aligned])


def find_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``root`` (recursively, by extension, case-insensitive), sorted; mask files
    (``*_visible_skin_mask.png``) and anything under ``exclude`` are left out."""
    exclude = exclude.resolve() if exclude is not None else None
    out = []
    for p in root.rglob("*"):
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.endswith(MASK_SUFFIX):
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue
        out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def make_detector(backend: str, upsample: int, fan_weights: str | None, device: str):
    from .landmarks import DlibDetector, FanDetector

    if backend == "dlib":
        return DlibDetector(upsample=upsample)
    if backend == "fan":
        return FanDetector(weights_path=fan_weights, device=device)
    raise ValueError(f"backend must be 'dlib' or 'fan', got {backend!r}")


def run_landmarks(images_dir: str | Path, out: str | Path, detector, aligned_out: str | Path | None = None,
                  size: int = TEMPLATE_SIZE, log=print, progress: bool = False) -> LandmarkReport:
    """Detect landmarks in every image of ``images_dir``; write ``out`` (CSV) and ``<out>.report.txt``.

    Args:
        images_dir: folder scanned recursively (see :func:`find_images`).
        out: landmark CSV to write (authors' format).
        detector: callable ``uint8 (H, W, 3) image -> FaceLandmarks | None`` (e.g. ``DlibDetector()``).
        aligned_out: if given, ``<aligned_out>/<relative path>.png`` aligned ``size``² crops (the one photo →
            aligned face path, :func:`occrecon.data.prepare.prepare_face`), ``landmarks.csv`` (the 68 points in crop pixels) and
            ``transforms.csv`` (``relative_path,m00,m01,m02,m10,m11,m12``: photo → crop affine).
        size: crop size.
        log: called with one message string per problem and a final summary.
    Returns:
        the :class:`LandmarkReport`.
    """
    root, out = Path(images_dir), Path(out)
    if not root.is_dir():
        raise NotADirectoryError(f"images_dir {root}: not a folder")
    aligned = Path(aligned_out) if aligned_out is not None else None
    report = LandmarkReport()
    raw: dict[str, np.ndarray] = {}
    crops_lm: dict[str, np.ndarray] = {}
    transforms: dict[str, np.ndarray] = {}
    from tqdm import tqdm  # noqa: PLC0415

    for path in tqdm(find_images(root, exclude=aligned), desc="landmarks", unit="image", disable=not progress):
        rel = path.relative_to(root).as_posix()
        try:
            image = read_image(path)
        except ImageReadError as e:
            report.unreadable.append((rel, str(e)))
            log(f"unreadable: {rel}: {e}")
            continue
        try:
            face = prepare_face(image, size, detector=detector)
        except FaceNotFound:
            report.no_face.append(rel)
            log(f"no face: {rel}")
            continue
        except AlignmentError as e:
            report.found.append(rel)
            raw[rel] = e.points.astype(np.float32)
            if aligned is not None:
                report.not_aligned.append((rel, str(e)))
                log(f"not aligned: {rel}: {e}")
            continue
        report.found.append(rel)
        raw[rel] = face.photo_landmarks
        if aligned is None:
            continue
        crop_rel = Path(rel).with_suffix(".png").as_posix()
        (aligned / crop_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face.crop).save(aligned / crop_rel)
        crops_lm[crop_rel] = face.landmarks
        transforms[crop_rel] = face.transform
    write_landmarks_csv(out, raw)
    if aligned is not None:
        aligned.mkdir(parents=True, exist_ok=True)
        write_landmarks_csv(aligned / "landmarks.csv", crops_lm)
        rows = [",".join([k] + [repr(float(v)) for v in m.reshape(-1)]) for k, m in transforms.items()]
        (aligned / "transforms.csv").write_text("".join(r + "\n" for r in rows))
    report_path = out.with_name(out.name + ".report.txt")
    report_path.write_text("".join(line + "\n" for line in report.lines()))
    n_bad = len(report.no_face) + len(report.unreadable) + len(report.not_aligned)
    log(f"{len(report.found)} of {len(report.found) + len(report.no_face) + len(report.unreadable)} images "
        f"with landmarks -> {out}; {len(report.no_face)} without a face, {len(report.unreadable)} unreadable"
        + (f", {len(report.not_aligned)} not aligned" if aligned is not None else "")
        + (f"; problems listed in {report_path}" if n_bad else ""))
    return report


