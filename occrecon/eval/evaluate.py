"""``occrecon evaluate``: run checkpoints over a dataset folder and print the paper's Table 1-4 layout.

Dataset folder (written by ``occrecon data synth``)::

    images/<id>.png                         aligned RGB crops (resized to the checkpoint's crop size if needed)
    masks/<id>_visible_skin_mask.png        GT visible face, white (255, or 1 in a 0/1 PNG) = visible skin
    masks/<id>_labelled_mask.png            optional (real faces): where that truth is known; masks are scored there
    meta.jsonl                              one JSON object per line with at least "id" and "occluded" (bool)

Each checkpoint is given as ``NAME=PATH`` or ``NAME=PATH:MODE``. MODE selects the segmentation that is scored:

* ``unet`` (default): the checkpoint's mask ``M = Φ · sigmoid(UNet(I_T, I_R))`` (Φ itself without a UNet);
* ``pseudo``: the robust-initialisation pseudo-mask of eq. 9, ``occrecon.losses.pseudo_mask(I_T, I_R, Φ)``
  (pixels whose reconstruction error is below ξ): the paper's "Pretrained" row,
  e.g. ``--checkpoint Pretrained=runs/init/last.pt:pseudo``;
* ``all``: "everything in Φ is face" (M = Φ), the trivial baseline beside every mask;
* ``skin``: the Deep3D-style skin-colour mask ``Φ · occrecon.losses.skin_mask(I_T)``.

``NAME=fit`` or ``NAME=fit:PRESET`` (``fast``, ``quality``) is the fitting engine alone (no network: each image
fitted from the mean face with the dataset's landmarks, ``--model`` or the shipped model; its robust mask scored).

Per image: ACC/PPV/TPR/F1 inside Φ (and, where the sample has a labelled mask, inside it: on a real photo Φ's
forehead above the raised brows and its rim beyond the jaw may be skin, hair or background, whose truth is unknown,
:func:`occrecon.data.synth.labelled_region`), binarised (M > 0.5) and soft; RMSE and MAE (0-255) over GT-visible face pixels
inside Φ (``visible = GT · Φ``; the render clamped to [0, 1] as a saved image would be); the occlusion fraction
``1 − Σ M / Σ Φ``. Summaries (mean ± std, NaN-aware) on the ``Unoccluded``, ``Occluded`` and ``Overall`` subsets.

``--paired-with NAME`` adds a paired comparison: for every other method, ``method − NAME`` image by image (F1,
soft F1, RMSE, MAE), as mean ± standard error and the number of images on which the method is better. Between
images the metrics vary far more (F1 ± 0.2) than between methods on one image, so this, not the difference of two
``mean ± std`` cells, says whether one method beats another.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .metrics import (DEFAULT_THRESHOLD, LOWER_IS_BETTER, PairedDifference, Summary, paired_difference,
                      reconstruction_errors, segmentation_metrics, summarise)
from ..data.dataset import image_relpath, labelled_relpath, mask_relpath, read_meta
from .table import format_table

__all__ = ["EvalSample", "CheckpointSpec", "SEGMENTATION_MODES", "SUBSETS", "read_eval_dataset", "read_id_list",
           "held_out_ids",
           "parse_checkpoint_arg", "evaluate_reconstructor", "summarise_by_subset", "paired_differences",
           "format_report", "format_paired", "PAIRED_KEYS"]

#: How the scored mask is obtained (see the module docstring).
SEGMENTATION_MODES = ("unet", "pseudo", "all", "skin")
#: Column groups of the tables, in the paper's order (Table 2: unoccluded, occluded, overall).
SUBSETS = ("Unoccluded", "Occluded", "Overall")
#: Per-image values written to JSON and summarised.
SEG_KEYS = ("acc", "ppv", "tpr", "f1")
VALUE_KEYS = SEG_KEYS + tuple(f"soft_{k}" for k in SEG_KEYS) + ("rmse", "mae", "occlusion_fraction")
#: Per-image values compared by ``--paired-with``: segmentation F1 (binarised and soft) and the reconstruction errors.
PAIRED_KEYS = ("f1", "soft_f1", "rmse", "mae")


@dataclass(frozen=True)
class EvalSample:
    """One dataset entry: ``id``, image and GT-mask paths, whether it is occluded, and the mask of the pixels whose
    truth is known (None: all of them)."""

    id: str
    image: Path
    mask: Path
    occluded: bool
    labelled: Path | None = None


@dataclass(frozen=True)
class CheckpointSpec:
    """A ``NAME=PATH[:MODE]`` command-line entry, or ``NAME=fit[:PRESET]`` (``fit`` set: the fitting engine alone)."""

    name: str
    path: Path
    segmentation: str = "unet"
    fit: str | None = None


def read_eval_dataset(root: str | Path, ids: Sequence[str] | None = None) -> list[EvalSample]:
    """The samples listed in ``root/meta.jsonl``, in file order, with their image and mask files checked.

    Args:
        root: the dataset folder.
        ids: keep only these sample ids, in this order (e.g. the held-out part of a training split).

    Raises:
        FileNotFoundError: the folder, ``meta.jsonl``, or a listed image/mask file is missing.
        ValueError: a line is not JSON, lacks ``id``/``occluded``, ``occluded`` is not a bool, or ids repeat.
    """
    root = Path(root)
    meta = root / "meta.jsonl"
    samples = []
    for rec in read_meta(root, required=("id", "occluded"), name="data"):  # the dataset format's one reader
        image, mask = root / image_relpath(rec["id"]), root / mask_relpath(rec["id"])
        for p in (image, mask):
            if not p.is_file():
                raise FileNotFoundError(f"{meta}: sample {rec['id']!r}: {p} is missing")
        labelled = root / labelled_relpath(rec["id"])
        samples.append(EvalSample(rec["id"], image, mask, rec["occluded"], labelled if labelled.is_file() else None))
    if ids is None:
        return samples
    by_id = {s.id: s for s in samples}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ValueError(f"ids: {len(unknown)} id(s) not in {meta}, e.g. {unknown[:3]}")
    if not ids:
        raise ValueError("ids: empty selection")
    return [by_id[i] for i in ids]


def read_id_list(path: str | Path) -> list[str]:
    """Sample ids from a text file, one per line (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ids: no id list at {path}")
    out = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [i for i in out if i]


def held_out_ids(root: str | Path, held_out: float, seed: int = 0) -> list[str]:
    """The held-out ids of the training split ``occrecon.data.dataset.split_ids(root, held_out, seed)`` (the
    split a training run with ``data.held_out`` / ``data.split_seed`` left out of training)."""
    try:
        from ..data.dataset import split_ids  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"held_out: needs occrecon.data.dataset.split_ids, which is unavailable: {exc}") from None
    if not 0.0 < float(held_out) < 1.0:
        raise ValueError(f"held_out: expected a fraction in (0, 1), got {held_out!r}")
    return list(split_ids(root, float(held_out), int(seed))[1])


