"""antialias: hand-computed blends and gradients, the pure-PyTorch reference, finite differences, the golden
nvdiffrast-convention scenes, topology, opcheck, determinism, torch.compile, bad and garbage input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon  # noqa: F401  (registers torch.ops.occrecon)
from occrecon import assets
from occrecon.ops import reference_antialias as ref
from occrecon.render.antialias import antialias, antialias_construct_topology_hash

_shared = assets.shared_dir(required=False)
GOLDEN = Path(_shared) / "golden" if _shared is not None else Path("/nonexistent")
needs_golden = pytest.mark.skipif(not (GOLDEN / "g3_icosphere.npz").exists(), reason="golden scenes not present")
SCENES = ["g1_tiny_single", "g1_tiny_overlap", "g2_soup_s0", "g3_icosphere"]


def _golden(name):
    d = np.load(GOLDEN / f"{name}.npz")
    return (torch.from_numpy(d["out"]), torch.from_numpy(d["rast"]), torch.from_numpy(d["pos"]),
            torch.from_numpy(d["tri"]))


def _rasterize(pos, tri, h, w):
    """Point-sampled (0, 0, z/w, id + 1) at the pixel centres, nearest z/w wins; a test helper (no fill rule)."""
    pos = pos.double()
    yc = (torch.arange(h, dtype=torch.float64) + 0.5).view(1, h, 1)
    xc = (torch.arange(w, dtype=torch.float64) + 0.5).view(1, 1, w)
    rast = torch.zeros(pos.shape[0], h, w, 4)
    depth = torch.full((pos.shape[0], h, w), float("inf"), dtype=torch.float64)
    for f, corners in enumerate(tri.tolist()):
        q = pos[:, corners]
        sx = ((q[..., 0] / q[..., 3] + 1) * w / 2)[..., None, None]
        sy = ((q[..., 1] / q[..., 3] + 1) * h / 2)[..., None, None]
        sz = (q[..., 2] / q[..., 3])[..., None, None]
        edge = [(sx[:, j] - xc) * (sy[:, k] - yc) - (sx[:, k] - xc) * (sy[:, j] - yc) for j, k in ((1, 2), (2, 0), (0, 1))]
        area = edge[0] + edge[1] + edge[2]
        lam = [e / area for e in edge]
        z = lam[0] * sz[:, 0] + lam[1] * sz[:, 1] + lam[2] * sz[:, 2]
        win = (lam[0] >= 0) & (lam[1] >= 0) & (lam[2] >= 0) & (z < depth)
        depth = torch.where(win, z, depth)
        rast[..., 2] = torch.where(win, z.float(), rast[..., 2])
        rast[..., 3] = torch.where(win, float(f + 1), rast[..., 3])
    return rast


def _clip(points, h, w, z=0.5):
    """Pixel coordinates (X, Y) -> clip-space (x, y, z, 1) rows, so a vertex lands exactly at (X, Y)."""
    p = torch.tensor(points, dtype=torch.float64)
    return torch.stack([p[:, 0] / (w / 2) - 1, p[:, 1] / (h / 2) - 1, torch.full_like(p[:, 0], z),
                        torch.ones_like(p[:, 0])], 1)


def _touches_change(ids, mask_fn=None):
    """Pixels with a 4-neighbour of another id (optionally: where mask_fn(pixel id, neighbour id) holds)."""
    out = torch.zeros_like(ids, dtype=torch.bool)
    for a, b, sa, sb in (((slice(None), slice(None), slice(1, None)), (slice(None), slice(None), slice(None, -1)), 0, 0),
                         ((slice(None), slice(1, None)), (slice(None), slice(None, -1)), 0, 0)):
        ia, ib = ids[a], ids[b]
        diff = ia != ib if mask_fn is None else (ia != ib) & (mask_fn(ia, ib) | mask_fn(ib, ia))
        out[a] |= diff
        out[b] |= diff
    return out


# ---------------------------------------------------------------------------------------------- hand-computed
@pytest.mark.parametrize("edge_at,side,blended_col,want", [
    (3.8, "left", 3, 0.8),    # triangle covers X < 3.8: column 3 ([3, 4]) is 80 % covered
    (3.2, "left", 3, 0.2),    # X < 3.2: column 3 is 20 % covered (the empty pixel is blended)
    (3.8, "right", 3, 0.2),   # X > 3.8: column 3 is 20 % covered (the triangle is pixel1)
    (3.2, "right", 3, 0.8),
])
@pytest.mark.parametrize("vertical_segments", [False, True])
def test_hand_computed_blend_and_gradient(edge_at, side, blended_col, want, vertical_segments):
    """One straight edge between two pixel centres: the pixel it cuts takes the covered fraction of the
    triangle's colour; the position gradient is d(out)/d(edge position) split linearly between the vertices."""
    h, w = 6, 8
    far = -30.0 if side == "left" else 40.0
    pts = [(edge_at, -10.0), (edge_at, 20.0), (far, 5.0)]   # a vertical edge at X = edge_at
    if vertical_segments:                                    # transpose the scene: horizontal edge at Y = edge_at
        pts = [(y, x) for x, y in pts]
        h, w = w, h
    pos = _clip(pts, h, w)[None]
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = _rasterize(pos, tri, h, w)
    color = (rast[..., 3:] > 0).double()                      # triangle = 1, background = 0, one channel
    out = antialias(color, rast, pos, tri)
    blended = out[0, blended_col, :, 0] if vertical_segments else out[0, :, blended_col, 0]
    torch.testing.assert_close(blended, torch.full_like(blended, want), rtol=0, atol=1e-12)
    changed = (out != color)[0, ..., 0]
    assert changed.sum() == (w if vertical_segments else h)  # one pixel per row (column) and nothing else

    # Gradient of one blended pixel: out = covered fraction = |edge - pixel start| -> d out / d X_edge = -+1.
    row = 2
    idx = (0, blended_col, row, 0) if vertical_segments else (0, row, blended_col, 0)
    p = pos.clone().requires_grad_(True)
    c = color.clone().requires_grad_(True)
    antialias(c, rast, p, tri)[idx].backward()
    sign = 1.0 if side == "left" else -1.0               # more coverage as the edge moves right (left tri)
    t = (row + 0.5 - (-10.0)) / 30.0                      # where the crossing sits between vertex 0 and 1
    reg = 30.0 / (30.0 + 1e-3)                            # nvdiffrast's 1 / (dy + 1e-3) regulariser
    scale = (h if vertical_segments else w) / 2           # d X / d x_clip at w = 1
    axis = 1 if vertical_segments else 0
    want_g = torch.zeros(1, 3, 4, dtype=torch.float64)
    want_g[0, 0, axis] = sign * (1 - t) * scale * reg
    want_g[0, 1, axis] = sign * t * scale * reg
    want_g[0, :2, 3] = -pos[0, :2, axis] * want_g[0, :2, axis]  # d/dw of x/w at w = 1
    torch.testing.assert_close(p.grad[..., axis], want_g[..., axis], rtol=1e-12, atol=1e-12)
    # across the edge the regulariser leaves a trace of order |X| * 1e-3 / dy^2 (dy = 30 px) in y and w
    torch.testing.assert_close(p.grad, want_g, rtol=0, atol=2e-5)
    # colour gradient: the blended pixel is 0.8 * itself + 0.2 * its neighbour across the edge
    other_col = 4 if edge_at == 3.8 else 2
    other = (0, other_col, row, 0) if vertical_segments else (0, row, other_col, 0)
    assert c.grad[idx].item() == pytest.approx(0.8, abs=1e-12)
    assert c.grad[other].item() == pytest.approx(0.2, abs=1e-12)
    assert (c.grad != 0).sum() == 2


