"""The real-face folder (``shared/assets/faces/train``): reading it, filtering it by licence, and the identity split.

Layout (the folder's README): ``images/<id>.jpg`` crops, ``landmarks.csv`` (dlib 68 points per crop, the authors'
CSV format), ``meta.jsonl`` (one record per crop: ``id``, ``identity`` cluster, ``licence_class``,
``image_rights``, provenance, ``flags``, ...) and ``descriptors.npy``.

**The identity split** (:func:`identity_split`, used by every experiment that holds real faces out): the distinct
identity clusters are sorted, permuted by ``numpy.random.default_rng(seed)``, and the first
``round(held_out × n_identities)`` of the permutation are held out; every face of a held-out identity is held out
(never split by image). The project's held-out set is ``held_out=0.2, seed=0`` (:data:`HELD_OUT`,
:data:`SPLIT_SEED`), computed on the whole folder before any licence filter, so that a licence-filtered training
set never contains a held-out identity.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import assets
from .io import read_landmarks_csv

__all__ = ["FaceRecord", "read_face_folder", "identity_split", "licence_filter", "default_face_folder",
           "HELD_OUT", "SPLIT_SEED", "LICENCE_FILTERS"]

#: The project's held-out fraction of the real-face identities and the seed of that split.
HELD_OUT = 0.2
SPLIT_SEED = 0

#: Licence filters: ``"licensed"`` = images published under an explicit licence by their owners (may ship);
#: ``"permissive"`` = a permissive repository licence (images may still be third-party); ``"all"`` = research only.
LICENCE_FILTERS = ("licensed", "permissive", "all")


@dataclass(frozen=True)
class FaceRecord:
    """One crop of the folder: ``id``, ``path`` (the image file), ``landmarks (68, 2) float32`` (crop pixels,
    pixel centres at +0.5), ``identity`` (cluster number), ``licence_class``, ``image_rights``, ``flags``, and the
    ``licence`` (SPDX id or class) and ``source`` (repository) for attribution."""

    id: str
    path: Path
    landmarks: np.ndarray
    identity: int
    licence_class: str
    image_rights: str
    flags: tuple[str, ...] = ()
    licence: str = "unknown"
    source: str = ""


def default_face_folder() -> Path:
    """``shared_dir()/assets/faces/train``."""
    return assets.shared_dir() / "assets" / "faces" / "train"


def read_face_folder(root: str | Path | None = None) -> list[FaceRecord]:
    """Every face of the folder, in id order.

    Raises:
        FileNotFoundError: the folder, ``meta.jsonl`` or ``landmarks.csv`` is missing.
        ValueError: a malformed ``meta.jsonl`` line (naming the line), or a face without landmarks.
    """
    root = Path(root) if root is not None else default_face_folder()
    meta_path, lm_path = root / "meta.jsonl", root / "landmarks.csv"
    for p in (meta_path, lm_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (not a real-face folder: see shared/assets/faces/train/README.md)")
    landmarks = read_landmarks_csv(lm_path)
    out = []
    for lineno, line in enumerate(meta_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            fid, identity = str(rec["id"]), int(rec["identity"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{meta_path}:{lineno}: not a face record ({e})") from None
        rel = f"images/{fid}.jpg"
        if rel not in landmarks:
            raise ValueError(f"{lm_path}: no landmarks for {rel} ({meta_path}:{lineno})")
        out.append(FaceRecord(fid, root / rel, landmarks[rel], identity, str(rec.get("licence_class", "unknown")),
                              str(rec.get("image_rights", "third-party-or-unclear")),
                              tuple(str(f) for f in rec.get("flags", ())), str(rec.get("licence", "unknown")),
                              str(rec.get("source_repo", ""))))
    return out


def identity_split(records: Sequence[FaceRecord], held_out: float = HELD_OUT, seed: int = SPLIT_SEED
                   ) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """``(train, held_out)`` records, split by identity (see the module docstring); both in the input order."""
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out: expected a fraction in [0, 1), got {held_out!r}")
    idents = sorted({r.identity for r in records})
    k = int(round(held_out * len(idents)))
    perm = np.random.default_rng(seed).permutation(len(idents))
    test = {idents[i] for i in perm[:k]}
    return [r for r in records if r.identity not in test], [r for r in records if r.identity in test]


def licence_filter(records: Iterable[FaceRecord], which: str = "licensed") -> list[FaceRecord]:
    """The records a licence filter keeps (:data:`LICENCE_FILTERS`)."""
    if which not in LICENCE_FILTERS:
        raise ValueError(f"licence: expected one of {LICENCE_FILTERS}, got {which!r}")
    if which == "licensed":
        return [r for r in records if r.image_rights == "licensed"]
    if which == "permissive":
        return [r for r in records if r.licence_class == "permissive"]
    return list(records)
