"""FaceRenderer (θ -> morphable model -> pose -> SH shading -> rasterize -> interpolate), forward and forward+backward.

    make bench                        # ICT face (18k triangles, front-face region), B = 32, 224 x 224
    OCCRECON_BENCH_SMOKE=1 ...        # SFM model, B = 2, 56 x 56 (CI)

The time per image is in extra_info["ms_per_image"].
"""
from __future__ import annotations

import os

import pytest
import torch

import occrecon.render as dr
from occrecon import assets

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"


@pytest.fixture(scope="module")
def renderer():
    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared face models not present")
    from occrecon.morphable import loaders

    name = "sfm_3448.npz" if SMOKE else "ict_face.npz"
    model = loaders.load_model(shared / "assets" / "models" / name)
    size = 56 if SMOKE else 224
    return dr.FaceRenderer(model, camera=dr.PerspectiveCamera(focal=1015.0 * size / 224, image_size=(size, size)))


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_face_renderer(benchmark, renderer, backward):
    b = 2 if SMOKE else 32
    theta = (torch.randn(b, renderer.layout.size, generator=torch.Generator().manual_seed(0)) * 0.05)
    theta.requires_grad_(backward)
    benchmark.group = f"FaceRenderer {renderer.model.name} B={b} {renderer.camera.image_size[0]}^2"

    def run():
        out = renderer(theta)
        if backward:
            theta.grad = None
            (out.image.sum() + out.landmarks.nan_to_num().sum()).backward()
        return out

    with torch.set_grad_enabled(backward):
        benchmark(run)
    if benchmark.stats is not None:  # None with --benchmark-disable
        benchmark.extra_info["ms_per_image"] = benchmark.stats.stats.median * 1e3 / b
