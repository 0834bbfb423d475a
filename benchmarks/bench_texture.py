"""texture: the C++ kernel beside the pure-PyTorch reference and ``torch.nn.functional.grid_sample``, in one run.

    make bench                       # a 1024² RGB texture sampled into B = 8 images of 512², 2 threads
    OCCRECON_BENCH_SMOKE=1 ...       # tiny sizes, used by CI so the suite cannot rot

Rows (forward, and forward + backward to the texture and uv; the mip stack is built inside each call, as
nvdiffrast's ``earth.py`` does):

- ``kernel, linear-mipmap-linear``: ``occrecon.render.texture`` with ``uv_da`` (a 2× minification, so two levels
  around 1 are read and blended), the issue's row: ≥ 10× the reference and within 2× of grid_sample;
- ``reference, linear-mipmap-linear``: :func:`occrecon.ops.reference_texture.texture_reference`, the same result;
- ``kernel, linear``: bilinear without mipmaps;
- ``grid_sample, bilinear``: PyTorch's bilinear sampler on the same texture and coordinates (NCHW, no mipmaps).
"""
from __future__ import annotations

import math
import os

import pytest
import torch

import occrecon.render as dr
from occrecon.ops.reference_texture import texture_reference

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
B, OUT, TEX = (2, 32, 64) if SMOKE else (8, 512, 1024)


def _scene(grad: bool):
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(1, TEX, TEX, 3, generator=g)
    # per image a rotated, shifted grid covering the texture once: 2x minification, lod ~ 1
    y, x = torch.meshgrid(torch.arange(OUT) + 0.5, torch.arange(OUT) + 0.5, indexing="ij")
    uvs, das = [], []
    for b in range(B):
        a = 0.3 * b
        c, s = math.cos(a), math.sin(a)
        u = 0.5 + (c * (x / OUT - 0.5) - s * (y / OUT - 0.5)) + 0.01 * b
        v = 0.5 + (s * (x / OUT - 0.5) + c * (y / OUT - 0.5))
        uvs.append(torch.stack([u, v], -1))
        das.append(torch.tensor([c, -s, s, c]).expand(OUT, OUT, 4) / OUT)
    uv, da = torch.stack(uvs), torch.stack(das).contiguous()
    if grad:
        tex.requires_grad_()
        uv.requires_grad_()
    return tex, uv, da


def _grid_sample(tex, uv, da):
    img = tex.permute(0, 3, 1, 2).expand(uv.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(img, uv * 2 - 1, mode="bilinear", padding_mode="border",
                                           align_corners=False)


IMPLS = {
    "kernel, linear-mipmap-linear": lambda t, u, d: dr.texture(t, u, uv_da=d),
    "reference, linear-mipmap-linear": lambda t, u, d: texture_reference(t, u, uv_da=d),
    "kernel, linear": lambda t, u, d: dr.texture(t, u),
    "grid_sample, bilinear": _grid_sample,
}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl):
    tex, uv, da = _scene(grad=False)
    benchmark.group = f"texture forward {TEX}^2 RGB -> B={B} x {OUT}^2"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    with torch.no_grad():
        out = benchmark.pedantic(IMPLS[impl], args=(tex, uv, da), rounds=3 if SMOKE else 5, warmup_rounds=1)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, impl):
    tex, uv, da = _scene(grad=True)

    def step():
        tex.grad = uv.grad = None
        IMPLS[impl](tex, uv, da).sum().backward()

    benchmark.group = f"texture forward+backward {TEX}^2 RGB -> B={B} x {OUT}^2"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=3 if SMOKE else 5, warmup_rounds=1)
    assert tex.grad is not None and torch.isfinite(tex.grad).all()
