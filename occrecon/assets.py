"""Where the shared development assets (face photos, models, occluders) and the package's own files are found.

Shared folder: the ``OCCRECON_SHARED`` environment variable, then ``../shared`` beside the source checkout.
Path prefixes (config files, checkpoints): ``shared:rel/path`` inside the shared folder, ``package:rel/path``
inside the installed ``occrecon`` package (files shipped in the wheel: models, checkpoints).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_dir", "dev_faces", "package_dir", "resolve_asset_path", "SHARED_PREFIX", "PACKAGE_PREFIX"]

#: Prefix of paths inside the shared asset folder.
SHARED_PREFIX = "shared:"
#: Prefix of paths inside the installed package.
PACKAGE_PREFIX = "package:"


def package_dir() -> Path:
    """The installed ``occrecon`` package folder (where shipped models and checkpoints live)."""
    return Path(__file__).resolve().parent


def resolve_asset_path(path: str | Path) -> Path:
    """``shared:rel`` → inside :func:`shared_dir` (FileNotFoundError when there is none), ``package:rel`` →
    inside :func:`package_dir`, anything else as given (``~`` expanded). Existence is not checked."""
    text = str(path)
    if text.startswith(SHARED_PREFIX):
        return shared_dir() / text[len(SHARED_PREFIX):]
    if text.startswith(PACKAGE_PREFIX):
        return package_dir() / text[len(PACKAGE_PREFIX):]
    return Path(text).expanduser()


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
