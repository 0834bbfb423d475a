"""antialias: the C++ kernel beside the pure-PyTorch reference, in one run.

    make bench                       # full size: B = 8, 224 x 224, 3 channels
    OCCRECON_BENCH_SMOKE=1 ...       # tiny size, used by CI so the suite cannot rot

Scenes come from the golden nvdiffrast-convention data (../shared/golden), their rast upscaled to the benchmark
size by nearest neighbour (pos is in clip space, so it fits any resolution): "icosphere" (1280 faces, closed:
silhouettes against the background only) and "soup" (200 unconnected, intersecting triangles: every id change
is a silhouette or an occlusion edge). The batch repeats the scene's images. The topology is built once, outside
the timed region, as for a mesh of fixed topology; its construction is timed on its own. Groups pair kernel
and reference; compare their medians.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon  # noqa: F401
from occrecon import assets
from occrecon.ops import reference_antialias as reference
from occrecon.render.antialias import antialias, antialias_construct_topology_hash

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
B, H, W = (1, 32, 32) if SMOKE else (8, 224, 224)
SCENES = {"icosphere": "g3_icosphere", "soup": "g2_soup_s0"}
IMPLS = {"kernel": antialias, "reference": reference.antialias}
_shared = assets.shared_dir(required=False)
GOLDEN = Path(_shared) / "golden" if _shared is not None else Path("/nonexistent")
pytestmark = pytest.mark.skipif(not (GOLDEN / "g3_icosphere.npz").exists(), reason="golden scenes not present")


def _scene(name):
    d = np.load(GOLDEN / f"{SCENES[name]}.npz")
    rast, pos = torch.from_numpy(d["rast"]), torch.from_numpy(d["pos"])
    tri = torch.from_numpy(d["tri"])
    n, h, w = rast.shape[:3]
    rows = ((torch.arange(H) + 0.5) * h / H).long()  # nearest source pixel centre
    cols = ((torch.arange(W) + 0.5) * w / W).long()
    pick = torch.arange(B) % n
    rast = rast[pick][:, rows][:, :, cols].contiguous()
    pos = pos[pick].contiguous()
    color = torch.rand(B, H, W, 3, generator=torch.Generator().manual_seed(0))
    return color, rast, pos, tri, antialias_construct_topology_hash(tri)


@pytest.fixture(scope="module", params=list(SCENES))
def scene(request):
    return request.param, _scene(request.param)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, scene, impl):
    name, (color, rast, pos, tri, topo) = scene
    fn = IMPLS[impl]
    benchmark.group = f"antialias forward {name} B={B} {H}x{W}"
    benchmark.extra_info.update(impl=impl, scene=name, threads=torch.get_num_threads())
    with torch.no_grad():
        out = benchmark(fn, color, rast, pos, tri, topo)
    assert out.shape == color.shape and (out != color).any()


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, scene, impl):
    name, (color, rast, pos, tri, topo) = scene
    fn = IMPLS[impl]
    c, p = color.clone().requires_grad_(), pos.clone().requires_grad_()
    weight = torch.rand_like(color)
    benchmark.group = f"antialias forward+backward {name} B={B} {H}x{W}"
    benchmark.extra_info.update(impl=impl, scene=name, threads=torch.get_num_threads())

    def step():
        c.grad = p.grad = None
        (fn(c, rast, p, tri, topo) * weight).sum().backward()

    benchmark(step)
    assert c.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_topology(benchmark, impl):
    tri = torch.from_numpy(np.load(GOLDEN / "g3_icosphere.npz")["tri"])
    fn = antialias_construct_topology_hash if impl == "kernel" else reference.topology
    benchmark.group = f"antialias topology icosphere F={tri.shape[0]}"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    topo = benchmark(fn, tri)
    assert (topo >= 0).all()
