"""CUDA kernels against independent references: the pure-PyTorch references, the CPU kernels (which share the
per-element math of ``csrc/common``), nvdiffrast itself when installed, opcheck on CUDA tensors, determinism,
device-mismatch errors and the full face renderer. The golden nvdiffrast-convention data is checked on CUDA by
the device-parametrised golden tests of tests/test_rasterize.py. Skipped without a CUDA device (CI has none); on
a GPU machine run ``bash tools/gpu-check.sh``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import occrecon.render as dr
from occrecon import assets, ops
from occrecon.ops import reference
from occrecon.ops.sh import sh_shade
from occrecon.render.meshes import perspective_clip

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = "cuda"


def _soup(b=2, f=60, h=24, w=31, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, f, 1, 3, generator=g, dtype=dtype) * 1.6 - 0.8
    verts = centres + (torch.rand(b, f, 3, 3, generator=g, dtype=dtype) - 0.5) * 0.5
    w_ = 1.0 + torch.rand(b, f, 3, 1, generator=g, dtype=dtype)
    pos = torch.cat([verts[..., :2] * w_, verts[..., 2:] * 0.9 * w_, w_], -1).reshape(b, f * 3, 4)
    tri = torch.arange(f * 3, dtype=torch.int32).reshape(f, 3)
    return pos, tri, (h, w)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_soups_match_reference(seed):
    """CUDA rasterize + interpolate against the brute-force pure-PyTorch reference (float64)."""
    pos, tri, res = _soup(b=2, f=80, h=40, w=52, seed=seed)
    attr = torch.rand(1, pos.shape[1], 3, dtype=torch.float64)
    rast_ref, _ = reference.rasterize(pos, tri, res)
    out_ref, _ = reference.interpolate(attr, rast_ref, tri)
    rast, _ = dr.rasterize(None, pos.to(CUDA), tri.to(CUDA), res)
    out, _ = dr.interpolate(attr.to(CUDA), rast, tri.to(CUDA))
    assert torch.equal(rast[..., 3].cpu(), rast_ref[..., 3])
    torch.testing.assert_close(rast.cpu(), rast_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.cpu(), out_ref, rtol=1e-9, atol=1e-9)


def test_range_mode_and_empty_ranges():
    pos, tri, res = _soup(b=1, f=40, seed=3)
    pos = pos[0]
    ranges = torch.tensor([[0, 20], [20, 0], [10, 30]], dtype=torch.int32)
    cpu, _ = dr.rasterize(None, pos, tri, res, ranges=ranges)
    gpu, _ = dr.rasterize(None, pos.to(CUDA), tri.to(CUDA), res, ranges=ranges)
    assert torch.equal(gpu[..., 3].cpu(), cpu[..., 3])
    assert (gpu[1] == 0).all()
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)


def _ict_scene(b, dtype=torch.float32):
    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets not present")
    d = np.load(shared / "assets" / "models" / "ict_face.npz")
    v = torch.tensor(d["mean"], dtype=torch.float64)
    v = (v - v.mean(0)) / (v.max(0).values - v.min(0).values).max() * 2
    pos = perspective_clip(v, focal=2.5).to(dtype)
    g = torch.Generator().manual_seed(0)
    pos = pos[None].repeat(b, 1, 1)
    pos[..., :2] += (torch.rand(b, 1, 2, generator=g, dtype=torch.float64) * 0.2 - 0.1).to(dtype)
    return pos, torch.tensor(d["tris"].astype(np.int32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_face_mesh_batch_matches_cpu(dtype):
    """A real mesh (ICT face, 18k triangles) at 224²: CUDA and CPU kernels agree on ids, barycentrics, depth,
    rast_db, interpolated attributes and all gradients."""
    pos, tri = _ict_scene(4, dtype)
    attr = torch.rand(1, pos.shape[1], 3, dtype=dtype)
    res = []
    for dev in ("cpu", CUDA):
        p, a = pos.detach().to(dev).requires_grad_(), attr.detach().to(dev).requires_grad_()
        rast, db = dr.rasterize(None, p, tri.to(dev), (224, 224))
        out, da = dr.interpolate(a, rast, tri.to(dev), rast_db=db, diff_attrs="all")
        w = torch.linspace(0, 1, out.numel(), dtype=dtype, device=dev).reshape(out.shape)
        ((out * w).sum() + da.square().sum()).backward()
        res.append([x.detach().cpu() for x in (rast, db, out, da, p.grad, a.grad)])
    ids_cpu, ids_gpu = res[0][0][..., 3], res[1][0][..., 3]
    assert (ids_cpu > 0).float().mean() > 0.2
    assert torch.equal(ids_gpu, ids_cpu)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for x, y in zip(res[0], res[1]):
        torch.testing.assert_close(y, x, rtol=tol, atol=tol * max(1.0, float(x.abs().max())))


def test_rasterize_forward_is_deterministic():
    pos, tri = _ict_scene(8)
    pos, tri = pos.to(CUDA), tri.to(CUDA)
    a, _ = dr.rasterize(None, pos, tri, (224, 224))
    b, _ = dr.rasterize(None, pos, tri, (224, 224))
    assert torch.equal(a, b)


def test_antialias_matches_reference_and_cpu():
    from occrecon.ops import reference_antialias as ref_aa

    pos, tri, res = _soup(b=2, f=40, h=30, w=36, seed=4)
    rast, _ = dr.rasterize(None, pos, tri, res)
    colour = torch.rand(2, *res, 3, dtype=torch.float64)
    wgt = torch.rand_like(colour)
    topo = dr.antialias_construct_topology_hash(tri)
    out_ref = ref_aa.antialias(colour, rast, pos, tri)
    outs = []
    for dev in ("cpu", CUDA):
        c, p = colour.detach().to(dev).requires_grad_(), pos.detach().to(dev).requires_grad_()
        out = dr.antialias(c, rast.to(dev), p, tri.to(dev), topology_hash=topo.to(dev))
        (out * wgt.to(dev)).sum().backward()
        outs.append([x.detach().cpu() for x in (out, c.grad, p.grad)])
    torch.testing.assert_close(outs[1][0], out_ref, rtol=1e-9, atol=1e-9)  # float64 rast: exact ids
    for x, y in zip(outs[0], outs[1]):
        torch.testing.assert_close(y, x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [3, 5])
def test_neighbour_min_matches_reference_float32(k):
    g = torch.Generator().manual_seed(k)
    t, r = torch.rand(4, 3, 64, 80, generator=g), torch.rand(4, 3, 64, 80, generator=g)
    reg = torch.rand(4, 1, 64, 80, generator=g) > 0.3
    d2_ref, idx_ref = reference.neighbour_min(t.double(), r.double(), k, reg)
    d2, idx = ops.neighbour_min(t.to(CUDA), r.to(CUDA), k, reg.to(CUDA))
    torch.testing.assert_close(d2.cpu().double(), d2_ref, rtol=1e-5, atol=1e-6)
    agree = (idx.cpu() == idx_ref).float().mean()
    assert agree > 0.999  # float32 vs float64 near-ties may pick a different (equally distant) neighbour


def test_sh_shade_matches_reference():
    g = torch.Generator().manual_seed(1)
    n = torch.nn.functional.normalize(torch.randn(3, 5000, 3, generator=g, dtype=torch.float64), dim=-1)
    alb = torch.rand(3, 5000, 3, generator=g, dtype=torch.float64)
    gamma = torch.randn(3, 9, 3, generator=g, dtype=torch.float64)
    ref = reference.sh_shade(n, alb, gamma)
    out = sh_shade(n.to(CUDA), alb.to(CUDA), gamma.to(CUDA))
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-12)


def test_vertex_normals_match_cpu_and_reference():
    """CUDA vertex normals: the CPU kernel's exact results (same gather order, --fmad=false) and the reference."""
    g = torch.Generator().manual_seed(4)
    verts = torch.randn(3, 500, 3, generator=g, dtype=torch.float64)
    tri = torch.stack([torch.randperm(480, generator=g)[:3] for _ in range(1500)]).to(torch.int32)
    w = torch.randn(3, 500, 3, generator=g, dtype=torch.float64)
    out = []
    for dev in ("cpu", CUDA):
        x = verts.to(dev).requires_grad_()
        n = ops.vertex_normals(x, tri.to(dev))
        (n * w.to(dev)).sum().backward()
        out.append((n.detach().cpu(), x.grad.cpu()))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    torch.testing.assert_close(out[1][0], reference.vertex_normals(verts, tri), rtol=1e-12, atol=1e-12)
    x = verts[:1, :30].to(CUDA).requires_grad_()
    small = tri[(tri < 30).all(1)].to(CUDA)
    assert torch.autograd.gradcheck(lambda p: ops.vertex_normals(p, small), (x,))


