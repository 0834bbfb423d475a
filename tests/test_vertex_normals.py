"""vertex_normals kernel: closed forms, the pure-PyTorch reference, gradients, opcheck, determinism, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from occrecon.ops import reference as ref
from occrecon.ops import vertex_normals


def _random_mesh(b: int, v: int, f: int, dtype, seed: int = 0, isolated: int = 0):
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(b, v, 3, generator=g, dtype=dtype)
    # triangles with three distinct vertices among the first v - isolated (the rest stay isolated)
    used = v - isolated
    tri = torch.stack([torch.randperm(used, generator=g)[:3] for _ in range(f)]).to(torch.int32)
    return verts, tri


def test_closed_form_tetrahedron_corner():
    # corner at the origin of three right triangles in the coordinate planes, outward windings
    verts = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 4]], dtype=torch.float64)
    tri = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2]], dtype=torch.int32)
    n = vertex_normals(verts, tri)
    # face vectors: (0,0,-6), (0,-8,0), (-12,0,0): vertex 0 sums all three
    expect = -torch.tensor([12.0, 8.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(n[0], expect / expect.norm(), rtol=0, atol=1e-15)
    torch.testing.assert_close(n[1], -torch.tensor([0.0, 8, 6], dtype=torch.float64) / 10, rtol=0, atol=1e-15)
    assert torch.allclose(n.norm(dim=-1), torch.ones(4, dtype=torch.float64))


def test_sphere_normals_point_outwards():
    # an octahedron subdivided: normals of a convex, centred mesh point along the vertex direction roughly
    verts = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    tri = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]],
                       dtype=torch.int32)
    n = vertex_normals(verts, tri)
    torch.testing.assert_close(n, verts, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,v,f,isolated", [(1, 10, 12, 0), (3, 50, 80, 5), (2, 400, 1500, 17)])
def test_matches_reference_forward_and_backward(dtype, b, v, f, isolated):
    verts, tri = _random_mesh(b, v, f, dtype, seed=v, isolated=isolated)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    a = verts.clone().requires_grad_()
    r = verts.clone().requires_grad_()
    na, nr = vertex_normals(a, tri), ref.vertex_normals(r, tri)
    torch.testing.assert_close(na, nr, **tol)
    assert torch.equal(na[:, v - isolated:], torch.zeros_like(na[:, v - isolated:]))  # isolated: zero normal
    w = torch.randn(na.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (na * w).sum().backward()
    (nr * w).sum().backward()
    torch.testing.assert_close(a.grad, r.grad, **(tol if dtype == torch.float64 else dict(rtol=1e-3, atol=1e-3)))


def test_unbatched_and_int64_tri():
    verts, tri = _random_mesh(1, 30, 40, torch.float64, seed=4)
    n2 = vertex_normals(verts[0], tri.long())
    assert n2.shape == (30, 3)
    torch.testing.assert_close(n2, ref.vertex_normals(verts[0], tri), rtol=1e-12, atol=1e-12)


def test_gradcheck_float64():
    verts, tri = _random_mesh(2, 12, 16, torch.float64, seed=7, isolated=2)
    x = verts.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: vertex_normals(p, tri), (x,))


def test_gradcheck_through_the_clamp():
    # a vertex whose face vectors cancel exactly (two opposite copies of one triangle): norm 0 < eps
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [0, 2, 1]], dtype=torch.int32)
    n = vertex_normals(verts, tri, eps=1e-3)
    assert torch.equal(n, torch.zeros_like(n))
    g = torch.randn(1, 3, 3, dtype=torch.float64)
    (n * g).sum().backward()
    r = verts.detach().clone().requires_grad_()
    (ref.vertex_normals(r, tri, eps=1e-3) * g).sum().backward()
    torch.testing.assert_close(verts.grad, r.grad, rtol=0, atol=1e-12)


def test_opcheck():
    verts, tri = _random_mesh(2, 20, 30, torch.float32, seed=2)
    torch.library.opcheck(torch.ops.occrecon.vertex_normals.default, (verts, tri, 1e-12))
    torch.library.opcheck(torch.ops.occrecon.vertex_normals.default, (verts.clone().requires_grad_(), tri, 1e-12))
    n, r = torch.ops.occrecon.vertex_normals(verts, tri, 1e-12)
    torch.library.opcheck(torch.ops.occrecon.vertex_normals_backward.default, (torch.randn_like(n), verts, tri, n, r,
                                                                                1e-12))


def test_deterministic_for_any_thread_count():
    verts, tri = _random_mesh(4, 3000, 9000, torch.float32, seed=5)
    w = torch.randn(4, 3000, 3, generator=torch.Generator().manual_seed(3))
    old = torch.get_num_threads()
    out = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            x = verts.clone().requires_grad_()
            n = vertex_normals(x, tri)
            (n * w).sum().backward()
            out.append((n, x.grad))
    finally:
        torch.set_num_threads(old)
    for n, g in out[1:]:
        assert torch.equal(n, out[0][0]) and torch.equal(g, out[0][1])


def test_empty_inputs():
    assert vertex_normals(torch.zeros(0, 5, 3), torch.zeros(0, 3, dtype=torch.int32)).shape == (0, 5, 3)
    n = vertex_normals(torch.randn(2, 5, 3), torch.zeros(0, 3, dtype=torch.int32))
    assert torch.equal(n, torch.zeros(2, 5, 3))


def test_direct_op_call_skips_out_of_range_triangles_safely():
    # the Python wrapper refuses them; the C++ op checks them too (no read outside the vertex array)
    verts = torch.randn(1, 4, 3)
    bad = torch.tensor([[0, 1, 2], [0, 1, 10 ** 7]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="tri indices"):
        torch.ops.occrecon.vertex_normals(verts, bad, 1e-12)
    with pytest.raises(RuntimeError, match="norms"):
        torch.ops.occrecon.vertex_normals_backward(torch.randn(1, 4, 3), verts, bad[:1], torch.randn(1, 4, 3),
                                                   torch.randn(1, 5), 1e-12)


def test_bad_input_names_the_argument():
    v = torch.randn(1, 4, 3)
    t = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(TypeError, match="vertices"):
        vertex_normals(v.numpy(), t)
    with pytest.raises(TypeError, match="vertices"):
        vertex_normals(v.long(), t)
    with pytest.raises(ValueError, match="vertices"):
        vertex_normals(torch.randn(1, 4, 2), t)
    with pytest.raises(ValueError, match="tri"):
        vertex_normals(v, t[0])
    with pytest.raises(TypeError, match="tri"):
        vertex_normals(v, t.float())
    with pytest.raises(ValueError, match=r"tri indices must lie in \[0, 4\)"):
        vertex_normals(v, torch.tensor([[0, 1, 4]]))
    with pytest.raises(ValueError, match=r"tri indices"):
        vertex_normals(v, torch.tensor([[0, -1, 2]]))
    with pytest.raises(ValueError, match="eps"):
        vertex_normals(v, t, eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        vertex_normals(v, t, eps=math.inf)


def test_torch_compile_matches_eager():
    verts, tri = _random_mesh(2, 40, 60, torch.float32, seed=8)

    def f(x):
        return (vertex_normals(x, tri) * x).sum(-1)

    compiled = torch.compile(f, backend="inductor", fullgraph=True)
    a, c = verts.clone().requires_grad_(), verts.clone().requires_grad_()
    out_e, out_c = f(a), compiled(c)
    torch.testing.assert_close(out_c, out_e)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    torch.testing.assert_close(c.grad, a.grad)
