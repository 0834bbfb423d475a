"""The fitting engine over a dataset folder (``occrecon data fit DATASET``): the unsupervised teacher of training.

Every sample is fitted on the image the encoder sees — the occluded one, never a clean copy, so training stays
weakly supervised as in the paper — with its 68 landmarks (:func:`occrecon.fit.fit_image`), and the result is
stored beside the dataset, in ``DATASET/fit/``, the one home of this format (:data:`FIT_FORMAT`):

- ``info.json``: ``format``, ``model`` (the face model file), ``albedo_source``, ``preset``, ``batch_size``,
  ``layout`` (``[[name, size], ...]``), ``ids`` (the samples in fitting order), ``complete``;
- ``theta.npy`` ``(N, P)`` float32 θ* in the model's layout (the fit's framing is the dataset's: a θ* drives the
  renderer at any crop size of the standard camera); ``loss.npy`` ``(N,)`` the final M-step objective;
  ``converged.npy`` / ``diverged.npy`` ``(N,)`` bool;
- ``masks/<id>_fit_mask.png``: the fit's E-step mask M at the dataset's resolution (8-bit, 255 = face).

Fitting goes in chunks of ``batch_size`` samples in a fixed order, each written atomically to ``chunks/`` as soon
as it is done: a killed run resumes where it stopped and gives the same bytes as an uninterrupted one (the fit is
deterministic). :func:`read_fit` reads the result.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import FIT_FORMAT, FitDatasetError, read_fit  # the format's reader lives with the dataset
__all__ = ["FIT_FORMAT", "fit_dataset", "read_fit", "FitDatasetError"]  # noqa: F822

def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_npz(path: Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)


def _save_npy(path, array) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def fit_dataset(root: str | Path, model=None, *, preset: str = "standard", batch_size: int = 16,
                ids: list[str] | None = None, held_out: bool = False, overwrite: bool = False,
                progress: bool = False, log=None) -> dict:
    """Fit every sample of the dataset folder ``root`` (or the samples ``ids``) and write ``root/fit/``.

    Args:
        root: a dataset folder (``occrecon data synth``).
        model: the face model to fit (a ``MorphableModel``, a file, or None / ``"default"``: the shipped model); θ*
            is in its layout, so it must be the model the encoder is trained for.
        preset: the fit preset (``"standard"``, the default, ``"fast"`` or ``"quality"``).
        batch_size: samples per fit (also the chunk size of the resumable output).
        ids: samples to fit, in this order (default: every sample, in ``meta.jsonl`` order, but those written as
            held out).
        held_out: with ``ids`` None, also fit the samples whose record says ``"split": "held_out"`` (never trained
            on, so by default they are not fitted).
        overwrite: discard a ``fit/`` folder made with other settings instead of refusing it.
        progress: a tqdm bar over the chunks.
        log: called with one line per chunk (None: quiet).

    Returns:
        ``{"root", "samples", "fitted" (this call), "resumed" (chunks found done), "seconds"}``.

    Raises:
        FitDatasetError: an existing ``fit/`` made with other settings (without ``overwrite``).
        ValueError / FileNotFoundError: as the dataset reader, a bad ``batch_size`` or ``preset``.
    """
    import shutil
    import time

    from PIL import Image
    from tqdm import tqdm

    from ..data.dataset import FaceDataset
    from ..morphable import resolve_model
    from ..render import FaceRenderer
    from ..render.camera import default_camera
    from .config import fit_preset
    from .image import fit_image

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    cfg = fit_preset(preset)
    root = Path(root)
    model_name = "default" if model is None or (isinstance(model, str) and model == "default") else \
        (str(Path(model).resolve()) if isinstance(model, (str, Path)) else getattr(model, "name", "model"))
    model = resolve_model(model)
    if ids is None and not held_out:
        from ..data.dataset import read_meta

        ids = [r["id"] for r in read_meta(root) if r.get("split") != "held_out"]
        if not ids:
            raise ValueError(f"{root}: every sample is held out; pass held_out=True (--held-out) to fit them")
    data = FaceDataset(root, ids=ids)
    order = [r["id"] for r in data.records]
    out = root / "fit"
    settings = {"format": FIT_FORMAT, "model": model_name, "albedo_source": model.albedo_source, "preset": preset,
                "batch_size": batch_size, "layout": [[n, int(k)] for n, k in model.layout.entries], "ids": order}
    info_path = out / "info.json"
    if info_path.is_file():
        try:
            old = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise FitDatasetError(f"{info_path}: damaged ({e}); pass overwrite=True to fit again") from None
        if {k: v for k, v in old.items() if k != "complete"} != settings:
            if not overwrite:
                diff = sorted(k for k in settings if old.get(k) != settings[k])
                raise FitDatasetError(f"{out}: made with other settings ({', '.join(diff)} differ); pass overwrite=True "
                                      f"(--overwrite) to fit again")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(info_path, lambda tmp: Path(tmp).write_text(json.dumps({**settings, "complete": False}) + "\n"))
    size = int(data[0]["image"].shape[-1])
    renderer = FaceRenderer(model, camera=default_camera(size))
    chunks = list(range(0, len(order), batch_size))
    t0, fitted, resumed = time.perf_counter(), 0, 0
    for start in tqdm(chunks, desc="data fit", unit="chunk", disable=not progress):
        chunk_path = out / "chunks" / f"{start:06d}.npz"
        if chunk_path.is_file():
            resumed += 1
            continue
        items = [data[i] for i in range(start, min(start + batch_size, len(order)))]
        images = torch.stack([it["image"] for it in items])
        landmarks = torch.stack([it["landmarks"] for it in items])
        res = fit_image(renderer, images, landmarks, config=cfg)
        masks = torch.nn.functional.interpolate(res.mask.float(), size=(size, size), mode="bilinear",
                                                align_corners=False)
        for j, m in enumerate(masks):
            sid = order[start + j]
            png = (m[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            _atomic_write(out / "masks" / f"{sid}_fit_mask.png", lambda tmp, a=png: Image.fromarray(a).save(tmp, format="PNG"))
        _save_npz(chunk_path, theta=res.theta.float().numpy(), loss=res.loss[:, -1].float().numpy(),
                  converged=res.converged.numpy(), diverged=res.diverged.numpy(),
                  ids=np.array(order[start:start + len(items)]))
        fitted += len(items)
        if log is not None:
            log(f"  fitted {start + len(items)}/{len(order)} samples")
    parts = [np.load(out / "chunks" / f"{s:06d}.npz") for s in chunks]
    got = [str(i) for p in parts for i in p["ids"]]
    if got != order:
        raise FitDatasetError(f"{out / 'chunks'}: the chunks do not list the samples in order; pass overwrite=True")
    for key in ("theta", "loss", "converged", "diverged"):
        arr = np.concatenate([p[key] for p in parts])
        _atomic_write(out / f"{key}.npy", lambda tmp, a=arr: _save_npy(tmp, a))
    _atomic_write(info_path, lambda tmp: Path(tmp).write_text(json.dumps({**settings, "complete": True}) + "\n"))
    return {"root": out, "samples": len(order), "fitted": fitted, "resumed": resumed,
            "seconds": time.perf_counter() - t0}
