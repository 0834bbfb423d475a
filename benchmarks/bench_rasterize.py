"""Rasterizer: C++ kernels beside the pure-PyTorch reference, in one run.

    make bench                        # ICT face (18k tris) and an 80k-triangle sphere at 224 x 224, B in {1, 8, 32}
    OCCRECON_BENCH_SMOKE=1 ...        # tiny sizes (CI)

The reference (brute force pixels x triangles) takes seconds per image: it runs once, at B = 1.
"""
from __future__ import annotations

import os

import pytest
import torch

import occrecon.render as dr
from occrecon.ops import reference

SMOKE = os.environ.get("OCCRECON_BENCH_SMOKE") == "1"
RES = (32, 32) if SMOKE else (224, 224)
BATCHES = [1, 2] if SMOKE else [1, 8, 32]
MESHES = {"ict_face": ("ict_face", 0), "sphere80k": ("sphere", 2_000 if SMOKE else 80_000)}


@pytest.fixture
def batch(mesh_scenes):
    def make(mesh: str, b: int):
        kind, n = MESHES[mesh]
        pos, tri = mesh_scenes[kind](n)
        return pos[None].expand(b, -1, -1).contiguous(), tri
    return make


def _run(pos, tri, colour, backward: bool, raster=dr.rasterize, interp=dr.interpolate):
    if raster is dr.rasterize:
        rast, _ = raster(None, pos, tri, RES)
    else:
        rast, _ = raster(pos, tri, RES)
    out, _ = interp(colour, rast, tri)
    if backward:
        out.sum().backward()
    return out


@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("mesh", list(MESHES))
def test_rasterize(benchmark, batch, mesh, b):
    pos, tri = batch(mesh, b)
    benchmark.group = f"rasterize {mesh} {RES[0]}x{RES[1]}"
    benchmark.extra_info.update(images=b, triangles=int(tri.shape[0]))
    rast, _ = benchmark(dr.rasterize, None, pos, tri, RES)
    assert (rast[..., 3] > 0).any()


@pytest.mark.parametrize("b", BATCHES)
@pytest.mark.parametrize("mesh", list(MESHES))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_rasterize_interpolate(benchmark, batch, mesh, b, backward):
    pos, tri = batch(mesh, b)
    colour = torch.rand(1, pos.shape[1], 3)
    if backward:
        pos.requires_grad_(True)
        colour.requires_grad_(True)
    benchmark.group = f"rasterize+interpolate {'fwd+bwd' if backward else 'fwd'} {mesh} {RES[0]}x{RES[1]}"
    benchmark.extra_info.update(images=b, triangles=int(tri.shape[0]), impl="kernel")
    with torch.set_grad_enabled(backward):
        benchmark(_run, pos, tri, colour, backward)


@pytest.mark.parametrize("mesh", list(MESHES))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_reference(benchmark, batch, mesh, backward):
    pos, tri = batch(mesh, 1)
    colour = torch.rand(1, pos.shape[1], 3)
    if backward:
        pos.requires_grad_(True)
        colour.requires_grad_(True)
    benchmark.group = f"rasterize+interpolate {'fwd+bwd' if backward else 'fwd'} {mesh} {RES[0]}x{RES[1]}"
    benchmark.extra_info.update(images=1, triangles=int(tri.shape[0]), impl="reference")
    with torch.set_grad_enabled(backward):
        benchmark.pedantic(_run, args=(pos, tri, colour, backward, reference.rasterize, reference.interpolate),
                           rounds=1, iterations=1)


# ------------------------------------------------------------------------------------------------ scaling
SCALE_RES = [16, 32] if SMOKE else [112, 224, 512, 1024]
SCALE_TRIS = [500, 2_000] if SMOKE else [1_000, 10_000, 80_000, 300_000]


@pytest.mark.parametrize("size", SCALE_RES)
def test_scaling_resolution(benchmark, mesh_scenes, size):
    """Forward (rasterize + interpolate), one image of the 80k sphere, at growing resolution."""
    pos, tri = mesh_scenes["sphere"](2_000 if SMOKE else 80_000)
    colour = torch.rand(1, pos.shape[0], 3)
    benchmark.group = "scaling: resolution (sphere 80k, B=1, fwd)"
    benchmark.extra_info.update(resolution=size, triangles=int(tri.shape[0]))

    def fwd():
        rast, _ = dr.rasterize(None, pos[None], tri, (size, size))
        return dr.interpolate(colour, rast, tri)[0]

    benchmark(fwd)


@pytest.mark.parametrize("triangles", SCALE_TRIS)
def test_scaling_triangles(benchmark, mesh_scenes, triangles):
    """Forward (rasterize + interpolate), one 224 x 224 image of a sphere with a growing triangle count."""
    pos, tri = mesh_scenes["sphere"](triangles)
    colour = torch.rand(1, pos.shape[0], 3)
    benchmark.group = f"scaling: triangles ({RES[0]}x{RES[1]}, B=1, fwd)"
    benchmark.extra_info.update(triangles=int(tri.shape[0]))

    def fwd():
        rast, _ = dr.rasterize(None, pos[None], tri, RES)
        return dr.interpolate(colour, rast, tri)[0]

    benchmark(fwd)


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_antialias_on_sphere(benchmark, batch, backward):
    """antialias after rasterize + interpolate (80k sphere, B = 8): compare with the rasterize+interpolate groups."""
    pos, tri = batch("sphere80k", 2 if SMOKE else 8)
    colour = torch.rand(1, pos.shape[1], 3)
    topo = dr.antialias_construct_topology_hash(tri)
    if backward:
        pos.requires_grad_(True)
        colour.requires_grad_(True)
    benchmark.group = f"antialias {'fwd+bwd' if backward else 'fwd'} sphere80k {RES[0]}x{RES[1]}"
    benchmark.extra_info.update(images=pos.shape[0])

    def run():
        rast, _ = dr.rasterize(None, pos, tri, RES)
        out, _ = dr.interpolate(colour, rast, tri)
        out = dr.antialias(out, rast, pos, tri, topology_hash=topo)
        if backward:
            out.sum().backward()
        return out

    with torch.set_grad_enabled(backward):
        benchmark(run)