def test_gradcheck_on_cuda():
    pos, tri, res = _soup(b=1, f=6, h=10, w=12, seed=9)
    pos, tri = pos.to(CUDA).requires_grad_(), tri.to(CUDA)
    attr = torch.rand(1, pos.shape[1], 2, dtype=torch.float64, device=CUDA, requires_grad=True)

    def render(p, a):
        rast, _ = dr.rasterize(None, p, tri, res)
        return dr.interpolate(a, rast, tri)[0]

    assert torch.autograd.gradcheck(render, (pos, attr), eps=1e-7, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(1, 3, 9, 10, generator=g, dtype=torch.float64).to(CUDA).requires_grad_()
    r = torch.rand(1, 3, 9, 10, generator=g, dtype=torch.float64).to(CUDA).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ops.neighbour_min(a, b, 3)[0], (t, r))
    n = torch.nn.functional.normalize(torch.randn(1, 20, 3, dtype=torch.float64), dim=-1).to(CUDA).requires_grad_()
    alb = torch.rand(1, 20, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    gam = torch.randn(1, 9, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    assert torch.autograd.gradcheck(sh_shade, (n, alb, gam))


def test_opcheck_every_op_on_cuda():
    pos, tri, res = _soup(b=2, f=12, h=9, w=11, seed=2, dtype=torch.float32)
    pos, tri = pos.to(CUDA).requires_grad_(), tri.to(CUDA)
    oc = torch.ops.occrecon
    torch.library.opcheck(oc.rasterize.default, (pos, tri, res[0], res[1], None, True))
    rast, db = dr.rasterize(None, pos.detach(), tri, res)
    attr = torch.rand(1, pos.shape[1], 3, device=CUDA, requires_grad=True)
    torch.library.opcheck(oc.interpolate.default, (attr, rast.clone().requires_grad_(), tri,
                                                   db.clone().requires_grad_(), [0, 2]))
    g = torch.rand_like(rast)
    torch.library.opcheck(oc.rasterize_backward.default, (pos.detach(), tri, rast, g, g))
    torch.library.opcheck(oc.interpolate_backward.default,
                          (attr.detach(), rast, tri, db, [1], torch.rand(2, 9, 11, 3, device=CUDA),
                           torch.rand(2, 9, 11, 2, device=CUDA)))
    topo = dr.antialias_construct_topology_hash(tri)
    torch.library.opcheck(oc.antialias_construct_topology_hash.default, (tri,))
    color = torch.rand(2, 9, 11, 3, device=CUDA, requires_grad=True)
    torch.library.opcheck(oc.antialias.default, (color, rast, pos, tri, topo, 1.0))
    torch.library.opcheck(oc.antialias_backward.default,
                          (torch.rand_like(color), color.detach(), rast, pos.detach(), tri, topo))
    t = torch.rand(2, 3, 9, 11, device=CUDA, requires_grad=True)
    r = torch.rand(2, 3, 9, 11, device=CUDA, requires_grad=True)
    reg = torch.rand(2, 9, 11, device=CUDA) > 0.3
    torch.library.opcheck(oc.neighbour_min.default, (t, r, reg, 3))
    d2, idx = oc.neighbour_min(t.detach(), r.detach(), reg, 3)
    torch.library.opcheck(oc.neighbour_min_backward.default, (torch.rand_like(d2), t.detach(), r.detach(), idx, 3))
    n = torch.nn.functional.normalize(torch.randn(2, 30, 3, device=CUDA), dim=-1).requires_grad_()
    alb = torch.rand(2, 30, 3, device=CUDA, requires_grad=True)
    gam = torch.randn(2, 9, 3, device=CUDA, requires_grad=True)
    torch.library.opcheck(oc.sh_shade.default, (n, alb, gam))
    torch.library.opcheck(oc.sh_shade_backward.default,
                          (torch.rand(2, 30, 3, device=CUDA), n.detach(), alb.detach(), gam.detach()))
    v = torch.randn(2, pos.shape[1], 3, device=CUDA, requires_grad=True)
    torch.library.opcheck(oc.vertex_normals.default, (v, tri, 1e-12))
    nv, rv = oc.vertex_normals(v.detach(), tri, 1e-12)
    torch.library.opcheck(oc.vertex_normals_backward.default, (torch.rand_like(nv), v.detach(), tri, nv, rv, 1e-12))


def test_device_mismatch_is_a_clear_error():
    pos, tri, res = _soup(b=1, f=4, seed=0)
    with pytest.raises((ValueError, RuntimeError), match="cpu|cuda"):
        dr.rasterize(None, pos.to(CUDA), tri, res)
    t = torch.rand(1, 3, 8, 8)
    with pytest.raises((ValueError, RuntimeError), match="device"):
        ops.neighbour_min(t.to(CUDA), t, 3)
    with pytest.raises((ValueError, RuntimeError), match="device"):
        sh_shade(torch.rand(1, 4, 3, device=CUDA), torch.rand(1, 4, 3), torch.rand(1, 9, 3))


def test_out_of_range_indices_are_rejected_on_cuda():
    pos, tri, res = _soup(b=1, f=4, seed=0)
    bad = tri.clone()
    bad[0, 0] = pos.shape[1] + 5
    with pytest.raises((ValueError, IndexError, RuntimeError), match="tri"):
        dr.rasterize(None, pos.to(CUDA), bad.to(CUDA), res)


def test_face_renderer_cuda_matches_cpu():
    """The whole image formation (model → camera → normals → SH → raster → interpolate → antialias) on CUDA, in
    float64 so that CPU BLAS and cuBLAS summation orders cannot move a silhouette pixel."""
    from occrecon.morphable import load_model

    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets not present")
    model = load_model(shared / "assets" / "models" / "sfm_3448.npz")
    results = []
    for dev in ("cpu", CUDA):
        r = dr.FaceRenderer(model, use_antialias=True).double().to(dev)
        g = torch.Generator().manual_seed(3)
        theta = (torch.randn(2, r.layout.size, generator=g, dtype=torch.float64) * 0.1).to(dev).requires_grad_()
        out = r(theta)
        (out.image.mean() + out.region.mean() + out.landmarks.nan_to_num().mean() * 1e-3).backward()
        results.append([x.detach().cpu() for x in (out.image, out.region, out.depth, out.landmarks, theta.grad)])
    assert results[0][0].dtype == torch.float64 and (results[0][1] > 0).float().mean() > 0.1
    for x, y in zip(results[0], results[1]):
        torch.testing.assert_close(y, x, rtol=1e-7, atol=1e-7 * max(1.0, float(x.nan_to_num().abs().max())),
                                   equal_nan=True)


def test_matches_nvdiffrast_when_installed():
    """Drop-in check against the peer itself (skipped unless ``nvdiffrast.torch`` imports): same ids, barycentrics,
    interpolated attributes, antialiased image and gradients on a random soup and a sphere."""
    nvdr = pytest.importorskip("nvdiffrast.torch")
    from occrecon.render.meshes import uv_sphere

    v, t = uv_sphere(40, 40)
    scenes = [_soup(b=2, f=200, h=64, w=80, seed=11, dtype=torch.float32),
              (perspective_clip(v)[None].repeat(2, 1, 1).float(), t, (96, 96))]
    ctx = nvdr.RasterizeCudaContext()
    for pos, tri, res in scenes:
        pos, tri = pos.to(CUDA), tri.to(CUDA)
        attr = torch.rand(1, pos.shape[1], 3, device=CUDA)
        outs = []
        for lib in (dr, nvdr):
            p, a = pos.clone().requires_grad_(), attr.clone().requires_grad_()
            rast, _ = lib.rasterize(ctx if lib is nvdr else None, p, tri, res)
            col, _ = lib.interpolate(a, rast, tri)
            aa = lib.antialias(col, rast, p, tri)
            w = torch.linspace(0, 1, aa.numel(), device=CUDA).reshape(aa.shape)
            (aa * w).sum().backward()
            outs.append([x.detach() for x in (rast, col, aa, p.grad, a.grad)])
        ours, theirs = outs
        same_id = ours[0][..., 3] == theirs[0][..., 3]
        assert same_id.float().mean() > 0.999, f"ids agree on {same_id.float().mean():.5f} of pixels"
        m = same_id[..., None]
        torch.testing.assert_close(ours[0] * m, theirs[0] * m, rtol=0, atol=5e-5)  # the golden data's tolerance
        torch.testing.assert_close(ours[1] * m, theirs[1] * m, rtol=0, atol=5e-5)
        if bool(same_id.all()):
            for x, y in zip(ours[2:], theirs[2:]):
                torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4 * max(1.0, float(y.abs().max())))
