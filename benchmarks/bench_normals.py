"""Vertex normals: the C++ kernel beside the pure-PyTorch reference it replaced (``index_add``), in one run.

    make bench                       # full size: the ICT narrow face (6,706 vertices, 13,120 triangles), B = 32
    OCCRECON_BENCH_SMOKE=1 ...       # tiny sizes, used by CI so the suite cannot rot
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from occrecon import assets, ops
from occrecon.ops import reference

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
B = 2 if SMOKE else 32
IMPLS = {"kernel": ops.vertex_normals, "reference": reference.vertex_normals}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _mesh() -> tuple[torch.Tensor, torch.Tensor]:
    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets (ICT face model) not present")
    d = np.load(shared / "assets" / "models" / "ict_narrowface.npz")
    v, t = torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["tris"].astype(np.int32))
    if SMOKE:
        keep = (t < 200).all(1)
        v, t = v[:200], t[keep]
    g = torch.Generator().manual_seed(0)
    verts = v[None] + 0.05 * torch.randn(B, *v.shape, generator=g)
    return verts.to(DEVICE), t.to(DEVICE)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, impl):
    verts, tri = _mesh()
    x = verts.clone().requires_grad_()
    grad = torch.ones_like(verts)
    fn = IMPLS[impl]

    def step():
        x.grad = None
        fn(x, tri).backward(grad)
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"vertex_normals forward+backward B={B} V={verts.shape[1]} F={tri.shape[0]} {DEVICE}"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    benchmark(step)
    assert x.grad is not None


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl):
    verts, tri = _mesh()
    benchmark.group = f"vertex_normals forward B={B} V={verts.shape[1]} {DEVICE}"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    with torch.no_grad():
        out = benchmark(IMPLS[impl], verts, tri)
    assert out.shape == verts.shape
