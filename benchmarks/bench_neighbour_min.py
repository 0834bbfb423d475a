"""Neighbourhood-min: the C++ kernel beside the pure-PyTorch reference, in one run.

    make bench                       # full size: B = 8, 224 x 224, k = 3 and 5
    OCCRECON_BENCH_SMOKE=1 ...       # tiny size, used by CI so the suite cannot rot

Groups pair kernel and reference for the same (k, pass); compare their medians.
"""
from __future__ import annotations

import os

import pytest
import torch

import occrecon  # noqa: F401
from occrecon import ops
from occrecon.ops import reference

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
B, H, W = (1, 32, 32) if SMOKE else (8, 224, 224)
IMPLS = {"kernel": ops.neighbour_min, "reference": reference.neighbour_min}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(B, 3, H, W, generator=g)
    r = torch.rand(B, 3, H, W, generator=g)
    region = torch.rand(B, 1, H, W, generator=g) > 0.2
    return t, r, region


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k", [3, 5])
def test_forward(benchmark, images, impl, k):
    t, r, region = images
    fn = IMPLS[impl]
    benchmark.group = f"neighbour_min forward k={k} B={B} {H}x{W}"
    benchmark.extra_info.update(impl=impl, k=k, threads=torch.get_num_threads())
    with torch.no_grad():
        d2, _ = benchmark(fn, t, r, k, region)
    assert d2.shape == (B, H, W)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("k", [3, 5])
def test_forward_backward(benchmark, images, impl, k):
    t, r, region = images
    fn = IMPLS[impl]
    a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
    benchmark.group = f"neighbour_min forward+backward k={k} B={B} {H}x{W}"
    benchmark.extra_info.update(impl=impl, k=k, threads=torch.get_num_threads())

    def step():
        a.grad = b.grad = None
        d2, _ = fn(a, b, k, region)
        d2.sum().backward()

    benchmark(step)
    assert a.grad is not None and b.grad is not None
