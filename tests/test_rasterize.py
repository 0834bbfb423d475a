"""rasterize / interpolate kernels: golden nvdiffrast-convention data, gradients, opcheck, modes, bad input."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon.render as dr
from occrecon import assets

GOLDEN = None if assets.shared_dir(required=False) is None else assets.shared_dir() / "golden"
SCENES = ["g1_tiny_single", "g1_tiny_overlap", "g2_soup_s0", "g3_icosphere"]
needs_golden = pytest.mark.skipif(GOLDEN is None, reason="shared golden data not present")
#: every golden check runs on the CPU kernels and, where a GPU exists, on the CUDA kernels
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _golden(name):
    d = np.load(GOLDEN / f"{name}.npz")
    return {k: d[k] for k in d.files}


def _scene_tensors(d, dtype):
    pos = torch.tensor(d["pos"]).to(dtype)
    tri = torch.tensor(d["tri"])
    attr = torch.tensor(d["attr"]).to(dtype)
    h, w = (int(v) for v in d["resolution"])
    return pos, tri, attr, (h, w)


# ------------------------------------------------------------------------------------------------ golden
@needs_golden
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SCENES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_forward(name, dtype, device):
    d = _golden(name)
    pos, tri, attr, res = (x.to(device) if isinstance(x, torch.Tensor) else x for x in _scene_tensors(d, dtype))
    rast, db = dr.rasterize(dr.RasterizeCudaContext(), pos, tri, res)
    out, _ = dr.interpolate(attr, rast, tri)
    rast, db, out = rast.cpu(), db.cpu(), out.cpu()
    valid = torch.tensor(d["valid"])
    g = torch.tensor(d["rast"]).to(dtype)
    covered = valid & (g[..., 3] > 0)
    background = valid & (g[..., 3] == 0)
    assert torch.equal(rast[..., 3][valid], g[..., 3][valid])  # ids exact
    assert (rast[background] == 0).all() and (out[background] == 0).all() and (db[background] == 0).all()
    torch.testing.assert_close(rast[..., :2][covered], g[..., :2][covered], rtol=0, atol=5e-5)
    torch.testing.assert_close(rast[..., 2][covered], g[..., 2][covered], rtol=0, atol=2e-6)
    gdb = torch.tensor(d["rast_db"]).to(dtype)
    torch.testing.assert_close(db[covered], gdb[covered], rtol=0, atol=1e-4 * float(gdb.abs().max()))
    torch.testing.assert_close(out[covered], torch.tensor(d["out"]).to(dtype)[covered], rtol=0, atol=5e-5)


@needs_golden
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SCENES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_golden_gradients(name, dtype, device):
    d = _golden(name)
    pos, tri, attr, res = (x.to(device) if isinstance(x, torch.Tensor) else x for x in _scene_tensors(d, dtype))
    pos.requires_grad_(True)
    attr.requires_grad_(True)
    rast, _ = dr.rasterize(None, pos, tri, res)
    out, _ = dr.interpolate(attr, rast, tri)
    valid = torch.tensor(d["valid"], device=device)
    loss = (torch.tensor(d["w"], device=device).to(dtype) * valid[..., None] * out).sum()
    loss.backward()
    pos_grad, attr_grad = pos.grad.cpu(), attr.grad.cpu()
    ga, gp = torch.tensor(d["grad_attr"]), torch.tensor(d["grad_pos"])
    rel = 1e-10 if dtype == torch.float64 else 1.0
    assert (attr_grad.double() - ga).abs().max() <= 1e-4 * rel * ga.abs().max()
    assert (pos_grad.double() - gp).abs().max() <= 1e-3 * rel * gp.abs().max()
    assert (pos_grad[..., 2] == 0).all()


# ------------------------------------------------------------------------------------------------ scenes
def _quad_scene(dtype=torch.float64, h=8, w=8):
    """Two triangles sharing the diagonal of a square, corners on exact 1/16-px positions."""
    c = 0.75
    pos = torch.tensor([[[-c, -c, 0.2, 1.0], [c, -c, 0.2, 1.0], [c, c, 0.2, 1.0], [-c, c, 0.2, 1.0]]], dtype=dtype)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    return pos, tri, (h, w)


def _random_scene(b=2, f=60, h=24, w=31, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, f, 1, 3, generator=g, dtype=dtype) * 1.6 - 0.8
    verts = centres + (torch.rand(b, f, 3, 3, generator=g, dtype=dtype) - 0.5) * 0.5
    w_ = 1.0 + torch.rand(b, f, 3, 1, generator=g, dtype=dtype)  # perspective: w in [1, 2]
    pos = torch.cat([verts[..., :2] * w_, verts[..., 2:] * 0.9 * w_, w_], -1).reshape(b, f * 3, 4)
    tri = torch.arange(f * 3, dtype=torch.int32).reshape(f, 3)
    return pos, tri, (h, w)


def test_split_quad_is_watertight():
    pos, tri, res = _quad_scene()
    rast, _ = dr.rasterize(None, pos, tri, res)
    ids = rast[0, ..., 3]
    # the square spans NDC [-0.75, 0.75]: pixel centres (2i+1)/8 - 1 inside for i = 1..6 (i = 0: -0.875)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[1:7, 1:7] = True
    assert ((ids > 0) == inside).all()
    # the diagonal passes exactly through pixel centres (i, i): each is owned by exactly one triangle
    assert set(ids[inside].unique().tolist()) == {1.0, 2.0}


def test_fill_rule_left_bottom_edges_own_samples():
    """A square whose edges pass exactly through pixel centres: left and bottom edges own them."""
    # pixel centres of an 8-wide image at NDC (2i+1)/8 - 1: -0.625 is column 1's centre, 0.375 column 5's
    a, b = -0.625, 0.375
    pos = torch.tensor([[[a, a, 0, 1], [b, a, 0, 1], [b, b, 0, 1], [a, b, 0, 1]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    ids = dr.rasterize(None, pos, tri, (8, 8))[0][0, ..., 3]
    covered = (ids > 0).nonzero().tolist()
    rows = sorted({r for r, _ in covered})
    cols = sorted({c for _, c in covered})
    assert rows == [1, 2, 3, 4] and cols == [1, 2, 3, 4]  # bottom row 1 and left column 1 in, top 5 / right 5 out


def test_both_windings_drawn_and_depth_nearest_wins():
    pos, tri, res = _quad_scene()
    near = pos.clone()
    near[..., 2] = -0.5
    both = torch.cat([pos, near], 1)
    tri2 = torch.tensor([[0, 1, 2], [4, 6, 5]], dtype=torch.int32)  # second one clockwise
    rast, _ = dr.rasterize(None, both, tri2, res)
    ids = rast[0, ..., 3]
    lower = torch.ones(8, 8, dtype=torch.bool).tril(-1).flip(0)  # not needed exactly: check covered pixels
    assert (ids[ids > 0] == 2).all()  # the nearer (z = -0.5) clockwise triangle wins everywhere it covers
    assert lower.any()
    torch.testing.assert_close(rast[0, ..., 2][ids > 0], torch.full_like(rast[0, ..., 2][ids > 0], -0.5))


def test_depth_tie_goes_to_lower_index():
    pos, tri, res = _quad_scene()
    tri_dup = torch.tensor([[0, 1, 2], [0, 1, 2]], dtype=torch.int32)
    ids = dr.rasterize(None, pos, tri_dup, res)[0][0, ..., 3]
    assert set(ids[ids > 0].unique().tolist()) == {1.0}


@pytest.mark.parametrize("case", ["w_negative", "w_zero", "nan", "inf", "zero_area", "outside", "beyond_far"])
def test_dropped_triangles(case):
    pos, tri, res = _quad_scene()
    pos = pos.clone()
    if case == "w_negative":
        pos[0, 1, 3] = -1.0
    elif case == "w_zero":
        pos[0, 1, 3] = 0.0
    elif case == "nan":
        pos[0, 1, 0] = float("nan")
    elif case == "inf":
        pos[0, 1, 1] = float("inf")
    elif case == "zero_area":
        pos[0, 1] = pos[0, 0] * 0.5 + pos[0, 2] * 0.5  # on the diagonal 0-2: zero area (also after snapping)
    elif case == "outside":
        pos[0, :, 0] += 3.0  # all four corners x > w
    elif case == "beyond_far":
        pos[0, :, 2] = 1.5  # z/w > 1 everywhere
    pos.requires_grad_(True)
    rast, db = dr.rasterize(None, pos, tri, res)
    ids = rast[0, ..., 3]
    if case in ("outside", "beyond_far"):
        assert (ids == 0).all()
    else:
        assert not (ids == 1).any()  # only triangle 0 uses vertex 1: dropped
        assert (ids == 2).any()  # triangle 1 is unaffected
    out, _ = dr.interpolate(torch.rand(1, 4, 2, dtype=torch.float64), rast, tri)
    out.sum().backward()
    assert torch.isfinite(pos.grad).all()


def test_near_plane_clipping_is_per_fragment():
    """A triangle crossing z/w = -1 keeps exactly the fragments with z/w >= -1."""
    pos = torch.tensor([[[-1, -1, -1.5, 1], [1, -1, -1.5, 1], [0, 1, 0.5, 1]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, _ = dr.rasterize(None, pos, tri, (16, 16))
    z = rast[0, ..., 2]
    covered = rast[0, ..., 3] > 0
    assert covered.any() and (z[covered] >= -1).all()
    # z/w = -1.5 + row_ndc + 1 ... is affine in y: rows whose centre has z/w < -1 are empty
    ys = (2 * torch.arange(16, dtype=torch.float64) + 1) / 16 - 1
    zw_row = -1.5 + (ys + 1) / 2 * 2.0
    assert not covered[zw_row < -1].any()


def test_instanced_equals_range_mode():
    pos, tri, res = _random_scene(b=3, f=40, seed=4)
    b, v, _ = pos.shape
    flat = pos.reshape(b * v, 4)
    tri_all = torch.cat([tri + i * v for i in range(b)])
    f = tri.shape[0]
    ranges = torch.tensor([[i * f, f] for i in range(b)], dtype=torch.int32)
    r_inst, db_inst = dr.rasterize(None, pos, tri, res)
    r_rng, db_rng = dr.rasterize(None, flat, tri_all, res, ranges=ranges)
    ids_inst = r_inst[..., 3]
    ids_rng = r_rng[..., 3]
    offset = torch.arange(b, dtype=ids_inst.dtype).view(b, 1, 1) * f
    assert torch.equal(torch.where(ids_inst > 0, ids_inst + offset, ids_inst), ids_rng)
    assert torch.equal(r_inst[..., :3], r_rng[..., :3]) and torch.equal(db_inst, db_rng)
    # gradients agree too
    attr = torch.rand(b, v, 3, dtype=torch.float64)
    p1 = pos.clone().requires_grad_()
    p2 = flat.clone().requires_grad_()
    o1, _ = dr.interpolate(attr, dr.rasterize(None, p1, tri, res)[0], tri)
    o2, _ = dr.interpolate(attr.reshape(b * v, 3), dr.rasterize(None, p2, tri_all, res, ranges=ranges)[0], tri_all)
    wts = torch.rand_like(o1)
    (o1 * wts).sum().backward()
    (o2 * wts).sum().backward()
    torch.testing.assert_close(p1.grad.reshape(b * v, 4), p2.grad)


def test_batch_of_different_meshes_matches_one_by_one():
    pos, tri, res = _random_scene(b=3, seed=8)
    rast, db = dr.rasterize(None, pos, tri, res)
    for i in range(3):
        r1, d1 = dr.rasterize(None, pos[i:i + 1], tri, res)
        assert torch.equal(r1[0], rast[i]) and torch.equal(d1[0], db[i])


def test_result_independent_of_thread_count():
    pos, tri, res = _random_scene(b=2, f=3000, h=64, w=64, seed=2, dtype=torch.float32)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dr.rasterize(None, pos, tri, res)
        torch.set_num_threads(max(2, n))
        many = dr.rasterize(None, pos, tri, res)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


def test_deterministic_gradients():
    pos, tri, res = _random_scene(b=2, f=200, h=40, w=40, seed=3, dtype=torch.float32)
    attr = torch.rand(1, pos.shape[1], 3)
    grads = []
    for _ in range(2):
        p = pos.clone().requires_grad_()
        a = attr.clone().requires_grad_()
        rast, db = dr.rasterize(None, p, tri, res)
        out, da = dr.interpolate(a, rast, tri, rast_db=db, diff_attrs="all")
        (out.sum() + da.square().sum()).backward()
        grads.append((p.grad, a.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


# ------------------------------------------------------------------------------------------------ interpolate
def test_interpolate_closed_form_and_broadcast():
    pos, tri, res = _random_scene(b=2, seed=5)
    rast, _ = dr.rasterize(None, pos, tri, res)
    v = pos.shape[1]
    attr = torch.rand(v, 4, dtype=torch.float64)
    out_vc, _ = dr.interpolate(attr, rast, tri)
    out_1vc, _ = dr.interpolate(attr[None], rast, tri)
    out_bvc, _ = dr.interpolate(attr[None].expand(2, -1, -1), rast, tri)
    assert torch.equal(out_vc, out_1vc) and torch.equal(out_vc, out_bvc)
    ids = rast[..., 3].long() - 1
    u, vv = rast[..., 0:1], rast[..., 1:2]
    t = tri.long()[ids.clamp(min=0)]
    want = u * attr[t[..., 0]] + vv * attr[t[..., 1]] + (1 - u - vv) * attr[t[..., 2]]
    want = torch.where((ids >= 0)[..., None], want, torch.zeros_like(want))
    torch.testing.assert_close(out_vc, want, rtol=1e-14, atol=1e-14)


def test_interpolate_diff_attrs_layout_and_values():
    pos, tri, res = _random_scene(b=1, seed=6)
    rast, db = dr.rasterize(None, pos, tri, res)
    attr = torch.rand(1, pos.shape[1], 3, dtype=torch.float64)
    out, da = dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs=[2, 0])
    assert da.shape == (1, *res, 4)
    _, da_all = dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs="all")
    torch.testing.assert_close(da[..., 0:2], da_all[..., 4:6])
    torch.testing.assert_close(da[..., 2:4], da_all[..., 0:2])
    _, none = dr.interpolate(attr, rast, tri)
    assert none.shape == (1, *res, 0)
    # dA/dX = (A0 - A2) du/dX + (A1 - A2) dv/dX for attribute 2
    ids = rast[0, ..., 3].long() - 1
    t = tri.long()[ids.clamp(min=0)]
    a = attr[0, :, 2]
    d0, d1 = a[t[..., 0]] - a[t[..., 2]], a[t[..., 1]] - a[t[..., 2]]
    want_x = torch.where(ids >= 0, d0 * db[0, ..., 0] + d1 * db[0, ..., 2], torch.zeros_like(d0))
    torch.testing.assert_close(da[0, ..., 0], want_x)


def test_rast_db_matches_finite_differences_of_u_v():
    """du/dX from rast_db equals the change of u between neighbouring pixel centres for an affine-looking case."""
    pos = torch.tensor([[[-0.9, -0.9, 0.1, 1.0], [0.9, -0.8, 0.1, 1.5], [0.0, 0.9, 0.1, 1.2]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, db = dr.rasterize(None, pos, tri, (32, 32))
    y, x = 12, 14
    assert (rast[0, y, x - 1:x + 2, 3] == 1).all() and (rast[0, y - 1:y + 2, x, 3] == 1).all()
    du_dx = (rast[0, y, x + 1, 0] - rast[0, y, x - 1, 0]) / 2
    du_dy = (rast[0, y + 1, x, 0] - rast[0, y - 1, x, 0]) / 2
    assert abs(du_dx - db[0, y, x, 0]) < 1e-3 * abs(db[0, y, x, 0]) + 1e-6
    assert abs(du_dy - db[0, y, x, 1]) < 1e-3 * abs(db[0, y, x, 1]) + 1e-6


# ------------------------------------------------------------------------------------------------ gradients
def _interior_scene():
    """Three large overlapping perspective triangles on a 12 x 12 image."""
    pos = torch.tensor([[[-0.9, -0.8, 0.3, 1.0], [0.8, -0.9, 0.2, 1.4], [0.1, 0.9, 0.1, 1.2],
                         [-0.7, 0.8, -0.2, 1.1], [-0.6, -0.9, 0.4, 1.3], [0.9, 0.3, 0.0, 1.6],
                         [-0.95, 0.1, 0.5, 1.0], [0.2, -0.7, -0.4, 1.5], [0.6, 0.9, 0.6, 1.2]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 8, 7]], dtype=torch.int32)
    return pos, tri, (12, 12)


def test_gradcheck_interpolate():
    pos, tri, res = _random_scene(b=2, f=10, h=10, w=10, seed=1)
    rast, db = dr.rasterize(None, pos, tri, res)
    attr = torch.rand(2, pos.shape[1], 2, dtype=torch.float64, requires_grad=True)
    uv = rast[..., :2].clone().requires_grad_(True)  # the (z/w, id) channels are not differentiable inputs
    db = db.clone().requires_grad_(True)
    rest = rast[..., 2:]
    assert torch.autograd.gradcheck(
        lambda a, uv_, d: dr.interpolate(a, torch.cat([uv_, rest], -1), tri, rast_db=d, diff_attrs="all"),
        (attr, uv, db), atol=1e-8)
    attr1 = torch.rand(pos.shape[1], 2, dtype=torch.float64, requires_grad=True)  # broadcast form
    assert torch.autograd.gradcheck(lambda a: dr.interpolate(a, rast, tri)[0], (attr1,))


@pytest.mark.parametrize("grad_db", [False, True])
def test_gradcheck_rasterize_through_u_v(grad_db):
    pos, tri, res = _interior_scene()
    rast0, _ = dr.rasterize(None, pos, tri, res)
    u0, v0 = rast0[..., 0], rast0[..., 1]
    # pixels whose centre is strictly inside its triangle (the output clamps are inactive there)
    inner = ((rast0[..., 3] > 0) & (u0 > 1e-3) & (v0 > 1e-3) & (u0 + v0 < 1 - 1e-3))[..., None].double()
    assert inner.sum() > 20
    pos = pos.clone().requires_grad_(True)

    def f(p):
        rast, db = dr.rasterize(None, p, tri, res, grad_db=grad_db)
        if not torch.equal(rast[..., 3], rast0[..., 3]):
            raise AssertionError("perturbation changed coverage; pick another scene")
        return (rast[..., :2] * inner, db * inner) if grad_db else rast[..., :2] * inner

    assert torch.autograd.gradcheck(f, (pos,), eps=1e-7, atol=1e-6)


def test_grad_db_flag_controls_db_gradient():
    pos, tri, res = _random_scene(b=1, seed=7)
    grads = []
    for flag in (True, False):
        p = pos.clone().requires_grad_()
        _, db = dr.rasterize(None, p, tri, res, grad_db=flag)
        db.sum().backward()
        grads.append(p.grad)
    assert grads[0].abs().sum() > 0 and (grads[1] is None or (grads[1] == 0).all())


def test_opcheck():
    pos, tri, res = _random_scene(b=2, f=12, h=9, w=11, seed=2, dtype=torch.float32)
    pos.requires_grad_(True)
    torch.library.opcheck(torch.ops.occrecon.rasterize.default, (pos, tri, res[0], res[1], None, True))
    b, v, _ = pos.shape
    ranges = torch.tensor([[0, 6], [6, 6]], dtype=torch.int32)
    torch.library.opcheck(torch.ops.occrecon.rasterize.default, (pos[0].detach().requires_grad_(), tri, 9, 11,
                                                                 ranges, False))
    rast, db = dr.rasterize(None, pos.detach(), tri, res)
    attr = torch.rand(1, v, 3, requires_grad=True)
    r = rast.clone().requires_grad_(True)
    d = db.clone().requires_grad_(True)
    torch.library.opcheck(torch.ops.occrecon.interpolate.default, (attr, r, tri, d, [0, 2]))
    torch.library.opcheck(torch.ops.occrecon.interpolate.default, (attr, r, tri, None, []))
    g = torch.rand_like(rast)
    torch.library.opcheck(torch.ops.occrecon.rasterize_backward.default, (pos.detach(), tri, rast, g, g))
    torch.library.opcheck(torch.ops.occrecon.interpolate_backward.default,
                          (attr.detach(), rast, tri, db, [1], torch.rand(2, 9, 11, 3), torch.rand(2, 9, 11, 2)))


def test_torch_compile_render_function():
    pos, tri, res = _random_scene(b=2, f=30, h=16, w=16, seed=3, dtype=torch.float32)
    attr = torch.rand(1, pos.shape[1], 3)

    def render(p, a):
        rast, db = dr.rasterize(None, p, tri, res)
        out, _ = dr.interpolate(a, rast, tri)
        return (out * out).sum()

    compiled = torch.compile(render, fullgraph=True)
    p1, a1 = pos.clone().requires_grad_(), attr.clone().requires_grad_()
    p2, a2 = pos.clone().requires_grad_(), attr.clone().requires_grad_()
    l1, l2 = compiled(p1, a1), render(p2, a2)
    torch.testing.assert_close(l1, l2)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    torch.testing.assert_close(a1.grad, a2.grad)


def test_contexts_and_empty_inputs():
    with pytest.warns(DeprecationWarning):
        ctx = dr.RasterizeGLContext()
    pos, tri, res = _quad_scene(dtype=torch.float32)
    r1 = dr.rasterize(ctx, pos, tri, res)[0]
    r2 = dr.rasterize(dr.RasterizeCudaContext(device="cpu"), pos, tri, res)[0]
    assert torch.equal(r1, r2)
    # empty mesh, empty batch
    empty_tri = torch.zeros(0, 3, dtype=torch.int32)
    rast, db = dr.rasterize(None, pos, empty_tri, res)
    assert (rast == 0).all() and (db == 0).all()
    rast0, _ = dr.rasterize(None, pos[:0], tri, res)
    assert rast0.shape == (0, *res, 4)
    out, _ = dr.interpolate(torch.rand(4, 2), rast0, tri)
    assert out.shape == (0, *res, 2)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("case,exc,match", [
    ("pos_rank", ValueError, "pos must be"),
    ("pos_last_dim", ValueError, "pos must be"),
    ("pos_int", TypeError, "pos must be float32 or float64"),
    ("tri_dtype", TypeError, "tri must be int32"),
    ("tri_shape", ValueError, r"tri must be \[F, 3\]"),
    ("tri_range", ValueError, r"tri indices must lie in \[0, 4\)"),
    ("tri_negative", ValueError, r"tri indices must lie"),
    ("resolution_zero", ValueError, "resolution must be in"),
    ("resolution_huge", ValueError, "resolution must be in"),
    ("resolution_type", TypeError, "resolution must be"),
    ("range_missing", ValueError, "range mode"),
    ("range_dtype", ValueError, "ranges must be an int32 CPU tensor"),
    ("range_overflow", ValueError, "ranges must be non-negative"),
    ("ctx_type", TypeError, "glctx must be"),
    ("device", ValueError, "tri is on meta"),
])
def test_rasterize_bad_input(case, exc, match):
    pos, tri, res = _quad_scene(dtype=torch.float32)
    kwargs = {}
    ctx = None
    if case == "pos_rank":
        pos = pos[0, 0]
    elif case == "pos_last_dim":
        pos = pos[..., :3]
    elif case == "pos_int":
        pos = pos.int()
    elif case == "tri_dtype":
        tri = tri.long()
    elif case == "tri_shape":
        tri = tri[:, :2]
    elif case == "tri_range":
        tri = tri + 2
    elif case == "tri_negative":
        tri = tri - 1
    elif case == "resolution_zero":
        res = (0, 8)
    elif case == "resolution_huge":
        res = (8, 100000)
    elif case == "resolution_type":
        res = 8
    elif case == "range_missing":
        pos = pos[0]
    elif case == "range_dtype":
        pos = pos[0]
        kwargs["ranges"] = torch.tensor([[0, 2]])
    elif case == "range_overflow":
        pos = pos[0]
        kwargs["ranges"] = torch.tensor([[1, 2]], dtype=torch.int32)
    elif case == "ctx_type":
        ctx = "cuda"
    elif case == "device":
        tri = tri.to("meta")
    with pytest.raises(exc, match=match):
        dr.rasterize(ctx, pos, tri, res, **kwargs)


def test_interpolate_bad_input():
    pos, tri, res = _quad_scene(dtype=torch.float32)
    rast, db = dr.rasterize(None, pos, tri, res)
    attr = torch.rand(1, 4, 3)
    with pytest.raises(ValueError, match="attr must be"):
        dr.interpolate(attr[0, 0], rast, tri)
    with pytest.raises(ValueError, match="rast must be"):
        dr.interpolate(attr, rast[..., :3], tri)
    with pytest.raises(TypeError, match="rast dtype"):
        dr.interpolate(attr, rast.double(), tri)
    with pytest.raises(ValueError, match="attr batch"):
        dr.interpolate(torch.rand(3, 4, 3), rast, tri)
    with pytest.raises(ValueError, match="diff_attrs needs rast_db"):
        dr.interpolate(attr, rast, tri, diff_attrs="all")
    with pytest.raises(ValueError, match="out of range"):
        dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs=[3])
    with pytest.raises(ValueError, match="diff_attrs must be"):
        dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs="some")
    with pytest.raises(ValueError, match="tri indices"):
        dr.interpolate(torch.rand(1, 2, 3), rast, tri)


def test_corrupt_rast_ids_are_treated_as_empty():
    """A hand-made rast whose ids name no triangle never reads out of bounds: those pixels count as empty."""
    pos, tri, res = _quad_scene(dtype=torch.float32)
    rast, _ = dr.rasterize(None, pos, tri, res)
    bad = rast.clone()
    bad[..., 3] = torch.where(bad[..., 3] > 0, torch.full_like(bad[..., 3], 1e9), bad[..., 3])
    bad[0, 0, 0, 3] = float("nan")
    out, _ = dr.interpolate(torch.rand(1, 4, 3), bad, tri)
    assert (out == 0).all()
    g = torch.ops.occrecon.rasterize_backward(pos, tri, bad, torch.ones_like(bad), None)
    assert (g == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    pos, tri, res = _random_scene(b=2, f=500, h=48, w=64, seed=5, dtype=torch.float64)
    attr = torch.rand(1, pos.shape[1], 3, dtype=torch.float64)
    outs = []
    for dev in ("cpu", "cuda"):
        p = pos.detach().to(dev).requires_grad_()
        a = attr.detach().to(dev).requires_grad_()
        rast, db = dr.rasterize(None, p, tri.to(dev), res)
        out, da = dr.interpolate(a, rast, tri.to(dev), rast_db=db, diff_attrs="all")
        (out.sum() + da.sum()).backward()
        outs.append([x.detach().cpu() for x in (rast, db, out, da, p.grad, a.grad)])
    assert torch.equal(outs[0][0][..., 3], outs[1][0][..., 3])
    for x, y in zip(outs[0], outs[1]):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


def test_fragments_view():
    pos, tri, res = _random_scene(b=2, f=20, h=10, w=12, seed=11)
    rast, _ = dr.rasterize(None, pos, tri, res)
    frag = dr.fragments(rast)
    assert frag.pix_to_face.shape == (2, 10, 12, 1) and frag.pix_to_face.dtype == torch.int64
    assert frag.bary_coords.shape == (2, 10, 12, 1, 3) and frag.dists is None
    for b in range(2):
        for y in range(10):
            for x in range(12):
                r = rast[b, 9 - y, x]  # PyTorch3D row 0 is the top row
                f = int(r[3]) - 1
                assert frag.pix_to_face[b, y, x, 0] == f
                if f < 0:
                    assert frag.zbuf[b, y, x, 0] == -1 and (frag.bary_coords[b, y, x, 0] == -1).all()
                else:
                    torch.testing.assert_close(frag.bary_coords[b, y, x, 0],
                                               torch.stack([r[0], r[1], 1 - r[0] - r[1]]))
                    assert frag.zbuf[b, y, x, 0] == r[2]
    packed = dr.fragments(rast, faces_per_mesh=tri.shape[0]).pix_to_face
    covered = frag.pix_to_face >= 0
    assert torch.equal(packed[1][covered[1]], frag.pix_to_face[1][covered[1]] + tri.shape[0])
    assert torch.equal(packed[~covered], frag.pix_to_face[~covered])


# ------------------------------------------------------------------------------------------------ vs reference
@pytest.mark.parametrize("seed", range(6))
def test_random_soups_match_reference(seed):
    """Randomised scenes (fixed seeds): kernel vs the pure-PyTorch reference, values and gradients, float64."""
    from occrecon.ops import reference

    g = torch.Generator().manual_seed(100 + seed)
    b = int(torch.randint(1, 4, (1,), generator=g))
    f = int(torch.randint(1, 120, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(5, 40, (2,), generator=g))
    pos, tri, res = _random_scene(b=b, f=f, h=h, w=w, seed=1000 + seed)
    attr = torch.rand(b, pos.shape[1], 3, dtype=torch.float64, generator=g)
    wts = torch.rand(b, h, w, 3, dtype=torch.float64, generator=g)
    results = []
    for rast_fn, interp_fn in ((dr.rasterize, dr.interpolate), (None, None)):
        p = pos.clone().requires_grad_()
        a = attr.clone().requires_grad_()
        if rast_fn is None:
            rast, db = reference.rasterize(p, tri, res)
            out, da = reference.interpolate(a, rast, tri, rast_db=db, diff_attrs="all")
        else:
            rast, db = rast_fn(None, p, tri, res)
            out, da = interp_fn(a, rast, tri, rast_db=db, diff_attrs="all")
        ((out * wts).sum() + (da * 1e-2).sum()).backward()
        results.append((rast.detach(), db.detach(), out.detach(), da.detach(), p.grad, a.grad))
    (r1, db1, o1, da1, gp1, ga1), (r2, db2, o2, da2, gp2, ga2) = results
    assert torch.equal(r1[..., 3], r2[..., 3])
    for x, y in ((r1, r2), (db1, db2), (o1, o2), (da1, da2)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gp1, gp2, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ga1, ga2, rtol=1e-9, atol=1e-9)


def test_fragments_match_reference():
    from occrecon.ops import reference

    pos, tri, res = _random_scene(b=2, f=30, h=12, w=14, seed=21)
    rast, _ = dr.rasterize(None, pos, tri, res)
    ours, ref = dr.fragments(rast), reference.fragments(rast)
    for x, y in zip(ours[:3], ref[:3]):
        assert torch.equal(x, y)
    assert ours.dists is None and ref[3] is None


def test_sphere_silhouette_matches_closed_form():
    """A unit sphere at distance d seen with NDC focal f projects to a disc of radius f / sqrt(d^2 - 1)."""
    from occrecon.render.meshes import perspective_clip, uv_sphere

    v, tri = uv_sphere(129, 256)
    d, f, n = 3.0, 2.0, 256
    rast, _ = dr.rasterize(None, perspective_clip(v, distance=d, focal=f)[None], tri, (n, n))
    radius = f / math.sqrt(d * d - 1)
    disc = math.pi * radius ** 2 / 4 * n * n  # pixels inside the projected disc
    covered = int((rast[..., 3] > 0).sum())
    assert abs(covered - disc) < 2 * math.pi * radius / 2 * n  # within one pixel ring of the exact outline
    # the depth at the image centre is the sphere's front point z = d - 1 in view space
    near, far = 0.1, 100.0
    zc = d - 1
    ndc = ((far + near) / (far - near) * zc - 2 * far * near / (far - near)) / zc
    centre = rast[0, n // 2 - 1:n // 2 + 1, n // 2 - 1:n // 2 + 1, 2]
    assert (centre - ndc).abs().max() < 1e-3


def test_example_renders_png(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_mesh", Path(__file__).parents[1] / "examples" /
                                                  "render_mesh.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main([str(tmp_path / "mesh.png"), "--size", "96"])
    from PIL import Image

    img = np.asarray(Image.open(out))
    assert img.shape == (96, 96, 3)
    assert (img != 255).any(axis=-1).mean() > 0.2  # the face covers a good part of the frame


def test_full_pipeline_with_antialias_gives_silhouette_gradients():
    """rasterize -> interpolate -> antialias on our own rasterization: a silhouette-only loss (a white square on
    black) gets a position gradient that matches finite differences of the whole pipeline."""
    n = 32
    corners = torch.tensor([[-0.43, -0.41, 0.0, 1.0], [0.39, -0.41, 0.0, 1.0], [0.39, 0.45, 0.0, 1.0],
                            [-0.43, 0.45, 0.0, 1.0]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    right = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)

    def render(shift):
        p = (corners + shift * right)[None]
        rast, _ = dr.rasterize(None, p, tri, (n, n))
        mask, _ = dr.interpolate(torch.ones(4, 1, dtype=torch.float64), rast, tri)  # constant inside
        return dr.antialias(mask, rast, p, tri)

    target = render(torch.tensor(0.3 * 2 / n, dtype=torch.float64)).detach()  # 0.3 px to the right

    def loss(shift):
        return ((render(shift) - target) ** 2).sum()

    shift = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    loss(shift).backward()
    h = 0.05 * 2 / n  # 0.05 px: the edges stay between the same pixel centres
    fd = (loss(torch.tensor(h, dtype=torch.float64)) - loss(torch.tensor(-h, dtype=torch.float64))) / (2 * h)
    assert shift.grad < 0
    assert torch.isclose(shift.grad, fd, rtol=0.02)
    # without antialias the mask is piecewise constant: no gradient reaches the positions
    p = corners[None].clone().requires_grad_(True)
    rast, _ = dr.rasterize(None, p, tri, (n, n))
    mask, _ = dr.interpolate(torch.ones(4, 1, dtype=torch.float64), rast, tri)
    ((mask - target) ** 2).sum().backward()
    assert (p.grad == 0).all()
