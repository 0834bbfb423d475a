"""Where the shared development assets (face photos, models, occluders) are found.

Order: the ``OCCRECON_SHARED`` environment variable, then ``../shared`` beside the source checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_dir", "dev_faces"]


def shared_dir(required: bool = True) -> Path | None:
    """The shared asset folder, or None (or FileNotFoundError when ``required``) if there is none."""
    candidates = []
    if os.environ.get("OCCRECON_SHARED"):
        candidates.append(Path(os.environ["OCCRECON_SHARED"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for c in candidates:
        if (c / "assets").is_dir():
            return c
    if required:
        raise FileNotFoundError(
            "shared assets not found; set OCCRECON_SHARED to the folder that holds assets/ (tried: "
            + ", ".join(str(c) for c in candidates) + ")")
    return None


def dev_faces() -> list[tuple[Path, Path]]:
    """(image, 5-point detection file) pairs of the development face photos, sorted by name."""
    root = shared_dir() / "assets" / "faces" / "dev"
    out = []
    for img in sorted(root.glob("*.jpg")):
        det = root / "detections5" / (img.stem + ".txt")
        if det.is_file():
            out.append((img, det))
    return out
