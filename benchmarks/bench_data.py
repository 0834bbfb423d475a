"""Training-data loading: the augmentation warp (one ``grid_sample`` for image and mask) beside the numpy bilinear
warp it replaced, and ``FaceDataset`` items with and without the in-memory cache, in one run.

    make bench                        # 224² samples (the dataset format), one item per round
    OCCRECON_BENCH_SMOKE=1 ...        # 32² (CI)

Compare medians within a group. The augmentation group is per sample; a CPU training step at batch 12 loads 12.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from occrecon.data.align import transform_points, warp_affine
from occrecon.data.dataset import FaceDataset, augment, image_relpath, mask_relpath, write_landmark_table
from occrecon.data.io import write_mask
from occrecon.data.ibug import IBUG_FLIP
from occrecon.data.warp import similarity_matrix

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
S = 32 if SMOKE else 224


def _numpy_augment(image, mask, landmarks, m, flip):
    """The numpy path augmentation used before (warp_affine per array, with its antialiasing prefilter)."""
    img = warp_affine(image, m, (S, S), padding="zeros")
    msk = (warp_affine(mask, m, (S, S), padding="zeros") >= 0.5).astype(np.float32)
    lms = transform_points(np.asarray(landmarks, np.float64), m).astype(np.float32)
    return img, msk, (lms[IBUG_FLIP] if flip else lms)


@pytest.mark.parametrize("impl", ["grid_sample", "numpy"])
def test_augment(benchmark, impl):
    rng = np.random.default_rng(0)
    image = rng.random((S, S, 3)).astype(np.float32)
    mask = (rng.random((S, S)) > 0.3).astype(np.float32)
    lms = rng.uniform(0.2 * S, 0.8 * S, (68, 2)).astype(np.float32)
    m = similarity_matrix(0.95, math.radians(6), (S / 2, S / 2), (4.0, -3.0), flip=True, width=S)  # shrinks 5 %
    fn = augment if impl == "grid_sample" else _numpy_augment
    benchmark.group = f"augmentation warp, one {S}x{S} sample (image + mask + landmarks)"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    img, msk, _ = benchmark(fn, image, mask, lms, m, True)
    assert img.shape == (S, S, 3) and msk.shape == (S, S)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A 16-sample dataset folder in the FaceDataset format (random PNGs, masks, landmarks)."""
    root = tmp_path_factory.mktemp("bench_data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    table, meta = {}, []
    for i in range(16):
        sid = f"syn_{i:06d}"
        Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(root / image_relpath(sid))
        write_mask(root / mask_relpath(sid), rng.random((S, S)) > 0.3)
        table[image_relpath(sid)] = rng.uniform(0.2 * S, 0.8 * S, (68, 2))
        meta.append(json.dumps({"id": sid, "kind": "synthetic", "identity": sid, "occluded": False}))
    write_landmark_table(root / "landmarks.csv", table)
    (root / "meta.jsonl").write_text("\n".join(meta) + "\n")
    return root


@pytest.mark.parametrize("cache", [False, True], ids=["read", "cached"])
def test_dataset_item(benchmark, dataset_dir, cache):
    ds = FaceDataset(dataset_dir, augment=True, cache=cache)
    for i in range(len(ds)):  # warm: the cached variant then serves from memory
        ds[i]
    counter = iter(range(10 ** 9))
    benchmark.group = f"FaceDataset item with augmentation, {S}x{S}"
    benchmark.extra_info.update(cache=cache)
    item = benchmark(lambda: ds[next(counter) % len(ds)])
    assert item["image"].shape == (3, S, S)
