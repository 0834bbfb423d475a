"""``occrecon data synth``: write an occlusion dataset folder (synthetic renders + real faces) from a seed.

```
occrecon data synth --out DIR --synthetic N --real N --seed S [--model PATH] [--permissive-only]
                    [--occluded-fraction F] [--max-occluders K] [--appearance auto|learned|legacy]
                    [--workers W] [--overwrite]
```
``--appearance`` (``occrecon.data.synth.random_theta``): ``learned`` draws the synthetic faces' albedo from the
model's learned albedo and their light from its illumination prior (a model built by ``occrecon model albedo
build``), ``legacy`` the generic prior with a random skin tone and hand-set light ranges; ``auto`` (the default) is
``learned`` for a model that has both, else ``legacy``. The dataset's ``README.txt`` records which one was used.
Samples are written by ``W`` processes (spawned; each draws sample ``i`` from its own generator seeded with
``(seed, stream, i)``), so the folder is byte-identical for any ``W`` and any order.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

__all__ = ["generate_dataset"]

_OUTPUT_NAMES = ("images", "masks", "landmarks.csv", "meta.jsonl", "theta.npy", "theta_ids.json", "README.txt")

_WORKER: dict = {}


def _init_worker(root: str, kwargs: dict) -> None:
    import torch

    from .synth import SampleGenerator

    torch.set_num_threads(1)
    _WORKER["root"] = root
    _WORKER["gen"] = SampleGenerator(**kwargs)


def _make(task: tuple[str, int]) -> dict:
    from .dataset import write_sample_files

    kind, index = task
    gen = _WORKER["gen"]
    sample = {"synthetic": gen.synthetic, "real": gen.real, "held_out": gen.held_out}[kind](index)
    return write_sample_files(_WORKER["root"], sample)


def generate_dataset(out: str | Path, n_synthetic: int, n_real: int, seed: int = 0,
                     model_path: str | Path | None = None, permissive_only: bool = False,
                     occluded_fraction: float = 0.75, max_occluders: int = 3, workers: int = 1,
                     overwrite: bool = False, progress: bool = True, appearance: str = "auto",
                     faces: str | Path | bool | None = None, licence: str = "licensed", n_held_out: int = 0) -> dict:
    """Write ``n_synthetic`` synthetic and ``n_real`` real occlusion samples into the folder ``out``.

    Real faces: the development photos (default), or with ``faces`` (a real-face folder, ``True`` for
    ``shared/assets/faces/train``) the faces of its training identities whose licence passes ``licence``
    (:func:`occrecon.data.synth.load_face_folder`; ``licensed`` is what a shipped model may learn from), plus
    ``n_held_out`` samples of its held-out identities (every licence; ``split: held_out`` in ``meta.jsonl``, never
    trained on). The identity split is the fitting engine's evaluation split; ``README.txt`` records the faces,
    their licences and the split.

    ``appearance``: albedo and light of the synthetic faces, ``"auto"``, ``"learned"`` or ``"legacy"``
    (:func:`occrecon.data.synth.resolve_appearance`); the one used is recorded in ``README.txt``.

    Returns ``{"root": Path, "samples": int, "seconds": float, "samples_per_s": float}``. Raises ValueError on
    negative or all-zero counts, ``workers < 1``, a bad ``appearance`` (or ``"learned"`` with a model without a
    learned albedo and illumination prior), or an ``out`` that already holds a dataset (unless ``overwrite``: then
    its dataset files are replaced); FileNotFoundError for a missing model."""
    from tqdm import tqdm

    from .dataset import finish_dataset
    from .synth import SynthConfig, load_real_faces, resolve_appearance, synth_model_path

    if n_synthetic < 0 or n_real < 0:
        raise ValueError(f"n_synthetic and n_real must be >= 0, got {n_synthetic}, {n_real}")
    if n_held_out < 0:
        raise ValueError(f"n_held_out must be >= 0, got {n_held_out}")
    if n_held_out and not faces:
        raise ValueError("n_held_out: held-out samples need a face folder (faces=)")
    if n_synthetic + n_real + n_held_out == 0:
        raise ValueError("n_synthetic, n_real: nothing to generate (both are 0)")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    config = SynthConfig(occluded_fraction=occluded_fraction, max_occluders=max_occluders, appearance=appearance)
    config.validate()
    root = Path(out)
    existing = [n for n in _OUTPUT_NAMES if (root / n).exists()]
    if existing and not overwrite:
        raise ValueError(f"out: {root} already holds a dataset ({', '.join(existing)}); pass overwrite=True")
    info = {"seed": seed, "model": Path(model_path or "shared/assets/models/sfm_3448.npz").name,
            "permissive_only": permissive_only, "occluded_fraction (target)": occluded_fraction,
            "max_occluders": max_occluders}
    if n_synthetic:
        from ..morphable import load_model

        path = synth_model_path(model_path)
        used = resolve_appearance(load_model(path), appearance, path)
        info["appearance"] = f"{used} (auto)" if appearance == "auto" else used
    for n in existing:
        shutil.rmtree(root / n) if (root / n).is_dir() else (root / n).unlink()
    root.mkdir(parents=True, exist_ok=True)
    kwargs = {"seed": seed, "config": config, "model_path": model_path, "permissive_only": permissive_only}
    if faces and (n_real or n_held_out):
        from .faces import HELD_OUT, SPLIT_SEED
        from .synth import load_face_folder

        folder = None if faces is True else faces
        train_faces, held_faces = load_face_folder(folder, config.size, licence=licence)
        kwargs["real_faces"], kwargs["held_out_faces"] = train_faces, held_faces
        info.update({"real faces": f"{folder or 'shared/assets/faces/train'} (licence filter {licence!r} for "
                                   f"training; held-out identities of every licence for evaluation)",
                     "identity split": f"occrecon.data.faces.identity_split(held_out={HELD_OUT}, seed={SPLIT_SEED})",
                     "training faces": len(train_faces), "held-out faces": len(held_faces)})
        licences = sorted({f.source.split(" ", 2)[1] + " (" + f.source.split(" ", 2)[2] + ")" for f in train_faces})
        info["training face licences"] = "; ".join(licences)
    elif n_real:
        kwargs["real_faces"] = load_real_faces(config.size)
    tasks = ([("synthetic", i) for i in range(n_synthetic)] + [("real", i) for i in range(n_real)]
             + [("held_out", i) for i in range(n_held_out)])
    t0 = time.perf_counter()
    records = []
    bar = tqdm(total=len(tasks), desc="occrecon data synth", unit="sample", disable=not progress)
    try:
        if workers == 1:
            import torch

            threads = torch.get_num_threads()
            _init_worker(str(root), kwargs)
            try:
                for task in tasks:
                    records.append(_make(task))
                    bar.update()
            finally:
                _WORKER.clear()
                torch.set_num_threads(threads)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(str(root), kwargs)) as pool:
                for rec in pool.imap(_make, tasks, chunksize=4):
                    records.append(rec)
                    bar.update()
    except BaseException:
        bar.leave = False  # an error: the progress line is cleared, so the error message stands on its own line
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    finish_dataset(root, records, info)
    return {"root": root, "samples": len(tasks), "seconds": seconds, "samples_per_s": len(tasks) / seconds}