def _landmarks(samples: Sequence[EvalSample], size: tuple[int, int]) -> torch.Tensor:
    """``(B, 68, 2)`` the samples' landmarks (``landmarks.csv`` of their folder) at crop size ``size``."""
    from PIL import Image  # noqa: PLC0415

    from ..data.dataset import image_relpath, read_landmark_table  # noqa: PLC0415

    tables: dict[Path, dict] = {}
    out = []
    for s in samples:
        root = s.image.parent.parent
        if root not in tables:
            path = root / "landmarks.csv"
            if not path.is_file():
                raise FileNotFoundError(f"data: {root} has no landmarks.csv (the fitting engine needs landmarks)")
            tables[root] = read_landmark_table(path)
        lm = tables[root].get(image_relpath(s.id))
        if lm is None:
            raise ValueError(f"data: no landmark row for sample {s.id!r}")
        with Image.open(s.image) as im:
            w, _ = im.size
        out.append(torch.as_tensor(np.asarray(lm, np.float32)) * (size[1] / w))
    return torch.stack(out)


def _load_batch(samples: Sequence[EvalSample], size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(B, 3, H, W)`` float [0, 1], GT masks and labelled masks ``(B, 1, H, W)`` {0, 1} (all ones for a
    sample without one), resized to ``size`` if needed."""
    from PIL import Image  # noqa: PLC0415

    def read(path: Path, mode: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert(mode))
        except (OSError, ValueError) as exc:  # corrupt or truncated file, unknown format
            raise ValueError(f"{path}: cannot read the image ({exc})") from None

    def read_mask(path: Path, shape) -> torch.Tensor:
        grey = read(path, "L")
        # 0/255 masks (threshold at mid-grey) and 0/1-valued masks (any non-zero value) are both accepted
        m = torch.from_numpy((grey > (0 if grey.max() <= 1 else 127)).astype(np.float32))[None]
        if tuple(m.shape[1:]) != tuple(shape):
            raise ValueError(f"{path}: size {tuple(m.shape[1:])} differs from its image {tuple(shape)}")
        return m

    images, masks, known = [], [], []
    for s in samples:
        img = torch.from_numpy(read(s.image, "RGB").astype(np.float32) / 255.0).permute(2, 0, 1)
        m = read_mask(s.mask, img.shape[1:])
        k = read_mask(s.labelled, img.shape[1:]) if s.labelled is not None else torch.ones_like(m)
        if tuple(img.shape[1:]) != tuple(size):
            # area filter when shrinking (as training resizes its crops), bilinear when enlarging
            mode = "area" if img.shape[1] >= size[0] and img.shape[2] >= size[1] else "bilinear"
            img = torch.nn.functional.interpolate(img[None], size=size, mode=mode)[0].clamp(0, 1)
            m = (torch.nn.functional.interpolate(m[None], size=size, mode="area")[0] > 0.5).float()
            k = (torch.nn.functional.interpolate(k[None], size=size, mode="area")[0] > 0.5).float()
        images.append(img)
        masks.append(m)
        known.append(k)
    return torch.stack(images), torch.stack(masks), torch.stack(known)


def parse_checkpoint_arg(text: str) -> CheckpointSpec:
    """``"NAME=PATH"`` or ``"NAME=PATH:MODE"`` (MODE in :data:`SEGMENTATION_MODES`) → :class:`CheckpointSpec`."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest:
        raise ValueError(f"checkpoint: expected NAME=PATH[:MODE], got {text!r}")
    head, colon, tail = rest.partition(":")
    if head == "fit" and not Path(rest).exists():  # the fitting engine alone
        from ..fit import FIT_PRESETS  # noqa: PLC0415

        preset = tail if colon else "fast"
        if preset not in FIT_PRESETS:
            raise ValueError(f"checkpoint: unknown fit preset {preset!r} in {text!r}; use one of {sorted(FIT_PRESETS)}")
        return CheckpointSpec(name.strip(), Path("fit"), "unet", preset)
    path, mode = rest, "unet"
    head, colon, tail = rest.rpartition(":")
    if colon and tail in SEGMENTATION_MODES:
        path, mode = head, tail
    elif colon and tail and not Path(rest).exists() and "/" not in tail and "\\" not in tail:
        raise ValueError(f"checkpoint: unknown segmentation mode {tail!r} in {text!r}; use one of "
                         f"{SEGMENTATION_MODES}")
    return CheckpointSpec(name.strip(), Path(path), mode)


def _pseudo_mask_fn() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    try:
        from ..losses import pseudo_mask  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"segmentation 'pseudo' needs occrecon.losses.pseudo_mask, which is unavailable: "
                           f"{exc}") from None
    return pseudo_mask


