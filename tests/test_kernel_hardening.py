"""Hardening of the kernels and ops (issue 12): memory safety whatever the Python checks say, every argument of every
registered op checked, bit-exact triangle ids beyond 2^24, fragments of hand-made ids, first-order-only gradients
that say so, range caches that never keep a tensor alive, and the reference neighbour_min's index."""
from __future__ import annotations

import gc
import struct
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch

import occrecon.render as dr
from occrecon.ops import _checks, neighbour_min, reference, sh_shade, vertex_normals
from occrecon.ops._autograd import SecondOrderError
from occrecon.ops.triangle_id import MAX_FLOAT_TRIANGLES, encode_triangle_id, triangle_index


def _two_triangles(dtype=torch.float32):
    pos = torch.tensor([[[-0.9, -0.9, 0.1, 1], [0.9, -0.9, 0.1, 1], [-0.9, 0.9, 0.1, 1], [0.9, 0.9, 0.2, 1]]],
                       dtype=dtype)
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
    return pos, tri


# ------------------------------------------------------------------- item 1: the kernels never read out of bounds
def test_issue_reproducer_does_not_crash():
    """The reported SIGSEGV: a write through ``tri.data`` does not bump the version counter, so the memoised range
    check is stale; run in a child so that a regression fails this test instead of killing the test run."""
    code = textwrap.dedent("""
        import torch, occrecon.render as dr
        pos = torch.tensor([[[-1., -1, 0, 1], [1, -1, 0, 1], [0, 1, 0, 1]]])
        tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
        rast, _ = dr.rasterize(None, pos, tri, (8, 8)); attr = torch.rand(1, 3, 3)
        dr.interpolate(attr, rast, tri); tri.data[0, 0] = 10**7
        out, _ = dr.interpolate(attr, rast, tri)
        assert float(out.abs().sum()) == 0.0
        tri.data[0, 0] = -5
        rast2, _ = dr.rasterize(None, pos, tri, (8, 8))
        assert float(rast2.abs().sum()) == 0.0
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.returncode, res.stderr[-2000:])


@pytest.mark.parametrize("bad", [10 ** 7, -1, 4, 2 ** 31 - 1, -(2 ** 31)])
def test_stale_range_cache_skips_the_triangle_in_every_kernel(bad):
    """After a write the cache cannot see, a triangle naming a vertex outside [0, V) draws nothing, interpolates to
    zero and gets no gradient, in forward and backward: the result equals the mesh without that triangle."""
    pos, tri = _two_triangles(torch.float64)
    pos.requires_grad_(True)
    attr = torch.rand(1, 4, 3, dtype=torch.float64, requires_grad=True)
    rast0, db0 = (t.detach() for t in dr.rasterize(None, pos, tri, (16, 16)))
    dr.interpolate(attr, rast0, tri, rast_db=db0, diff_attrs="all")  # caches the range of tri
    tri.data[1, 1] = bad  # invisible to the version counter
    rast, db = dr.rasterize(None, pos, tri, (16, 16))
    only_first, db_first = dr.rasterize(None, pos, tri[:1].clone(), (16, 16))
    assert torch.equal(rast, only_first) and torch.equal(db, db_first)
    # interpolate over the pixels that name the broken triangle (rast0) gives zeros there
    out, da = dr.interpolate(attr, rast0, tri, rast_db=db0, diff_attrs="all")
    second = rast0[..., 3] == 2
    assert second.any() and (out[second] == 0).all() and (da[second] == 0).all()
    ref, ref_da = reference.interpolate(attr, rast0, tri, rast_db=db0, diff_attrs="all")
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(da, ref_da)
    (out.sum() + da.sum() + rast[..., :2].sum()).backward()
    assert torch.isfinite(pos.grad).all() and torch.isfinite(attr.grad).all()
    # the gradient equals that of the one-triangle mesh (pixels of the broken triangle contribute nothing)
    pos2 = pos.detach().clone().requires_grad_(True)
    attr2 = attr.detach().clone().requires_grad_(True)
    keep = ~second[..., None]
    out2, da2 = dr.interpolate(attr2, rast0 * keep, tri[:1].clone(), rast_db=db0 * keep, diff_attrs="all")
    r2, _ = dr.rasterize(None, pos2, tri[:1].clone(), (16, 16))
    (out2.sum() + da2.sum() + r2[..., :2].sum()).backward()
    torch.testing.assert_close(pos.grad, pos2.grad)
    torch.testing.assert_close(attr.grad, attr2.grad)


def test_stale_cache_vertex_normals_and_antialias_stay_in_bounds():
    pos, tri = _two_triangles()
    verts = pos[..., :3].contiguous()
    vertex_normals(verts, tri)
    rast, _ = dr.rasterize(None, pos, tri, (16, 16))
    color = torch.rand(1, 16, 16, 3)
    topo = dr.antialias_construct_topology_hash(tri)
    tri.data[0, 2] = 10 ** 6
    n = vertex_normals(verts, tri)
    assert torch.isfinite(n).all()
    out = dr.antialias(color, rast, pos, tri, topology_hash=topo)
    assert torch.isfinite(out).all()


def test_direct_op_calls_with_out_of_range_tri_raise():
    pos, tri = _two_triangles()
    bad = tri.clone()
    bad[0, 0] = 4
    with pytest.raises(RuntimeError, match=r"tri indices must lie in \[0, 4\)"):
        torch.ops.occrecon.rasterize(pos, bad, 8, 8, None, True)
    rast, db = dr.rasterize(None, pos, tri, (8, 8))
    with pytest.raises(RuntimeError, match="tri indices"):
        torch.ops.occrecon.interpolate(torch.rand(1, 4, 2), rast, bad, None, [])


# ------------------------------------------------------------------- item 2: every argument of every op is checked
def _interp_args(diff=(0, 1)):
    pos, tri = _two_triangles()
    rast, db = dr.rasterize(None, pos, tri, (6, 5))
    attr = torch.rand(1, 4, 2)
    return attr, rast, tri, db, list(diff)


@pytest.mark.parametrize("shape", [(2, 6, 5, 4), (1, 7, 5, 4), (1, 6, 9, 4), (1, 6, 5, 2), (6, 5, 4)])
def test_interpolate_backward_checks_grad_da(shape):
    attr, rast, tri, db, diff = _interp_args()
    grad_out = torch.rand(1, 6, 5, 2)
    with pytest.raises(RuntimeError, match="grad_da must be"):
        torch.ops.occrecon.interpolate_backward(attr, rast, tri, db, diff, grad_out, torch.rand(shape))


@pytest.mark.parametrize("shape", [(2, 6, 5, 2), (1, 6, 4, 2), (1, 6, 5, 3)])
def test_interpolate_backward_checks_grad_out(shape):
    attr, rast, tri, db, diff = _interp_args()
    with pytest.raises(RuntimeError, match="grad_out must be"):
        torch.ops.occrecon.interpolate_backward(attr, rast, tri, db, diff, torch.rand(shape), None)


def test_backward_ops_check_gradient_dtypes():
    attr, rast, tri, db, diff = _interp_args()
    with pytest.raises(RuntimeError, match="grad_out must be float32 or float64"):
        torch.ops.occrecon.interpolate_backward(attr, rast, tri, db, diff, torch.ones(1, 6, 5, 2, dtype=torch.int32),
                                                None)
    with pytest.raises(RuntimeError, match="grad_da must be float32 or float64"):
        torch.ops.occrecon.interpolate_backward(attr, rast, tri, db, diff, torch.rand(1, 6, 5, 2),
                                                torch.ones(1, 6, 5, 4, dtype=torch.bool))
    pos, tri = _two_triangles()
    with pytest.raises(RuntimeError, match="grad_db must be float32 or float64"):
        torch.ops.occrecon.rasterize_backward(pos, tri, rast, torch.rand_like(rast),
                                              torch.ones(rast.shape, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="grad_db must match rast"):
        torch.ops.occrecon.rasterize_backward(pos, tri, rast, torch.rand_like(rast), torch.rand(1, 6, 5, 3))


# ------------------------------------------------------------------- item 5: triangle ids bit-exact beyond 2^24
def _nvdiffrast_float(one_based: int) -> float:
    """nvdiffrast's documented encoding, written independently with struct."""
    if one_based <= 2 ** 24:
        return float(one_based)
    return struct.unpack("<f", struct.pack("<I", 0x4A800000 + one_based))[0]


@pytest.mark.parametrize("index", [0, 1, 2 ** 24 - 2, 2 ** 24 - 1, 2 ** 24, 2 ** 24 + 1, 2 ** 25 + 3, 10 ** 8,
                                   MAX_FLOAT_TRIANGLES - 1])
def test_triangle_id_encoding_matches_nvdiffrast(index):
    enc = encode_triangle_id(torch.tensor([index]))
    assert enc.dtype == torch.float32
    assert struct.pack("<f", float(enc[0])) == struct.pack("<f", _nvdiffrast_float(index + 1))
    assert int(triangle_index(enc)[0]) == index
    assert int(triangle_index(encode_triangle_id(torch.tensor([index]), torch.float64))[0]) == index


def test_triangle_ids_are_unique_and_monotone_around_2_24():
    idx = torch.arange(2 ** 24 - 1000, 2 ** 24 + 1000)
    enc = encode_triangle_id(idx)
    assert torch.equal(triangle_index(enc), idx)
    assert (enc[1:] > enc[:-1]).all()


def test_more_than_2_24_triangles_get_exact_ids():
    """Range mode draws two triangles at indices beyond 2^24 of a 2^24 + 8 triangle mesh (201 MB of int32 zeros:
    degenerate triangles that draw nothing): rast holds nvdiffrast's bit pattern, interpolate and fragments read
    the right triangle, and the gradient reaches its vertices."""
    n = 2 ** 24 + 8
    tri = torch.zeros((n, 3), dtype=torch.int32)
    far = [n - 5, n - 2]
    tri[far[0]] = torch.tensor([0, 1, 2], dtype=torch.int32)
    tri[far[1]] = torch.tensor([1, 3, 2], dtype=torch.int32)
    pos = torch.tensor([[-0.9, -0.9, 0.1, 1], [0.9, -0.9, 0.1, 1], [-0.9, 0.9, 0.1, 1], [0.9, 0.9, 0.2, 1]],
                       requires_grad=True)
    ranges = torch.tensor([[n - 6, 6]], dtype=torch.int32)
    rast, db = dr.rasterize(None, pos, tri, (12, 12), ranges=ranges)
    ids = triangle_index(rast[..., 3])
    assert set(ids.unique().tolist()) == {-1, *far} or set(ids.unique().tolist()) == set(far)
    px = rast.detach()[0, 2, 2, 3]  # bottom-left: the first triangle
    assert struct.pack("<f", float(px)) == struct.pack("<f", _nvdiffrast_float(far[0] + 1))
    attr = torch.arange(4, dtype=torch.float32).view(4, 1)  # attribute = vertex number
    out, _ = dr.interpolate(attr, rast, tri)
    u, v = rast[..., 0], rast[..., 1]
    first = ids == far[0]
    torch.testing.assert_close(out[..., 0][first], (u * 0 + v * 1 + (1 - u - v) * 2)[first])
    frag = dr.fragments(rast)
    assert torch.equal(frag.pix_to_face[..., 0], ids.flip(1))
    rast[..., :2].sum().backward()
    assert pos.grad[:, [0, 1, 3]].abs().sum() > 0


def test_too_many_triangles_is_a_clear_error():
    pos, _ = _two_triangles()
    huge = torch.zeros((1, 3), dtype=torch.int32).expand(MAX_FLOAT_TRIANGLES + 1, 3)
    with pytest.raises(ValueError, match="triangle ids hold at most 889192446"):
        dr.rasterize(None, pos, huge, (4, 4))


# ------------------------------------------------------------------- item 6: fragments of hand-made ids
def test_fragments_of_invalid_ids_are_minus_one():
    rast = torch.zeros(1, 1, 8, 4)
    rast[0, 0, :, 3] = torch.tensor([-1.0, -2.5, float("nan"), float("inf"), float("-inf"), 0.5, 3.0, 7.9])
    frag = dr.fragments(rast)
    assert frag.pix_to_face[0, 0, :, 0].tolist() == [-1, -1, -1, -1, -1, -1, 2, 6]
    assert (frag.zbuf[0, 0, :6] == -1).all() and (frag.bary_coords[0, 0, :6] == -1).all()
    r64 = rast.double()
    assert dr.fragments(r64).pix_to_face[0, 0, :, 0].tolist() == [-1, -1, -1, -1, -1, -1, 2, 6]
    with pytest.raises(ValueError, match="faces_per_mesh"):
        dr.fragments(rast, faces_per_mesh=0)
    with pytest.raises(TypeError, match="rast"):
        dr.fragments(rast.long())


# ------------------------------------------------------------------- item 8: second-order gradients raise
def _double_backward_cases():
    def rasterize(x):
        return dr.rasterize(None, x, _two_triangles()[1], (8, 8))[0][..., :2]

    def interpolate(x):
        pos, tri = _two_triangles(torch.float64)
        rast, _ = dr.rasterize(None, pos, tri, (8, 8))
        return dr.interpolate(x, rast, tri)[0]

    def antialias(x):
        pos, tri = _two_triangles(torch.float64)
        rast, _ = dr.rasterize(None, pos.float(), tri, (8, 8))
        return dr.antialias(x, rast, pos.float().to(x.dtype), tri)

    g = torch.Generator().manual_seed(0)
    other = torch.rand(1, 3, 6, 6, dtype=torch.float64, generator=g)
    normal = torch.nn.functional.normalize(torch.rand(1, 5, 3, dtype=torch.float64, generator=g), dim=-1)
    gamma = torch.rand(1, 9, 3, dtype=torch.float64, generator=g)

    def nmin(x):
        return neighbour_min(x, other, 3)[0]

    def shade(x):
        return sh_shade(normal, x, gamma)

    def normals(x):
        return vertex_normals(x, _two_triangles()[1])

    pos64 = _two_triangles(torch.float64)[0]
    return [("rasterize", rasterize, pos64), ("interpolate", interpolate, torch.rand(1, 4, 2, dtype=torch.float64)),
            ("antialias", antialias, torch.rand(1, 8, 8, 3, dtype=torch.float64)),
            ("neighbour_min", nmin, torch.rand(1, 3, 6, 6, dtype=torch.float64)),
            ("sh_shade", shade, torch.rand(1, 5, 3, dtype=torch.float64)),
            ("vertex_normals", normals, pos64[..., :3].contiguous())]


@pytest.mark.parametrize("name,fn,x", _double_backward_cases(), ids=lambda c: c if isinstance(c, str) else "")
def test_double_backward_raises_a_clear_error(name, fn, x):
    x = x.clone().requires_grad_(True)
    first, = torch.autograd.grad(fn(x).pow(2).sum(), x)
    g, = torch.autograd.grad(fn(x).pow(2).sum(), x, create_graph=True)
    torch.testing.assert_close(g.detach(), first)  # first order unchanged under create_graph=True
    assert g.requires_grad
    with pytest.raises(SecondOrderError, match=f"occrecon.{name} has first-order gradients only"):
        torch.autograd.grad(g.sum(), x)
    with pytest.raises(SecondOrderError, match=name):
        g.sum().backward()


def test_create_graph_elsewhere_in_the_graph_still_works():
    """A gradient penalty on a part of the graph that does not differentiate through the op's gradient."""
    pos, tri = _two_triangles(torch.float64)
    w = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    rast, _ = dr.rasterize(None, pos, tri, (8, 8))
    out, _ = dr.interpolate(torch.ones(1, 4, 2, dtype=torch.float64), rast, tri)
    y = (out * (w.sum() ** 2)).sum()
    gw, = torch.autograd.grad(y, w, create_graph=True)
    gw.sum().backward()  # d/dw of (sum(out) * 2 * sum(w)) summed over w: 2 * 8 * sum(out)
    torch.testing.assert_close(w.grad, torch.full_like(w, 16 * float(out.sum())))


# ------------------------------------------------------------------- item 10: caches keep no tensor alive
def test_range_caches_hold_no_strong_reference():
    pos, _ = _two_triangles()
    refs = []
    for _ in range(3):
        tri = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
        dr.rasterize(None, pos, tri, (8, 8))  # Python-side and C++-side range checks
        torch.ops.occrecon.rasterize(pos, tri, 8, 8, None, True)
        refs.append(weakref.ref(tri))
        del tri
    gc.collect()
    assert all(r() is None for r in refs)
    # and the cache still answers (and sees in-place writes) for live tensors
    t = torch.tensor([[0, 5, 2]], dtype=torch.int32)
    assert _checks.index_range(t) == (0, 5)
    t[0, 1] = 9
    assert _checks.index_range(t) == (0, 9)


# ------------------------------------------------------------------- item 11: reference neighbour_min's index
def test_reference_neighbour_min_index_stays_inside_when_all_candidates_are_inf():
    target = torch.zeros(2, 3, 5, 6)
    render = torch.full((2, 3, 5, 6), float("inf"))
    region = torch.rand(2, 5, 6) > 0.3
    for reg in (None, region):
        d_ref, i_ref = reference.neighbour_min(target, render, 3, region=reg)
        d, i = neighbour_min(target, render, 3, region=reg)
        assert torch.equal(i_ref.to(torch.int32), i)
        # every index names a window cell inside the image (and the region)
        ys, xs = torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij")
        ok = i_ref >= 0
        qy, qx = ys + i_ref // 3 - 1, xs + i_ref % 3 - 1
        assert ((qy >= 0) & (qy < 5) & (qx >= 0) & (qx < 6))[ok].all()
        if reg is not None:
            b = torch.arange(2).view(2, 1, 1).expand_as(i_ref)
            assert reg[b[ok], qy[ok], qx[ok]].all()


# ------------------------------------------------------------------- fuzz finding F1: eps that underflows
@pytest.mark.parametrize("eps", [1e-300, 1e-45, 1e39])
def test_vertex_normals_eps_must_be_normal_in_the_dtype(eps):
    v = torch.rand(1, 4, 3)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(ValueError, match="not a normal torch.float32 number"):
        vertex_normals(v, tri, eps=eps)
    with pytest.raises(RuntimeError, match="not a normal Float number"):
        torch.ops.occrecon.vertex_normals(v, tri, eps)
    n = vertex_normals(v.double(), tri, eps=eps if eps > 1e-300 else 1e-300)  # fine in float64
    assert torch.isfinite(n).all() and torch.equal(n[0, 3], torch.zeros(3, dtype=torch.float64))
