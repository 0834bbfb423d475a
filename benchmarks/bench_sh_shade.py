"""SH shading: the C++ kernel beside the pure-PyTorch autograd reference, in one run.

    make bench                       # full size: B = 32, 35k vertices and 224 x 224 pixels, float32
    OCCRECON_BENCH_SMOKE=1 ...       # tiny sizes, used by CI so the suite cannot rot

Groups pair kernel and reference for the same layout; compare their medians. ``extra_info["alloc_bytes"]`` is
the total memory allocated by one forward + backward step (torch.profiler, all ops; inputs excluded), a
stand-in for peak memory on the CPU; on CUDA ``extra_info["peak_bytes"]`` is ``torch.cuda.max_memory_allocated``
above the inputs.
"""
from __future__ import annotations

import os

import pytest
import torch

import occrecon  # noqa: F401
from occrecon import ops
from occrecon.ops import reference

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
B = 2 if SMOKE else 32
SHAPES = {"vertex": (100,) if SMOKE else (35_000,), "pixel": (16, 16) if SMOKE else (224, 224)}
IMPLS = {"kernel": ops.sh_shade, "reference": reference.sh_shade}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(inner):
    g = torch.Generator().manual_seed(0)
    n = torch.randn(B, *inner, 3, generator=g)
    n = n / n.norm(dim=-1, keepdim=True)
    alb = torch.rand(B, *inner, 3, generator=g)
    gamma = torch.randn(B, 27, generator=g) * 0.3  # Deep3D's flat layout
    return [t.to(DEVICE).requires_grad_() for t in (n, alb, gamma)]


def _alloc_bytes(step) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    return int(sum(max(e.self_cpu_memory_usage, 0) for e in prof.events()))


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("layout", list(SHAPES))
def test_forward_backward(benchmark, impl, layout):
    inner = SHAPES[layout]
    n, alb, gamma = _inputs(inner)
    fn = IMPLS[impl]
    grad = torch.ones(B, *inner, 3, device=DEVICE)

    def step():
        n.grad = alb.grad = gamma.grad = None
        fn(n, alb, gamma).backward(grad)
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"sh_shade forward+backward {layout} B={B} {'x'.join(map(str, inner))} {DEVICE}"
    info = dict(impl=impl, layout=layout, threads=torch.get_num_threads())
    if DEVICE == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        info["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    else:
        info["alloc_bytes"] = _alloc_bytes(step)
    benchmark.extra_info.update(info)
    benchmark(step)
    assert n.grad is not None and alb.grad is not None and gamma.grad is not None


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl):
    n, alb, gamma = _inputs(SHAPES["pixel"])
    benchmark.group = f"sh_shade forward pixel B={B} {DEVICE}"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    with torch.no_grad():
        out = benchmark(IMPLS[impl], n, alb, gamma)
    assert out.shape == n.shape