def evaluate_reconstructor(rec, samples: Sequence[EvalSample], segmentation: str = "unet", batch_size: int = 8,
                           threshold: float = DEFAULT_THRESHOLD, progress: bool = False) -> dict[str, np.ndarray]:
    """Per-image metrics of one :class:`~occrecon.api.Reconstructor` over ``samples``.

    Args:
        rec: a Reconstructor (its ``image_size`` sets the crop size the images are resized to).
        samples: from :func:`read_eval_dataset`.
        segmentation: ``"unet"`` (the reconstructor's mask), ``"pseudo"`` (eq. 9 pseudo-mask of its render),
            ``"all"`` (M = Φ) or ``"skin"`` (Φ · skin colour of the photo).
        batch_size: images per forward pass.
        threshold: binarisation threshold of the hard metrics.

    Returns:
        ``{key: (N,) float64}`` for every key of :data:`VALUE_KEYS` (NaN where a metric is undefined), plus
        ``"occluded"`` ``(N,)`` bool.
    """
    if segmentation not in SEGMENTATION_MODES:
        raise ValueError(f"segmentation: expected one of {SEGMENTATION_MODES}, got {segmentation!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if not samples:
        raise ValueError("samples: empty")
    pseudo = _pseudo_mask_fn() if segmentation == "pseudo" else None
    fitting = getattr(rec, "fit", None) is not None and rec.encoder is None  # the fitting engine: needs landmarks
    all_landmarks = _landmarks(samples, rec.image_size) if fitting else None  # landmarks.csv read once
    device = next(itertools.chain(rec.parameters(), rec.buffers()), torch.empty(0)).device
    out: dict[str, list] = {k: [] for k in VALUE_KEYS}
    from tqdm import tqdm  # noqa: PLC0415

    for start in tqdm(range(0, len(samples), batch_size), desc="evaluate", unit="batch", disable=not progress):
        chunk = samples[start:start + batch_size]
        images, gt, known = _load_batch(chunk, rec.image_size)
        images, gt, known = images.to(device), gt.to(device), known.to(device)
        if fitting:
            res = rec(images, all_landmarks[start:start + batch_size].to(device))
        else:
            res = rec(images)
        region = res.region
        if segmentation == "pseudo":
            mask = pseudo(images, res.image, region) * region
        elif segmentation == "all":
            mask = region
        elif segmentation == "skin":
            from ..losses import skin_mask  # noqa: PLC0415

            mask = skin_mask(images) * region
        else:
            mask = res.mask
        mask = mask.clamp(0.0, 1.0)
        values = {}
        scored = region * known  # Φ, where the truth is known
        values.update(segmentation_metrics(mask, gt, scored, threshold=threshold))
        values.update({f"soft_{k}": v for k, v in segmentation_metrics(mask, gt, scored, threshold=None).items()})
        values.update(reconstruction_errors(images, res.image.clamp(0.0, 1.0), gt * region))
        values["occlusion_fraction"] = res._replace(mask=mask).occlusion_fraction.double()
        for k in VALUE_KEYS:
            out[k].append(values[k].cpu().numpy())
    result = {k: np.concatenate(v) for k, v in out.items()}
    result["occluded"] = np.array([s.occluded for s in samples], dtype=bool)
    return result


def _subset_masks(occluded) -> dict[str, np.ndarray]:
    """``{subset: (N,) bool}`` for :data:`SUBSETS` from the per-image ``occluded`` flags."""
    occ = np.asarray(occluded, dtype=bool)
    return {"Unoccluded": ~occ, "Occluded": occ, "Overall": np.ones_like(occ)}


def summarise_by_subset(values: dict[str, np.ndarray]) -> dict[str, dict[str, Summary]]:
    """``{subset: {key: Summary}}`` over :data:`SUBSETS` from :func:`evaluate_reconstructor`'s output."""
    pick = _subset_masks(values["occluded"])
    return {s: {k: summarise(np.asarray(values[k])[pick[s]]) for k in VALUE_KEYS} for s in SUBSETS}


def _json_values(a: np.ndarray) -> list:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in a.tolist()]


