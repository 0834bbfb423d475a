"""The fitting engine beside encoder-only inference, in one run (per-face times in ``extra_info["ms_per_face"]``).

    make bench                       # ICT narrow face; landmark fit B = 1, 64; image fit 128² and 224², B = 1, 16
    OCCRECON_BENCH_SMOKE=1 ...       # B = 1 and 2, 64², a short schedule (CI: the suite cannot rot)

Faces are rendered from random θ (so the landmarks are exact and no detector runs); the image fit starts from the
mean face, as ``occrecon reconstruct --model`` does. Targets on the 2-core machine: landmark fit ≤ 2 ms per face
at B = 64; fast image fit ≤ 150 ms and quality ≤ 500 ms per face at 128², B = 16.
"""
from __future__ import annotations

import os

import pytest
import torch

from occrecon import assets

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
LM_BATCHES = (1, 2) if SMOKE else (1, 64)
IMG_BATCHES = (1, 2) if SMOKE else (1, 16)
SIZES = (64,) if SMOKE else (128, 224)


@pytest.fixture(scope="module")
def model():
    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared face models not present")
    from occrecon.morphable import load_model

    return load_model(shared / "assets" / "models" / "ict_narrowface.npz")


def _faces(model, b: int, size: int):
    from occrecon.api import default_camera
    from occrecon.render import FaceRenderer

    lay = model.layout
    g = torch.Generator().manual_seed(b * 1000 + size)
    th = torch.zeros(b, lay.size)
    th[:, lay.slice("id")] = torch.randn(b, model.n_id, generator=g) * 0.5
    th[:, lay.slice("exp")] = (torch.rand(b, model.n_exp, generator=g) < 0.2) * torch.rand(b, model.n_exp, generator=g)
    th[:, lay.slice("angle")] = (torch.rand(b, 3, generator=g) * 2 - 1) * torch.tensor([0.2, 0.4, 0.1])
    r = FaceRenderer(model, camera=default_camera(size))
    with torch.no_grad():
        out = r(th, torch.rand(b, 3, size, size, generator=g) * 0.5 + 0.25)
    return r, out.image.clamp(0, 1), out.landmarks


def _per_face(benchmark, b: int) -> None:
    if benchmark.stats is not None:  # None with --benchmark-disable
        benchmark.extra_info["ms_per_face"] = benchmark.stats.stats.median * 1e3 / b


@pytest.mark.parametrize("b", LM_BATCHES)
def test_landmark_fit(benchmark, model, b):
    from occrecon.fit import LandmarkFitConfig, fit_landmarks

    r, _, lms = _faces(model, b, 128)
    cfg = LandmarkFitConfig(iterations=2) if SMOKE else LandmarkFitConfig()
    benchmark.group = f"landmark fit, per batch of {b}"
    benchmark.extra_info.update(batch=b, iterations=cfg.iterations, threads=torch.get_num_threads())
    res = benchmark(fit_landmarks, model, r.camera, lms, config=cfg)
    assert not res.failed.any()
    _per_face(benchmark, b)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("b", IMG_BATCHES)
@pytest.mark.parametrize("preset", ["fast", "standard", "quality", "encoder only"])
def test_image_fit(benchmark, model, preset, b, size):
    from occrecon.fit import fit_image, fit_preset

    r, images, lms = _faces(model, b, size)
    benchmark.group = f"image fit {size}^2, per batch of {b}"
    benchmark.extra_info.update(batch=b, size=size, preset=preset, threads=torch.get_num_threads())
    if preset == "encoder only":  # the bundled network's forward pass (compact encoder + UNet + render)
        from occrecon.api import Reconstructor
        from occrecon.demo import BUNDLED_CHECKPOINT

        rec = Reconstructor.from_checkpoint(BUNDLED_CHECKPOINT)
        if rec.image_size[0] != size:
            rec = Reconstructor(rec.model, rec.encoder, rec.unet, image_size=size)
        benchmark.pedantic(rec, args=(images,), rounds=3 if SMOKE else 5, warmup_rounds=1)
    else:
        cfg = fit_preset(preset).replace(image_size=size)
        if SMOKE:
            cfg = cfg.replace(rounds=1, steps=2)
        res = benchmark.pedantic(fit_image, args=(r, images, lms), kwargs={"config": cfg}, rounds=1 if SMOKE else 3,
                                 warmup_rounds=0 if SMOKE else 1)
        assert not res.diverged.any()
    _per_face(benchmark, b)
