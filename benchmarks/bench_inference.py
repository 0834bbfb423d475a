"""Inference latency of the bundled model, per face at B = 1 and 16, beside the fitting engine it replaces, in one run.

    make bench                       # the bundled checkpoint at its crop size, B = 1, the process's threads
    OCCRECON_BENCH_SMOKE=1 ...       # a shortened fit (CI: the suite cannot rot)

Rows (per face; ``extra_info["ms_per_face"]``):

- ``encoder + render + UNet``: ``Reconstructor(images, fit=None)``: what ``occrecon reconstruct --fit none`` runs
  per face after alignment (issue 15's target: ≤ 30 ms on the 2-core machine, 2 threads);
- ``encoder + fast fit``: the same, refined by the fitting engine's fast preset from the encoder's θ (the default of
  ``occrecon reconstruct``; target ≤ 200 ms per face);
- ``fast fit from the mean face``: the fitting engine alone, the reference the encoder replaces.

The face (repeated for B = 16) is a photo of the development set aligned through the one photo → crop path (``data.prepare``) with its
dlib landmarks, so the timed work is that of a real face (the encoder's prediction decides how far the fit goes).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from occrecon import assets

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"


@pytest.fixture(scope="module")
def face():
    """``(rec, image (1, 3, S, S), landmarks (1, 68, 2))``: the bundled reconstructor and an aligned real face."""
    from occrecon.api import Reconstructor
    from occrecon.checkpoint import BUNDLED_CHECKPOINT
    from occrecon.data.synth import load_real_faces

    if assets.shared_dir(required=False) is None:
        pytest.skip("shared faces not present")
    rec = Reconstructor.from_checkpoint(BUNDLED_CHECKPOINT)
    f = load_real_faces(size=rec.image_size[0])[0]
    image = torch.from_numpy(np.ascontiguousarray(f.image)).permute(2, 0, 1)[None].float() / 255.0
    return rec, image, torch.from_numpy(f.landmarks)[None]


def _fit(preset: str):
    from occrecon.fit import fit_preset

    cfg = fit_preset(preset)
    return cfg.replace(rounds=1, steps=2) if SMOKE else cfg


@pytest.mark.parametrize("b", [1, 16])
@pytest.mark.parametrize("row", ["encoder + render + UNet", "encoder + fast fit", "fast fit from the mean face"])
def test_bundled_model(benchmark, face, row, b):
    from occrecon.fit import fit_image

    rec, image, lms = face
    image, lms = image.expand(b, -1, -1, -1).contiguous(), lms.expand(b, -1, -1).contiguous()
    benchmark.group = f"bundled model at {rec.image_size[0]}^2, per batch of {b}"
    benchmark.extra_info.update(threads=torch.get_num_threads(), size=rec.image_size[0], batch=b)
    if SMOKE and b > 1:
        pytest.skip("smoke: B = 1 only")
    rounds = 3 if SMOKE else (20 if b == 1 else 5)
    if row == "encoder + render + UNet":
        out = benchmark.pedantic(rec, args=(image,), kwargs={"fit": None}, rounds=rounds * 5, warmup_rounds=3)
    elif row == "encoder + fast fit":
        out = benchmark.pedantic(rec, args=(image, lms), kwargs={"fit": _fit("fast")}, rounds=rounds,
                                 warmup_rounds=1)
    else:
        out = benchmark.pedantic(fit_image, args=(rec.renderer, image, lms), kwargs={"config": _fit("fast")},
                                 rounds=rounds, warmup_rounds=1)
    assert torch.isfinite(out.theta).all()
    if benchmark.stats is not None:  # None with --benchmark-disable
        benchmark.extra_info["ms_per_face"] = benchmark.stats.stats.median * 1e3 / b