def paired_differences(result: dict, base: str, keys: Sequence[str] = PAIRED_KEYS
                       ) -> dict[str, dict[str, dict[str, PairedDifference]]]:
    """``{method: {subset: {key: PairedDifference}}}``: every other method of an :func:`evaluate` result against the
    method ``base``, image by image (the same images, so the per-image variation between images cancels; the
    standard error says whether a difference is more than noise).

    Raises:
        KeyError: ``base`` is not a method of ``result`` (the message lists them) or a key is not a per-image value.
    """
    methods = result["methods"]
    if base not in methods:
        raise KeyError(f"paired_with: no method {base!r}; methods: {', '.join(methods)}")
    unknown = [k for k in keys if k not in VALUE_KEYS]
    if unknown:
        raise KeyError(f"keys: not per-image values: {unknown}; known: {', '.join(VALUE_KEYS)}")
    pick = _subset_masks(result["occluded"])

    def values(name: str, key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in methods[name]["per_image"][key]], dtype=np.float64)

    return {name: {s: {k: paired_difference(values(name, k)[pick[s]], values(base, k)[pick[s]],
                                            lower_is_better=k in LOWER_IS_BETTER) for k in keys} for s in SUBSETS}
            for name in methods if name != base}


def format_report(result: dict, markdown: bool = False, paired_with: str | None = None) -> str:
    """The three tables of an :func:`evaluate` result: hard segmentation, soft segmentation, reconstruction; with
    ``paired_with``, a fourth: each method minus that one, per image (mean ± standard error, and on how many
    images it is better)."""
    summaries = {name: m["summary"] for name, m in result["methods"].items()}
    soft = {name: {s: {k: v[f"soft_{k}"] for k in SEG_KEYS} for s, v in by.items()} for name, by in summaries.items()}
    n_occ = sum(result["occluded"])
    n_all = len(result["occluded"])
    counts = f"{n_all - n_occ} unoccluded, {n_occ} occluded images"
    tables = [
        format_table(summaries, SUBSETS, SEG_KEYS, markdown=markdown,
                     title=f"Segmentation inside the rendered region, M > {result['threshold']} ({counts})"),
        format_table(soft, SUBSETS, SEG_KEYS, markdown=markdown, title="Segmentation, soft M"),
        format_table(summaries, SUBSETS, ("rmse", "mae"), markdown=markdown,
                     title="Reconstruction error over visible face pixels (0-255)"),
        format_medians(result, markdown),
    ]
    if paired_with is not None:
        diffs = paired_differences(result, paired_with)
        if diffs:
            tables.append(format_paired(diffs, paired_with, markdown))
    return "\n\n".join(tables)