def test_pos_gradient_boost_scales_only_pos():
    pos = _clip([(3.3, -10.0), (3.3, 20.0), (-30.0, 5.0)], 6, 8)[None]
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = _rasterize(pos, tri, 6, 8)
    color = torch.rand(1, 6, 8, 3, dtype=torch.float64)
    grads = []
    for boost in (1.0, 2.5):
        p, c = pos.clone().requires_grad_(True), color.clone().requires_grad_(True)
        antialias(c, rast, p, tri, pos_gradient_boost=boost).sum().backward()
        grads.append((c.grad, p.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert grads[0][1].abs().sum() > 0
    torch.testing.assert_close(grads[1][1], 2.5 * grads[0][1], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- no edges, topology use
def test_no_edge_images_are_returned_unchanged():
    pos = _clip([(-5.0, -5.0), (30.0, -5.0), (-5.0, 30.0)], 8, 8)[None]  # covers the whole 8 x 8 image
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    color = torch.rand(1, 8, 8, 3, dtype=torch.float64)
    for rast in (_rasterize(pos, tri, 8, 8), torch.zeros(1, 8, 8, 4)):
        assert rast[..., 3].unique().numel() == 1
        c, p = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
        out = antialias(c, rast, p, tri)
        assert torch.equal(out, color)
        g = torch.rand_like(out)
        out.backward(g)
        assert torch.equal(c.grad, g) and torch.equal(p.grad, torch.zeros_like(pos))


def _quad(shared: bool, fold: bool = False):
    """A quad split along a (non-45-degree) diagonal into two triangles, on a 20 x 20 image."""
    pts = [(3.3, 2.7), (16.6, 4.1), (15.2, 17.4), (2.1, 15.9)]
    if fold:  # vertex 3 moved across the diagonal 0-2, behind the first triangle: the diagonal is a fold
        pts[3] = (14.0, 8.0)
    z = [0.5, 0.5, 0.5, 0.6 if fold else 0.5]
    pos = torch.cat([_clip([p], 20, 20, z=zz) for p, zz in zip(pts, z)])[None]
    if shared:
        tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    else:  # the same triangles with their own copies of the diagonal's vertices
        pos = torch.cat([pos, pos[:, [0, 2]]], 1)
        tri = torch.tensor([[0, 1, 2], [4, 5, 3]], dtype=torch.int32)
    return pos, tri, _rasterize(pos, tri, 20, 20)


def test_interior_edges_are_not_silhouettes_but_unshared_and_folded_edges_are():
    color = torch.rand(1, 20, 20, 3, dtype=torch.float64)
    bg = lambda a, b: b == 0  # noqa: E731  (a pixel whose neighbour is empty)
    pos, tri, rast = _quad(shared=True)
    assert torch.equal(antialias_construct_topology_hash(tri), torch.tensor([[-1, 3, -1], [-1, -1, 1]],
                                                                            dtype=torch.int32))
    changed = (antialias(color, rast, pos, tri) != color).any(-1)
    ids = rast[..., 3]
    diagonal = _touches_change(ids, lambda a, b: (a == 1) & (b == 2))
    assert changed.any()
    assert not (changed & ~_touches_change(ids, bg)).any(), "only the outline may change"

    pos_u, tri_u, rast_u = _quad(shared=False)
    assert torch.equal(rast_u[..., 3], ids)
    changed_u = (antialias(color, rast_u, pos_u, tri_u) != color).any(-1)
    assert (changed_u & diagonal & ~_touches_change(ids, bg)).any(), "unshared diagonal acts as a silhouette"
    assert torch.equal(changed_u & ~diagonal, changed & ~diagonal)

    pos_f, tri_f, rast_f = _quad(shared=True, fold=True)
    topo_f = antialias_construct_topology_hash(tri_f)
    assert topo_f[0, 1] == 3 and topo_f[1, 2] == 1  # still neighbours across the diagonal 0-2 ...
    out_f = antialias(color, rast_f, pos_f, tri_f)
    want = ref.antialias(color, rast_f, pos_f, tri_f)
    torch.testing.assert_close(out_f, want, rtol=0, atol=1e-12)
    # ... but the fold makes the diagonal a silhouette: pixels beyond it (empty) are blended with triangle 0
    ids_f = rast_f[..., 3]
    diag_f = _touches_change(ids_f, lambda a, b: (a == 1) & (b == 0))
    assert ((out_f != color).any(-1) & diag_f).any()


# ---------------------------------------------------------------------------------------------- topology
def _soup_topology_case():
    g = torch.Generator().manual_seed(5)
    tri = torch.randint(0, 12, (80, 3), generator=g, dtype=torch.int32)  # many non-manifold, repeated, degenerate
    tri = torch.cat([tri, tri[:10], tri[:5, [1, 2, 0]], torch.tensor([[3, 3, 4], [7, 8, 7]], dtype=torch.int32)])
    return tri


@needs_golden
@pytest.mark.parametrize("name", SCENES)
def test_topology_matches_reference_on_golden_meshes(name):
    tri = _golden(name)[3]
    topo = antialias_construct_topology_hash(tri)
    assert topo.dtype == torch.int32 and topo.shape == tri.shape
    assert torch.equal(topo, ref.topology(tri))
    if name == "g3_icosphere":  # closed manifold: every edge has exactly one neighbour, and it is consistent
        assert (topo >= 0).all()
        t = tri.long()
        for f in range(0, t.shape[0], 37):
            for k in range(3):
                a, b, o = t[f, (k + 1) % 3], t[f, (k + 2) % 3], topo[f, k]
                assert ((t == a).any(1) & (t == b).any(1) & (t == o).any(1)).sum() == 1


def test_topology_non_manifold_duplicates_degenerate_matches_reference():
    tri = _soup_topology_case()
    topo = antialias_construct_topology_hash(tri)
    want = ref.topology(tri)
    assert torch.equal(topo, want)
    assert (want >= 0).any() and (want < 0).any()
    assert (topo[-2:] < 0).sum() >= 2  # edges of degenerate triangles that repeat a vertex
    assert torch.equal(antialias_construct_topology_hash(tri), topo)


# ---------------------------------------------------------------------------------------------- reference, golden
def _compare_to_reference(color, rast, pos, tri, dtype, atol):
    g = torch.rand(color.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c, p = color.to(dtype).clone().requires_grad_(True), pos.to(dtype).clone().requires_grad_(True)
    out = antialias(c, rast, p, tri)
    (out * g.to(dtype)).sum().backward()
    cr, pr = color.double().clone().requires_grad_(True), pos.double().clone().requires_grad_(True)
    out_r = ref.antialias(cr, rast, pr, tri)
    (out_r * g).sum().backward()
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), out_r.detach(), rtol=0, atol=atol)
    torch.testing.assert_close(c.grad.double(), cr.grad, rtol=0, atol=atol)
    scale = pr.grad.abs().max().item()
    torch.testing.assert_close(p.grad.double(), pr.grad, rtol=0, atol=atol * 10 * max(scale, 1.0))
    return out.detach(), p.grad


@needs_golden
@pytest.mark.parametrize("name", SCENES)
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-11), (torch.float32, 1e-5)])
def test_golden_matches_reference(name, dtype, atol):
    color, rast, pos, tri = _golden(name)
    out, gpos = _compare_to_reference(color, rast, pos, tri, dtype, atol)
    assert (out != color.to(dtype)).any(), "every golden scene has silhouettes to antialias"
    assert gpos.abs().sum() > 0 and (gpos[..., 2] == 0).all()


