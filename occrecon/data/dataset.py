"""The occlusion dataset folder: writer, ``FaceDataset`` reader with augmentation, and a train/held-out split.

Folder format (``DATASET_FORMAT``)::

    images/<id>.png                        224² RGB
    masks/<id>_visible_skin_mask.png       GT visible face (1 = visible skin)
    masks/<id>_labelled_mask.png           real faces only: where that truth is known (1 = the landmark face
                                           region or an occluder pixel, occrecon.data.synth.labelled_region);
                                           synthetic samples are labelled everywhere
    landmarks.csv                          authors' format: images/<id>.png,x1,y1,...,x68,y68 (NaN: no landmark)
    meta.jsonl                             one JSON record per sample, sorted by id: id, kind (synthetic|real),
                                           identity, occluded, occluded_fraction, occluders [{name, kind, licence}],
                                           seed, index
    theta.npy, theta_ids.json              GT θ (N_synthetic, P) float32 of the synthetic samples, row order = ids
    README.txt                             what produced it (seed, counts, model, licences)

Augmentation (``FaceDataset(root, augment=True)``): a random similarity about the image centre — shift ±10 px,
scale ±10 %, rotation ±10° — and a horizontal flip with probability 0.5 (landmarks re-indexed with
``IBUG_FLIP``), applied identically to the image, the mask (bilinear, re-binarised at 0.5) and the landmarks.
Randomness comes from torch's global generator (one draw per item), so DataLoader workers differ and a training
run's saved RNG state reproduces it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .ibug import IBUG_FLIP
from .warp import similarity_matrix

__all__ = ["DATASET_FORMAT", "AUGMENT_SHIFT", "AUGMENT_SCALE", "AUGMENT_ROTATION", "AUGMENT_FLIP_P",
           "image_relpath", "mask_relpath", "labelled_relpath", "write_sample_files", "finish_dataset", "read_meta", "FaceDataset",
           "random_augmentation", "augment", "split_ids", "DatasetError", "write_landmark_table",
           "read_landmark_table"]

DATASET_FORMAT = "occrecon-occlusion-dataset-v1"
#: Augmentation ranges (the paper's): shift in pixels, relative scale, rotation in degrees, flip probability.
AUGMENT_SHIFT, AUGMENT_SCALE, AUGMENT_ROTATION, AUGMENT_FLIP_P = 10.0, 0.10, 10.0, 0.5


class DatasetError(ValueError):
    """A dataset folder is missing a file or has a corrupt or inconsistent record."""


def image_relpath(sample_id: str) -> str:
    return f"images/{sample_id}.png"


def mask_relpath(sample_id: str) -> str:
    return f"masks/{sample_id}_visible_skin_mask.png"


def labelled_relpath(sample_id: str) -> str:
    """The real sample's known-truth mask (:func:`occrecon.data.synth.labelled_region`); absent for renders."""
    return f"masks/{sample_id}_labelled_mask.png"


def write_sample_files(root: str | Path, sample) -> dict:
    """Write one :class:`~occrecon.data.synth.Sample`'s image and mask PNGs under ``root``; returns its record
    ``{"meta", "landmarks" (68, 2), "theta" (P,) | None}`` for :func:`finish_dataset`."""
    from PIL import Image

    from .io import write_mask

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample.image).save(root / image_relpath(sample.id), compress_level=1)
    write_mask(root / mask_relpath(sample.id), sample.mask)
    if sample.kind == "real":
        from .synth import labelled_region

        write_mask(root / labelled_relpath(sample.id), labelled_region(sample.region, sample.occluder_alpha))
    return {"meta": sample.meta(), "landmarks": np.asarray(sample.landmarks, np.float32), "theta": sample.theta}