#: The medians table: (title, subset, per-image key, transform).
MEDIAN_COLUMNS = (("occluded ACC", "Occluded", "acc", None), ("occluded F1", "Occluded", "f1", None),
                  ("occluded RMSE", "Occluded", "rmse", None), ("unoccluded RMSE", "Unoccluded", "rmse", None),
                  ("unoccluded kept ΣM/ΣΦ", "Unoccluded", "occlusion_fraction", lambda v: 1.0 - v))


def format_medians(result: dict, markdown: bool = False) -> str:
    """Per-image medians of each method of an :func:`evaluate` result (:data:`MEDIAN_COLUMNS`: the occluded
    subset's ACC, F1 and RMSE, the unoccluded subset's RMSE and the share of Φ its mask keeps), NaN-aware."""
    pick = _subset_masks(result["occluded"])
    head = ["Method"] + [c[0] for c in MEDIAN_COLUMNS]
    rows = []
    for name, m in result["methods"].items():
        cells = [name]
        for _, subset, key, fn in MEDIAN_COLUMNS:
            v = np.array([np.nan if x is None else x for x in m["per_image"][key]], np.float64)[pick[subset]]
            v = v[np.isfinite(v)]
            med = float(np.median(fn(v) if fn else v)) if len(v) else float("nan")
            cells.append("-" if math.isnan(med) else f"{med:.2f}" if key == "rmse" else f"{med:.3f}")
        rows.append(cells)
    title = "Medians per image"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([title, fmt(head)] + [fmt(r) for r in rows])


def format_paired(diffs: dict[str, dict[str, dict[str, PairedDifference]]], base: str, markdown: bool = False) -> str:
    """The table of :func:`paired_differences` (``base``: the method they are taken against)."""
    return format_table(diffs, ("Occluded", "Overall"), PAIRED_KEYS, digits=3, markdown=markdown,
                        title=f"Paired with {base}: method − {base} per image, mean ± standard error "
                              f"(images where the method is better / images)")