@needs_golden
@pytest.mark.parametrize("name", SCENES)
def test_golden_only_pixels_next_to_id_changes_are_modified(name):
    color, rast, pos, tri = _golden(name)
    out = antialias(color, rast, pos, tri)
    changed = (out != color).any(-1)
    ids = rast[..., 3]
    assert changed.sum() > 0
    assert not (changed & ~_touches_change(ids)).any()
    if name == "g3_icosphere":  # convex closed meshes: the only silhouettes are against the background
        assert not (changed & ~_touches_change(ids, lambda a, b: b == 0)).any()


def _random_scene(seed, b=2, h=24, w=28, n=12):
    """Random overlapping triangles, some sharing vertices (a fan), in instanced mode."""
    g = torch.Generator().manual_seed(seed)
    v = 3 * n
    xy = torch.rand(b, v, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1
    z = torch.rand(b, v, 1, generator=g, dtype=torch.float64) * 0.8 + 0.1
    wv = torch.rand(b, v, 1, generator=g, dtype=torch.float64) * 0.5 + 0.75
    pos = torch.cat([xy * wv, z * wv, wv], -1)
    tri = torch.arange(v, dtype=torch.int32).view(n, 3)
    tri[n // 2:, 0] = 0  # the second half share vertex 0
    tri[n // 2 + 1:, 1] = tri[n // 2:-1, 2]  # ... and an edge with the previous one
    return pos, tri, _rasterize(pos, tri, h, w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_match_reference(seed):
    pos, tri, rast = _random_scene(seed)
    color = torch.rand(*rast.shape[:3], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    out, _ = _compare_to_reference(color, rast, pos, tri, torch.float64, 1e-11)
    assert (out != color).any()
    _compare_to_reference(color, rast, pos.float(), tri, torch.float32, 2e-5)


# ---------------------------------------------------------------------------------------------- gradients
def _finite_difference(fn, pos, g, step=1e-6):
    fd = torch.zeros_like(pos)
    flat = fd.view(-1)
    for i in range(pos.numel()):
        hi, lo = pos.clone(), pos.clone()
        hi.view(-1)[i] += step
        lo.view(-1)[i] -= step
        flat[i] = ((fn(hi) - fn(lo)) * g).sum() / (2 * step)
    return fd


@needs_golden
@pytest.mark.parametrize("name", ["g1_tiny_single", "g1_tiny_overlap"])
def test_pos_gradient_finite_differences_on_silhouettes(name):
    """rast fixed, pos perturbed: the forward is smooth in pos between coverage changes, so central differences
    of the float64 kernel give the exact gradient. The reference's exact autograd gradient matches them tightly;
    the kernel's (nvdiffrast's 1e-3 px regulariser, about 1e-4 here) within 0.05 % of the largest entry."""
    color, rast, pos, tri = _golden(name)
    color, pos = color.double(), pos.double()
    g = torch.rand(color.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fd = _finite_difference(lambda q: antialias(color, rast, q, tri), pos, g)
    assert fd.abs().max() > 1
    p = pos.clone().requires_grad_(True)
    (antialias(color, rast, p, tri) * g).sum().backward()
    pe = pos.clone().requires_grad_(True)
    (ref.antialias(color, rast, pe, tri, grad_eps=False) * g).sum().backward()
    scale = fd.abs().max().item()
    torch.testing.assert_close(pe.grad, fd, rtol=0, atol=1e-8 * scale)
    torch.testing.assert_close(p.grad, fd, rtol=0, atol=5e-4 * scale)
    assert (p.grad[..., 2] == 0).all()


def test_pos_gradient_finite_differences_random_scene():
    pos, tri, rast = _random_scene(7, b=1, h=20, w=20, n=6)
    color = torch.rand(1, 20, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g = torch.rand_like(color)
    fd = _finite_difference(lambda q: antialias(color, rast, q, tri), pos, g)
    pe = pos.clone().requires_grad_(True)
    (ref.antialias(color, rast, pe, tri, grad_eps=False) * g).sum().backward()
    p = pos.clone().requires_grad_(True)
    (antialias(color, rast, p, tri) * g).sum().backward()
    scale = fd.abs().max().item()
    assert scale > 1
    torch.testing.assert_close(pe.grad, fd, rtol=0, atol=1e-8 * scale)
    torch.testing.assert_close(p.grad, fd, rtol=0, atol=5e-4 * scale)


def test_gradcheck_color():
    pos, tri, rast = _random_scene(3, b=2, h=9, w=10, n=6)
    color = torch.rand(2, 9, 10, 3, dtype=torch.float64, requires_grad=True)
    assert (antialias(color, rast, pos, tri) != color).any()
    assert torch.autograd.gradcheck(lambda c: antialias(c, rast, pos, tri), (color,), eps=1e-6, atol=1e-9)


def test_range_mode_equals_instanced_with_summed_gradient():
    pos, tri, rast = _random_scene(4, b=1, n=10)
    shared = pos[0]
    b = 3
    rast_b = torch.cat([rast, torch.flip(rast, [1]), torch.flip(rast, [2])])  # three images, one vertex set
    color = torch.rand(b, *rast.shape[1:3], 3, dtype=torch.float64)
    g = torch.rand_like(color)
    pr = shared.clone().requires_grad_(True)
    out_r = antialias(color, rast_b, pr, tri)
    (out_r * g).sum().backward()
    pi = shared.expand(b, -1, -1).clone().requires_grad_(True)
    out_i = antialias(color, rast_b, pi, tri)
    (out_i * g).sum().backward()
    assert torch.equal(out_r, out_i)
    torch.testing.assert_close(pr.grad, pi.grad.sum(0), rtol=0, atol=1e-12)
    want = ref.antialias(color, rast_b, shared, tri)
    torch.testing.assert_close(out_r, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- ops, determinism
def test_opcheck():
    pos, tri, rast = _random_scene(5, b=2, h=10, w=12, n=6)
    pos = pos.float()
    color = torch.rand(2, 10, 12, 3)
    topo = antialias_construct_topology_hash(tri)
    torch.library.opcheck(torch.ops.occrecon.antialias_construct_topology_hash.default, (tri,))
    torch.library.opcheck(torch.ops.occrecon.antialias.default,
                          (color.requires_grad_(True), rast, pos.requires_grad_(True), tri, topo, 1.0))
    torch.library.opcheck(torch.ops.occrecon.antialias.default, (color.detach(), rast, pos[0].detach(), tri, topo, 2.0))
    torch.library.opcheck(torch.ops.occrecon.antialias_backward.default,
                          (torch.rand_like(color), color.detach(), rast, pos.detach(), tri, topo))


def test_deterministic_bitwise_and_thread_independent():
    pos, tri, rast = _random_scene(6, b=4, h=40, w=48, n=30)
    color = torch.rand(4, 40, 48, 3)
    g = torch.rand_like(color)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n_threads, p_in in ((threads, pos.float()), (threads, pos.float()), (1, pos.float()),
                                (threads, pos[0].float()), (1, pos[0].float())):
            torch.set_num_threads(n_threads)
            c, p = color.clone().requires_grad_(True), p_in.clone().requires_grad_(True)
            out = antialias(c, rast, p, tri)
            (out * g).sum().backward()
            runs.append((out, c.grad, p.grad))
    finally:
        torch.set_num_threads(threads)
    assert runs[0][2].abs().sum() > 0
    for run in runs[1:3]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], run))
    assert all(torch.equal(x, y) for x, y in zip(runs[3], runs[4]))  # range mode: per-image partial sums


def test_given_topology_equals_built_and_non_contiguous_inputs():
    pos, tri, rast = _random_scene(8)
    color = torch.rand(2, 24, 28, 3, dtype=torch.float64)
    want = antialias(color, rast, pos, tri)
    topo = antialias_construct_topology_hash(tri)
    assert torch.equal(antialias(color, rast, pos, tri, topology_hash=topo), want)
    color_nc = color.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    rast_nc = rast.transpose(1, 2).contiguous().transpose(1, 2)
    pos_nc = pos.transpose(1, 2).contiguous().transpose(1, 2)
    tri_nc = tri.t().contiguous().t()
    assert not (color_nc.is_contiguous() or rast_nc.is_contiguous() or pos_nc.is_contiguous())
    assert torch.equal(antialias(color_nc, rast_nc, pos_nc, tri_nc), want)


@pytest.mark.parametrize("prebuilt_topology", [True, False])
def test_torch_compile_matches_eager(prebuilt_topology):
    pos, tri, rast = _random_scene(9)
    pos = pos.float()
    color = torch.rand(2, 24, 28, 3)
    topo = antialias_construct_topology_hash(tri) if prebuilt_topology else None

    def f(c, p):
        return (antialias(c, rast, p, tri, topology_hash=topo, pos_gradient_boost=2.0) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True)
    c1, p1 = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
    c2, p2 = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
    out_c, out_e = compiled(c1, p1), f(c2, p2)
    torch.testing.assert_close(out_c, out_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(c1.grad, c2.grad)
    torch.testing.assert_close(p1.grad, p2.grad)


# ---------------------------------------------------------------------------------------------- garbage, bad input
def test_garbage_ids_and_topology_never_read_out_of_bounds():
    """Ids beyond F, huge (bit-pattern) ids, negative, NaN, fractional ids and a random topology are handled
    as documented, by kernel and reference alike."""
    pos, tri, rast = _random_scene(10)
    g = torch.Generator().manual_seed(0)
    bad = rast.clone()
    pick = torch.rand(bad.shape[:3], generator=g) < 0.3
    junk = torch.tensor([13.0, 1000.0, 1e30, float("inf"), -3.0, float("nan"), 0.5, 2.5, 16777217.0])
    bad[..., 3] = torch.where(pick, junk[torch.randint(0, len(junk), bad.shape[:3], generator=g)], bad[..., 3])
    topo = torch.randint(-50, 60, tri.shape, generator=g, dtype=torch.int32)
    color = torch.rand(2, 24, 28, 3, dtype=torch.float64)
    c, p = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
    out = antialias(c, bad, p, tri, topology_hash=topo)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(c.grad).all() and torch.isfinite(p.grad).all()
    torch.testing.assert_close(out, ref.antialias(color, bad, pos, tri, topology_hash=topo), rtol=0, atol=1e-12)
    # a tri that names missing vertices, through the raw op (the Python wrapper rejects it): skipped, no crash
    wild = tri.clone()
    wild[0, 0], wild[1, 2] = 10**6, -7
    raw = torch.ops.occrecon.antialias(color, rast, pos, wild, antialias_construct_topology_hash(tri), 1.0)
    assert torch.isfinite(raw).all()
    gc, gp = torch.ops.occrecon.antialias_backward(torch.ones_like(color), color, rast, pos, wild,
                                                   antialias_construct_topology_hash(tri))
    assert torch.isfinite(gc).all() and torch.isfinite(gp).all()


def _ok_inputs():
    pos, tri, rast = _random_scene(11, b=1, h=6, w=7, n=4)
    return torch.rand(1, 6, 7, 3, dtype=torch.float64), rast, pos, tri


@pytest.mark.parametrize("case,exc,match", [
    ("color_not_tensor", TypeError, "color must be a torch.Tensor"),
    ("color_rank", ValueError, "color must be"),
    ("color_empty", ValueError, "color must be"),
    ("color_int", TypeError, "color must be float32 or float64"),
    ("rast_shape", ValueError, "rast must be"),
    ("rast_dtype", TypeError, "rast must be float32 or float64"),
    ("pos_shape", ValueError, "pos must be"),
    ("pos_batch", ValueError, "pos must be"),
    ("pos_dtype", TypeError, "pos dtype"),
    ("pos_device", ValueError, "pos is on meta"),
    ("tri_dtype", TypeError, "tri must be int32"),
    ("tri_shape", ValueError, "tri must be"),
    ("tri_range", ValueError, "tri holds vertex index"),
    ("tri_negative", ValueError, "negative vertex index"),
    ("topo_shape", ValueError, "topology_hash must be"),
    ("topo_type", TypeError, "topology_hash must be a torch.Tensor"),
    ("boost_type", TypeError, "pos_gradient_boost must be a float"),
    ("boost_nan", ValueError, "pos_gradient_boost must be finite"),
])
def test_bad_input(case, exc, match):
    color, rast, pos, tri = _ok_inputs()
    kwargs = {}
    if case == "color_not_tensor":
        color = color.numpy()
    elif case == "color_rank":
        color = color[0]
    elif case == "color_empty":
        color, rast, pos = color[:0], rast[:0], pos[:0]
    elif case == "color_int":
        color = (color * 255).to(torch.uint8)
    elif case == "rast_shape":
        rast = rast[..., :3]
    elif case == "rast_dtype":
        rast = rast.half()
    elif case == "pos_shape":
        pos = pos[..., :3]
    elif case == "pos_batch":
        pos = torch.cat([pos, pos])
    elif case == "pos_dtype":
        pos = pos.float()
    elif case == "pos_device":
        pos = pos.to("meta")
    elif case == "tri_dtype":
        tri = tri.long()
    elif case == "tri_shape":
        tri = torch.cat([tri, tri[:, :1]], 1)
    elif case == "tri_range":
        tri = tri.clone()
        tri[1, 1] = pos.shape[1]
    elif case == "tri_negative":
        tri = tri.clone()
        tri[0, 2] = -1
    elif case == "topo_shape":
        kwargs["topology_hash"] = torch.zeros(tri.shape[0], 2, dtype=torch.int32)
    elif case == "topo_type":
        kwargs["topology_hash"] = object()
    elif case == "boost_type":
        kwargs["pos_gradient_boost"] = "2"
    elif case == "boost_nan":
        kwargs["pos_gradient_boost"] = float("nan")
    with pytest.raises(exc, match=match):
        antialias(color, rast, pos, tri, **kwargs)


def test_bad_topology_arguments():
    with pytest.raises(TypeError, match="tri must be a torch.Tensor"):
        antialias_construct_topology_hash([[0, 1, 2]])
    with pytest.raises(TypeError, match="tri must be int32"):
        antialias_construct_topology_hash(torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="tri must be"):
        antialias_construct_topology_hash(torch.zeros(0, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="negative vertex index"):
        antialias_construct_topology_hash(torch.tensor([[0, -1, 2]], dtype=torch.int32))


def test_direct_torch_ops_call_is_checked_in_cpp():
    color, rast, pos, tri = _ok_inputs()
    topo = antialias_construct_topology_hash(tri)
    op = torch.ops.occrecon
    with pytest.raises(RuntimeError, match="rast must be"):
        op.antialias(color, rast[:, :3], pos, tri, topo, 1.0)
    with pytest.raises(RuntimeError, match="pos dtype"):
        op.antialias(color, rast, pos.float(), tri, topo, 1.0)
    with pytest.raises(RuntimeError, match="topology_hash must be"):
        op.antialias(color, rast, pos, tri, topo[:1], 1.0)
    with pytest.raises(RuntimeError, match="tri must be int32"):
        op.antialias_construct_topology_hash(tri.long())
    with pytest.raises(RuntimeError, match="grad_out must match color"):
        op.antialias_backward(color[..., :2], color, rast, pos, tri, topo)


# ---------------------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["instanced", "range"])
def test_cuda_matches_cpu(mode):
    pos, tri, rast = _random_scene(12, b=3, h=33, w=41, n=20)
    if mode == "range":
        pos = pos[0]
    color = torch.rand(3, 33, 41, 3, dtype=torch.float64)
    g = torch.rand_like(color)
    topo = antialias_construct_topology_hash(tri)
    assert torch.equal(antialias_construct_topology_hash(tri.cuda()).cpu(), topo)
    results = []
    for dev in ("cpu", "cuda"):
        c, p = color.detach().to(dev).requires_grad_(True), pos.detach().to(dev).requires_grad_(True)
        out = antialias(c, rast.to(dev), p, tri.to(dev))
        (out * g.to(dev)).sum().backward()
        results.append((out.cpu(), c.grad.cpu(), p.grad.cpu()))
    for x, y in zip(*results):
        torch.testing.assert_close(y, x, rtol=1e-9, atol=1e-9)


def test_reference_reads_float64_rast_ids():
    """Regression: the reference decoded float64 ``rast`` ids with the float32 bit-pattern rule (found by the
    CUDA suite). A batch of 2 in float64 must match the kernel."""
    from occrecon.render import rasterize

    pos, tri, _ = _random_scene(5, b=2, h=14, w=17, n=12)
    rast64 = rasterize(None, pos, tri, (14, 17))[0]
    assert rast64.dtype == torch.float64 and (rast64[..., 3] > 0).any()
    color = torch.rand(2, 14, 17, 3, dtype=torch.float64)
    torch.testing.assert_close(ref.antialias(color, rast64, pos, tri), antialias(color, rast64, pos, tri),
                               rtol=1e-12, atol=1e-12)