def finish_dataset(root: str | Path, records: Iterable[dict], info: dict) -> Path:
    """Write ``landmarks.csv``, ``meta.jsonl``, ``theta.npy`` / ``theta_ids.json`` and ``README.txt`` for the
    ``records`` of :func:`write_sample_files` (sorted by id, so the files do not depend on generation order)."""
    root = Path(root)
    recs = sorted(records, key=lambda r: r["meta"]["id"])
    ids = [r["meta"]["id"] for r in recs]
    if len(set(ids)) != len(ids):
        raise ValueError("records: duplicate sample ids")
    write_landmark_table(root / "landmarks.csv", {image_relpath(i): r["landmarks"] for i, r in zip(ids, recs)})
    with open(root / "meta.jsonl", "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r["meta"], sort_keys=True) + "\n")
    syn = [r for r in recs if r["theta"] is not None]
    if syn:
        np.save(root / "theta.npy", np.stack([np.asarray(r["theta"], np.float32) for r in syn]))
        (root / "theta_ids.json").write_text(json.dumps([r["meta"]["id"] for r in syn]) + "\n")
    licences = sorted({(o["name"], o["licence"]) for r in recs for o in r["meta"]["occluders"]
                       if o["name"].startswith("cutout:")})
    lines = [f"format: {DATASET_FORMAT}", "produced by: occrecon data synth"]
    lines += [f"{k}: {v}" for k, v in sorted(info.items())]
    lines += [f"samples: {len(recs)} ({len(syn)} synthetic, {len(recs) - len(syn)} real); "
              f"occluded: {sum(r['meta']['occluded'] for r in recs)}",
              "",
              "images/<id>.png: 224x224 RGB. masks/<id>_visible_skin_mask.png: 1 = visible face skin (face region",
              "minus occluders with alpha >= 0.5). Face region: synthetic = rendered region Phi; real = convex hull of",
              "the jaw contour and the raised eyebrows (occrecon.data.synth.real_face_region).",
              "masks/<id>_labelled_mask.png (real faces): 1 where that truth is known (face region or occluder).",
              "landmarks.csv: images/<id>.png,x1,y1,...,x68,y68 in crop pixels (pixel centre at +0.5); NaN where the",
              "face model has no landmark vertex (SFM: jaw contour except the chin, inner mouth corners).",
              "meta.jsonl: id, kind, identity, occluded, occluded_fraction, occluders (name, kind, licence), seed,",
              "index; faces of a face folder also split (train | held_out: the identity split, held-out samples are",
              "never trained on) and source (face id, licence, repository).",
              "theta.npy (+ theta_ids.json): ground-truth parameters of the synthetic samples in the model's layout.",
              "", "library cut-outs used (file: licence):"]
    lines += [f"  {name[len('cutout:'):]}: {lic}" for name, lic in licences] or ["  none"]
    (root / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_landmark_table(path: str | Path, table: dict[str, np.ndarray]) -> None:
    """Write ``{relative_path: (68, 2) float32}`` as ``relative_path,x1,y1,...,x68,y68`` rows. Values are written
    as the shortest decimal of their float32 value (exact round trip), NaN as ``nan``. Rows without NaN are the
    authors' format as ``io.write_landmarks_csv`` writes it; ``io`` refuses NaN, which here means "no landmark
    vertex" (SFM's jaw), not a failed detection."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rel, pts in table.items():
            p = np.asarray(pts, np.float32)
            if p.shape != (68, 2):
                raise ValueError(f"table: landmarks of {rel!r} must be (68, 2), got {p.shape}")
            f.write(",".join([rel] + [repr(float(v)) for v in p.reshape(-1)]) + "\n")


def read_landmark_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read :func:`write_landmark_table`'s rows into ``{relative_path: (68, 2) float32}`` (NaN kept: the dataset
    stores NaN where a face model has no landmark). A row with a wrong value count or a non-number raises
    :class:`DatasetError` naming the file and line."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 1 + 136:
            raise DatasetError(f"{path}:{n}: expected a path and 136 values, got {len(cells) - 1} values")
        try:
            out[cells[0]] = np.array([float(c) for c in cells[1:]], np.float32).reshape(68, 2)
        except ValueError:
            raise DatasetError(f"{path}:{n}: non-numeric landmark value") from None
    return out


#: Keys every ``meta.jsonl`` record of a dataset written by ``occrecon data synth`` holds.
META_KEYS = ("id", "kind", "occluded")


def read_meta(root: str | Path, required: Sequence[str] = META_KEYS, name: str = "root") -> list[dict]:
    """The ``meta.jsonl`` records of a dataset folder, in file order: the one reader of the format (training,
    ``occrecon evaluate``). Each record must be a JSON object with the ``required`` keys, a boolean ``occluded`` when
    it has one, and an ``id`` no other record has.

    Args:
        root: the dataset folder.
        required: keys every record must have (an evaluation set needs only ``id`` and ``occluded``).
        name: the argument or flag ``root`` came from, for the messages.

    Raises:
        FileNotFoundError: no folder, or no ``meta.jsonl`` in it.
        DatasetError: a record that is not JSON, lacks a key, has a non-boolean ``occluded`` or a repeated id, or
            no record at all (each naming the file and line).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset folder {root} does not exist")
    path = root / "meta.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {root} has no meta.jsonl (not a dataset folder)")
    out, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: corrupt JSON record (not valid JSON: {e.msg})") from None
        missing = [k for k in required if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise DatasetError(f"{path}:{n}: record needs the keys {', '.join(repr(k) for k in required)} "
                               f"(missing {', '.join(repr(k) for k in missing)})")
        if "occluded" in rec and not isinstance(rec["occluded"], bool):
            raise DatasetError(f"{path}:{n}: 'occluded' must be true or false, got {rec['occluded']!r}")
        rec["id"] = str(rec["id"])
        if rec["id"] in seen:
            raise DatasetError(f"{path}:{n}: id {rec['id']!r} repeats")
        seen.add(rec["id"])
        out.append(rec)
    if not out:
        raise DatasetError(f"{path}: lists no samples")
    return out


def random_augmentation(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, bool]:
    """A random ``(2, 3)`` augmentation matrix (flip, then rotation/scale about the centre, then shift) within
    :data:`AUGMENT_SHIFT` / :data:`AUGMENT_SCALE` / :data:`AUGMENT_ROTATION`, and whether it flips."""
    flip = bool(rng.random() < AUGMENT_FLIP_P)
    m = similarity_matrix(1 + rng.uniform(-AUGMENT_SCALE, AUGMENT_SCALE),
                          math.radians(rng.uniform(-AUGMENT_ROTATION, AUGMENT_ROTATION)), (size / 2, size / 2),
                          tuple(rng.uniform(-AUGMENT_SHIFT, AUGMENT_SHIFT, 2)), flip=flip, width=size)
    return m, flip


def augment(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, m: np.ndarray,
            flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the similarity ``m (2, 3)`` (source → output pixels; ``flip`` says whether it mirrors x) to
    ``image (H, W, 3) float32``, ``mask (H, W)`` and ``landmarks (68, 2)`` (NaN rows stay NaN; re-indexed with
    ``IBUG_FLIP`` when flipped). Outside the source the image is 0 and the mask 0.

    Bilinear without a prefilter (:func:`~occrecon.data.align.warp_affine_tensor`, one ``grid_sample`` for image
    and mask): the augmentation shrinks by at most 10 %, where :func:`~occrecon.data.align.warp_affine`'s prefilter
    changes little, and this is ~10x faster than the numpy warp (it was a third of a CPU training step)."""
    from .align import transform_points, warp_affine_tensor

    h, w = image.shape[:2]
    image, mask = np.asarray(image, np.float32), np.asarray(mask, np.float32)
    if mask.shape != (h, w):
        raise ValueError(f"mask: expected shape {(h, w)} (the image's), got {mask.shape}")
    both = np.concatenate([image.reshape(h, w, -1), mask[..., None]], -1)
    with torch.no_grad():
        out = warp_affine_tensor(torch.from_numpy(both).permute(2, 0, 1)[None], m, (h, w), padding="zeros")
    out = out[0].permute(1, 2, 0).numpy()
    img = np.ascontiguousarray(out[..., :-1]).reshape(image.shape)
    msk = (out[..., -1] >= 0.5).astype(np.float32)
    lms = transform_points(np.asarray(landmarks, np.float64), m).astype(np.float32)
    if flip:
        lms = lms[IBUG_FLIP]
    return img, msk, lms


class FaceDataset(torch.utils.data.Dataset):
    """Reader of a dataset folder written by ``occrecon data synth``.

    Args:
        root: the folder.
        augment: apply the random augmentation (see the module docstring).
        ids: optional subset of sample ids (e.g. from :func:`split_ids`), kept in the given order.
        cache: keep every decoded image and mask in memory after its first read (uint8: ~200 kB per 224² sample;
            each DataLoader worker holds its own copy). Items are identical with and without it.

    Items: ``dict(image (3, H, W) float32 in [0, 1], landmarks (68, 2) float32, mask (1, H, W) float32 {0, 1},
    occluded bool tensor, index int64 tensor, id str)``. Missing folder/files → FileNotFoundError; corrupt
    records (bad JSON, missing landmark rows, unknown ids) → :class:`DatasetError` naming the file and sample.
    """

    def __init__(self, root: str | Path, augment: bool = False, ids: Sequence[str] | None = None,
                 cache: bool = False, teacher: bool = False):
        self.root = Path(root)
        meta = read_meta(self.root)
        by_id = {r["id"]: r for r in meta}
        if ids is not None:
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise DatasetError(f"ids: {len(unknown)} ids not in {self.root / 'meta.jsonl'}, e.g. {unknown[:3]}")
            meta = [by_id[i] for i in ids]
        lm_path = self.root / "landmarks.csv"
        if not lm_path.is_file():
            raise FileNotFoundError(f"root: {self.root} has no landmarks.csv")
        table = read_landmark_table(lm_path)
        self.records = meta
        self.landmarks = []
        for r in meta:
            key = image_relpath(r["id"])
            if key not in table:
                raise DatasetError(f"{lm_path}: no landmark row for sample {r['id']!r} ({key})")
            self.landmarks.append(np.asarray(table[key], np.float32))
        self.augment = bool(augment)
        self.cache = bool(cache)
        self.teacher = None
        if teacher:  # the fitting engine's θ* of every sample (occrecon data fit), NaN where a sample has none
            fit = read_fit(self.root)
            row = {sid: i for i, sid in enumerate(fit["ids"])}
            nan = np.full(fit["theta"].shape[1], np.nan, np.float32)
            self.teacher = [fit["theta"][row[r["id"]]] if r["id"] in row else nan for r in meta]
        self._cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        from .io import ImageReadError, read_image, read_mask

        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} samples")
        rec = self.records[index]
        if index in self._cached:
            raw, mask = self._cached[index]
            mask = mask.copy()  # the item must not alias the cache
        else:
            img_path, mask_path = self.root / image_relpath(rec["id"]), self.root / mask_relpath(rec["id"])
            for p in (img_path, mask_path):
                if not p.is_file():
                    raise FileNotFoundError(f"sample {rec['id']!r}: missing {p}")
            try:
                raw = read_image(img_path)
                mask = read_mask(mask_path)
            except ImageReadError as e:
                raise DatasetError(f"sample {rec['id']!r}: {e}") from None
            if mask.shape != raw.shape[:2]:
                raise DatasetError(f"sample {rec['id']!r}: mask {mask.shape} and image {raw.shape[:2]} differ")
            if self.cache:
                self._cached[index] = (raw, mask.copy())
        image = raw.astype(np.float32) / 255.0
        lms = self.landmarks[index]
        m, flip = np.eye(2, 3), False
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, ()).item()))
            m, flip = random_augmentation(rng, image.shape[1])
            image, mask, lms = augment(image, mask, lms, m, flip)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "landmarks": torch.from_numpy(np.ascontiguousarray(lms)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask))[None],
                "occluded": torch.tensor(bool(rec["occluded"])), "index": torch.tensor(index), "id": rec["id"],
                "affine": torch.from_numpy(np.asarray(m, np.float32)), "flip": torch.tensor(bool(flip))}
        if self.teacher is not None:
            item["teacher_theta"] = torch.from_numpy(np.asarray(self.teacher[index], np.float32))
        return item


def split_ids(root: str | Path, held_out: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split a dataset into (train, held-out) id lists, grouped by identity: every sample of a held-out identity
    is held out (real faces: all augmented copies of one photo go to one side; synthetic faces are each their own
    identity). Samples whose record carries a ``split`` (real faces of a face folder, split by
    :func:`occrecon.data.faces.identity_split` when the dataset was written) keep it, whatever ``held_out`` says.
    Of the others, a fraction ``held_out`` of the real identities (at least one when there are two or more) and of
    the synthetic samples is held out, chosen with ``seed``. Both lists are sorted."""
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be in [0, 1), got {held_out}")
    meta = read_meta(root)
    fixed = {r["id"]: r["split"] for r in meta if r.get("split") in ("train", "held_out")}
    free = [r for r in meta if r["id"] not in fixed]
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for kind in ("synthetic", "real"):
        idents = sorted({r.get("identity", r["id"]) for r in free if r["kind"] == kind})
        k = int(round(held_out * len(idents)))
        if kind == "real" and held_out > 0 and len(idents) >= 2:
            k = max(k, 1)
        test |= {idents[i] for i in rng.permutation(len(idents))[:k]}
    held = {r["id"] for r in free if r.get("identity", r["id"]) in test}
    held |= {i for i, split in fixed.items() if split == "held_out"}
    return sorted(r["id"] for r in meta if r["id"] not in held), sorted(held)


# ---- the fitting-engine teacher of a dataset folder (written by occrecon.fit.dataset.fit_dataset) ------------
#: ``fit/info.json``'s ``format``.
FIT_FORMAT = "occrecon-fit-v1"


class FitDatasetError(ValueError):
    """A ``fit/`` folder that does not match the dataset or the settings, or is incomplete or damaged."""


def read_fit(root: str | Path) -> dict:
    """The teacher of a dataset folder: ``{"ids", "theta" (N, P) float32, "loss", "converged", "diverged",
    "info"}`` from ``root/fit/`` (:func:`fit_dataset`). FileNotFoundError when there is none; FitDatasetError when
    it is incomplete (a run was stopped: run ``occrecon data fit`` again to finish it) or inconsistent."""
    out = Path(root) / "fit"
    info_path = out / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root}: no fitting-engine teacher (run occrecon data fit {root})")
    info = json.loads(info_path.read_text())
    if info.get("format") != FIT_FORMAT:
        raise FitDatasetError(f"{info_path}: format {info.get('format')!r}, expected {FIT_FORMAT!r}")
    if not info.get("complete"):
        raise FitDatasetError(f"{out}: incomplete (run occrecon data fit {root} again to finish it)")
    arrays = {k: np.load(out / f"{k}.npy") for k in ("theta", "loss", "converged", "diverged")}
    n = len(info["ids"])
    if any(len(a) != n for a in arrays.values()):
        raise FitDatasetError(f"{out}: the arrays do not have one row per id of info.json")
    return {"ids": list(info["ids"]), **arrays, "info": info}
