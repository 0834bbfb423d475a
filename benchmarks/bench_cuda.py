"""CUDA kernels beside the references they replace and beside nvdiffrast (the peer), in one run.

    pytest benchmarks/bench_cuda.py --benchmark-columns=median,iqr,rounds --benchmark-sort=name

Skipped without a CUDA device. Every timed call ends with ``torch.cuda.synchronize()``, so the medians are wall
times of finished GPU work. nvdiffrast is measured when ``import nvdiffrast.torch`` works (install it yourself:
it is a peer, not a dependency); the pure-PyTorch references run on the GPU too.
"""
from __future__ import annotations

import pytest
import torch

import occrecon.render as dr
from occrecon import assets, ops
from occrecon.ops import reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = "cuda"
RES = (224, 224)

try:  # the peer, optional
    import nvdiffrast.torch as nvdr
except Exception:  # noqa: BLE001 - any import failure means "no peer here"
    nvdr = None


MESHES = {"ict_face": ("ict_face", 0), "sphere80k": ("sphere", 80_000)}


def _timed(fn):
    def run(*args):
        out = fn(*args)
        torch.cuda.synchronize()
        return out
    return run


@pytest.fixture(scope="module")
def nv_ctx():
    return nvdr.RasterizeCudaContext() if nvdr is not None else None


@pytest.fixture
def scene(mesh_scenes):
    def make(mesh, b):
        kind, n = MESHES[mesh]
        pos, tri = mesh_scenes[kind](n)
        return pos[None].expand(b, -1, -1).contiguous().to(CUDA), tri.to(CUDA)
    return make


def _raster_step(impl, ctx, pos, tri, colour, backward, res=RES):
    if impl == "occrecon":
        rast, _ = dr.rasterize(None, pos, tri, res, grad_db=False)
        out, _ = dr.interpolate(colour, rast, tri)
    else:
        rast, _ = nvdr.rasterize(ctx, pos, tri, res, grad_db=False)
        out, _ = nvdr.interpolate(colour, rast, tri)
    if backward:
        out.sum().backward()
    return out


IMPLS = ["occrecon", "nvdiffrast"]


def _need(impl):
    if impl == "nvdiffrast" and nvdr is None:
        pytest.skip("nvdiffrast not importable")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("b", [1, 8, 32])
@pytest.mark.parametrize("mesh", list(MESHES))
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_rasterize_interpolate(benchmark, nv_ctx, scene, impl, b, mesh, backward):
    _need(impl)
    pos, tri = scene(mesh, b)
    colour = torch.rand(1, pos.shape[1], 3, device=CUDA)
    if backward:
        pos.requires_grad_(True)
        colour.requires_grad_(True)
    benchmark.group = f"cuda rasterize+interpolate {'fwd+bwd' if backward else 'fwd'} {mesh} B={b} 224^2"
    benchmark.extra_info.update(impl=impl, images=b, triangles=int(tri.shape[0]))
    with torch.set_grad_enabled(backward):
        benchmark(_timed(_raster_step), impl, nv_ctx, pos, tri, colour, backward)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("res", [512, 1024])
def test_rasterize_resolution(benchmark, nv_ctx, scene, impl, res):
    _need(impl)
    pos, tri = scene("sphere80k", 8)
    colour = torch.rand(1, pos.shape[1], 3, device=CUDA)
    benchmark.group = f"cuda rasterize+interpolate fwd sphere80k B=8 {res}^2"
    benchmark.extra_info.update(impl=impl)
    with torch.no_grad():
        benchmark(_timed(_raster_step), impl, nv_ctx, pos, tri, colour, False, (res, res))


@pytest.mark.parametrize("impl", IMPLS)
def test_antialias(benchmark, nv_ctx, scene, impl):
    _need(impl)
    pos, tri = scene("sphere80k", 8)
    rast, _ = dr.rasterize(None, pos, tri, RES)
    colour = torch.rand(8, *RES, 3, device=CUDA, requires_grad=True)
    pos.requires_grad_(True)
    if impl == "occrecon":
        topo = dr.antialias_construct_topology_hash(tri)
        fn = lambda: dr.antialias(colour, rast, pos, tri, topology_hash=topo)  # noqa: E731
    else:
        topo = nvdr.antialias_construct_topology_hash(tri)
        fn = lambda: nvdr.antialias(colour, rast, pos, tri, topology_hash=topo)  # noqa: E731

    def step():
        out = fn()
        out.sum().backward()
        return out

    benchmark.group = "cuda antialias fwd+bwd sphere80k B=8 224^2"
    benchmark.extra_info.update(impl=impl)
    benchmark(_timed(step))


@pytest.mark.parametrize("impl", ["kernel", "reference"])
@pytest.mark.parametrize("k", [3, 5])
def test_neighbour_min(benchmark, impl, k):
    g = torch.Generator().manual_seed(0)
    t = torch.rand(32, 3, 224, 224, generator=g).to(CUDA).requires_grad_()
    r = torch.rand(32, 3, 224, 224, generator=g).to(CUDA).requires_grad_()
    reg = (torch.rand(32, 1, 224, 224, generator=g) > 0.2).to(CUDA)
    fn = ops.neighbour_min if impl == "kernel" else reference.neighbour_min

    def step():
        d2, _ = fn(t, r, k, reg)
        d2.sum().backward()
        return d2

    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    benchmark.group = f"cuda neighbour_min fwd+bwd k={k} B=32 224^2"
    benchmark(_timed(step))
    benchmark.extra_info.update(impl=impl, peak_mb=(torch.cuda.max_memory_allocated() - base) / 2**20)


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_sh_shade(benchmark, impl):
    g = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(32, 35_000, 3, generator=g), dim=-1).to(CUDA).requires_grad_()
    alb = torch.rand(32, 35_000, 3, generator=g).to(CUDA).requires_grad_()
    gamma = (torch.randn(32, 9, 3, generator=g) * 0.3).to(CUDA).requires_grad_()
    fn = ops.sh_shade if impl == "kernel" else reference.sh_shade

    def step():
        out = fn(n, alb, gamma)
        out.sum().backward()
        return out

    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    benchmark.group = "cuda sh_shade fwd+bwd B=32 35k vertices"
    benchmark(_timed(step))
    benchmark.extra_info.update(impl=impl, peak_mb=(torch.cuda.max_memory_allocated() - base) / 2**20)


@pytest.mark.parametrize("model_name", ["sfm_3448", "ict_face"])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_face_renderer(benchmark, model_name, backward):
    from occrecon.morphable import load_model

    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets not present")
    r = dr.FaceRenderer(load_model(shared / "assets" / "models" / f"{model_name}.npz")).to(CUDA)
    theta = (torch.randn(32, r.layout.size, generator=torch.Generator().manual_seed(0)) * 0.05).to(CUDA)
    theta.requires_grad_(backward)

    def step():
        out = r(theta)
        if backward:
            (out.image.sum() + out.landmarks.nan_to_num().sum()).backward()
        return out.image

    benchmark.group = f"cuda FaceRenderer {model_name} {'fwd+bwd' if backward else 'fwd'} B=32 224^2"
    with torch.set_grad_enabled(backward):
        benchmark(_timed(step))
