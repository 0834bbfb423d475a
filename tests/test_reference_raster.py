"""Pure-PyTorch rasterizer references (reference.rasterize / interpolate / fragments): the golden data, the fill
rule, the culling policy, visibility ties, batching modes, the PyTorch3D view and gradients.

Scenes that need samples exactly on edges put their vertices on pixel centres of a 16 x 16 image: NDC
(2i + 1)/16 - 1 is dyadic, so with power-of-two w the snapped fixed-point position is exactly that pixel centre."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from occrecon import assets
from occrecon.ops import reference as R

_SHARED = assets.shared_dir(required=False)
GOLDEN = None if _SHARED is None else _SHARED / "golden"
GOLDEN_SCENES = ["g1_tiny_single", "g1_tiny_overlap", "g2_soup_s0", "g3_icosphere"]
needs_golden = pytest.mark.skipif(GOLDEN is None or not (GOLDEN / "g1_tiny_single.npz").exists(),
                                  reason="shared golden data not present")


def _golden(name):
    d = np.load(GOLDEN / f"{name}.npz")
    return {k: torch.from_numpy(np.asarray(d[k])) for k in d.files if k != "meta_json"}


def _ndc(i, n=16):
    return (2 * i + 1) / n - 1


def _vertex(i, j, w=1.0, z=0.0, n=16):
    """Clip-space vertex on the centre of pixel (column i, row j) at depth z/w = z."""
    return [_ndc(i, n) * w, _ndc(j, n) * w, z * w, w]


def _ids(rast):
    return rast[..., 3].long()


# ------------------------------------------------------------------------------------------------ golden data
@needs_golden
@pytest.mark.parametrize("name", GOLDEN_SCENES)
def test_golden_values_float32(name):
    g = _golden(name)
    h, w = g["resolution"].tolist()
    rast, rast_db = R.rasterize(g["pos"], g["tri"], (h, w))
    out, out_da = R.interpolate(g["attr"], rast, g["tri"])
    assert rast.dtype == rast_db.dtype == out.dtype == torch.float32
    assert rast.shape == rast_db.shape == g["rast"].shape and out.shape == g["out"].shape
    assert out_da.shape == (*out.shape[:3], 0)

    valid = g["valid"]
    assert torch.equal(_ids(rast)[valid], _ids(g["rast"])[valid])
    cov = valid & (g["rast"][..., 3] > 0)
    assert cov.sum() > 0
    torch.testing.assert_close(rast[..., :2][cov], g["rast"][..., :2][cov], rtol=0, atol=5e-5)
    torch.testing.assert_close(rast[..., 2][cov], g["rast"][..., 2][cov], rtol=0, atol=2e-6)
    db_scale = g["rast_db"][cov].abs().max().item()
    torch.testing.assert_close(rast_db[cov], g["rast_db"][cov], rtol=0, atol=1e-4 * db_scale)
    torch.testing.assert_close(out[valid], g["out"][valid], rtol=0, atol=5e-5)
    # Background: everything exactly zero.
    bg = rast[..., 3] == 0
    assert bg.any()
    assert (rast[bg] == 0).all() and (rast_db[bg] == 0).all() and (out[bg] == 0).all()


@needs_golden
@pytest.mark.parametrize("name", GOLDEN_SCENES)
def test_golden_gradients_float64(name):
    g = _golden(name)
    h, w = g["resolution"].tolist()
    pos = g["pos"].double().requires_grad_()
    attr = g["attr"].double().requires_grad_()
    rast, _ = R.rasterize(pos, g["tri"], (h, w))
    assert rast.dtype == torch.float64
    valid = g["valid"]
    assert torch.equal(_ids(rast)[valid], _ids(g["rast"])[valid])
    out, _ = R.interpolate(attr, rast, g["tri"])
    loss = (g["w"].double() * valid[..., None] * out).sum()
    loss.backward()
    ga, gp = g["grad_attr"], g["grad_pos"]
    assert (attr.grad - ga).abs().max() <= 1e-4 * ga.abs().max()
    assert (pos.grad - gp).abs().max() <= 1e-3 * gp.abs().max()
    assert (pos.grad[..., 2] == 0).all()
    assert (pos.grad[..., :2] != 0).any()


# ------------------------------------------------------------------------------------------------ fill rule
def _coverage_counts(verts, faces, h=16, w=16):
    """How many of the triangles cover each pixel: range mode, one image per triangle, summed."""
    pos = torch.tensor(verts, dtype=torch.float64)
    tri = torch.tensor(faces, dtype=torch.int32)
    ranges = torch.tensor([[f, 1] for f in range(len(faces))], dtype=torch.int32)
    rast, _ = R.rasterize(pos, tri, (h, w), ranges=ranges)
    return (rast[..., 3] > 0).sum(dim=0)


def _expected(pred, h=16, w=16):
    """Bool [H, W] image (row = j) of a predicate on (column i, row j)."""
    return torch.tensor([[bool(pred(i, j)) for i in range(w)] for j in range(h)])


@pytest.mark.parametrize("reverse", [False, True])
def test_fill_rule_left_and_bottom_edges_own_their_samples(reverse):
    # A: (1,1) (5,1) (1,5): its left edge (column 1) and bottom edge (row 1) are owned, the hypotenuse i + j = 6
    # (its top-right edge) is not. B: the complementary triangle (5,5) (1,5) (5,1): there the hypotenuse is the
    # bottom-left edge, and column 5 / row 5 are its right / top edges.
    verts = [_vertex(1, 1), _vertex(5, 1), _vertex(1, 5), _vertex(5, 5)]
    a, b = [0, 1, 2], [3, 2, 1]
    if reverse:
        a, b = a[::-1], b[::-1]
    counts = _coverage_counts(verts, [a])
    assert torch.equal(counts == 1, _expected(lambda i, j: i >= 1 and j >= 1 and i + j < 6))
    counts = _coverage_counts(verts, [b])
    assert torch.equal(counts == 1, _expected(lambda i, j: i < 5 and j < 5 and i + j >= 6))


def _square_fan(lo, hi, mid, with_midpoints):
    """A square with corners on pixel centres lo and hi, cut into a fan around the centre pixel mid (or into two
    triangles along a diagonal when mid is None). Per-vertex w in {1, 2, 4} makes it a perspective projection."""
    ring = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
    if with_midpoints:
        ring = [(lo, lo), (mid, lo), (hi, lo), (hi, mid), (hi, hi), (mid, hi), (lo, hi), (lo, mid)]
    ws = [1.0, 2.0, 4.0]
    verts = [_vertex(i, j, w=ws[k % 3]) for k, (i, j) in enumerate(ring)]
    if mid is None:
        return verts, None
    verts.append(_vertex(mid, mid, w=2.0))
    c = len(verts) - 1
    return verts, [[c, k, (k + 1) % len(ring)] for k in range(len(ring))]


@pytest.mark.parametrize("case", ["diagonal", "antidiagonal", "fan4", "fan8"])
@pytest.mark.parametrize("flip_some", [False, True])
def test_fill_rule_watertight(case, flip_some):
    lo, hi = 2, 11
    if case == "diagonal":
        verts, _ = _square_fan(lo, hi, None, False)
        faces = [[0, 1, 2], [0, 2, 3]]
    elif case == "antidiagonal":
        verts, _ = _square_fan(lo, hi, None, False)
        faces = [[1, 2, 3], [1, 3, 0]]
    else:
        verts, faces = _square_fan(lo, hi, 6, with_midpoints=(case == "fan8"))
    if flip_some:  # mixed windings
        faces = [f[::-1] if k % 2 else f for k, f in enumerate(faces)]
    counts = _coverage_counts(verts, faces)
    # Samples on the shared edges are covered exactly once; the square's own boundary follows the fill rule:
    # left column and bottom row in, right column and top row out.
    inside = _expected(lambda i, j: lo <= i < hi and lo <= j < hi)
    assert torch.equal(counts, inside.long())
    # Drawn together, they cover the same pixels.
    rast, _ = R.rasterize(torch.tensor([verts], dtype=torch.float32), torch.tensor(faces, dtype=torch.int32),
                          (16, 16))
    assert torch.equal(rast[0, ..., 3] > 0, inside)


# ------------------------------------------------------------------------------------------------ culling policy
def _occlusion_scene():
    """Back triangle 0 (z/w = 0.5) covers the whole middle; front triangle 1 (z/w = -0.5) covers the centre."""
    verts = [_vertex(0, 0, z=0.5), _vertex(15, 0, z=0.5), _vertex(8, 15, z=0.5),
             _vertex(4, 4, w=2.0, z=-0.5), _vertex(12, 4, w=2.0, z=-0.5), _vertex(8, 12, w=2.0, z=-0.5)]
    return verts, [[0, 1, 2], [3, 4, 5]]


def _render_ids(verts, faces, h=16, w=16):
    rast, _ = R.rasterize(torch.tensor([verts], dtype=torch.float64), torch.tensor(faces, dtype=torch.int32), (h, w))
    return _ids(rast)[0]


@pytest.mark.parametrize("bad", ["w0", "w_negative", "nan", "inf", "tiny_w"])
def test_dropped_triangles(bad):
    verts, faces = _occlusion_scene()
    ids = _render_ids(verts, faces)
    assert (ids == 2).sum() > 10 and (ids == 1).sum() > 10  # the unmodified front triangle shows
    v = verts[5]
    if bad == "w0":
        v[3] = 0.0
    elif bad == "w_negative":
        verts[5] = [-v[0], -v[1], -v[2], -v[3]]  # same point in homogeneous space, but behind the camera
    elif bad == "nan":
        v[0] = float("nan")
    elif bad == "inf":
        v[1] = float("inf")
    elif bad == "tiny_w":  # x/w ~ 1e12: the snapped coordinate is far beyond the +-2^30 fixed-point limit
        verts[5] = [1.0, 0.5, 0.0, 1e-12]
    ids_bad = _render_ids(verts, faces)
    assert not (ids_bad == 2).any()
    # Where the front triangle was, the back triangle now shows: the dropped one occludes nothing.
    assert torch.equal(ids_bad > 0, ids > 0)


def test_zero_snapped_area_never_drawn():
    # A sliver around the centre of pixel (8, 8) (fixed point (8, 8), 1/16 px units): base at y = 7.8, apex at
    # y = 8.3. Before snapping it contains that pixel centre; after snapping all three y are 8: zero area.
    def tri(apex_y):
        fixed = [(8 - 40, 7.8), (8 + 40, 7.8), (8, apex_y)]
        return [[x / 128, y / 128, 0.0, 1.0] for x, y in fixed]

    s = torch.tensor(tri(8.3), dtype=torch.float64)
    a = torch.tensor([1 / 16, 1 / 16], dtype=torch.float64)  # NDC of the centre of pixel (8, 8)
    edges = [(s[k, :2], s[(k + 1) % 3, :2]) for k in range(3)]
    assert all((q[0] - p[0]) * (a[1] - p[1]) - (q[1] - p[1]) * (a[0] - p[0]) > 0 for p, q in edges)
    assert (_render_ids(tri(8.3), [[0, 1, 2]]) == 0).all()
    # Control: with the apex snapped one unit higher, the pixel centres of row 8 on the base (fixed x = -24, -8,
    # 8, 24, 40: columns 6..10) lie on the triangle's owned bottom edge, and nothing else is covered.
    ids = _render_ids(tri(9.2), [[0, 1, 2]])
    assert torch.equal(ids > 0, _expected(lambda i, j: j == 8 and 6 <= i <= 10))


def test_fragments_outside_depth_range_discarded():
    # All w = 1, z = 2x + 0.45 at every vertex: z/w at a pixel centre is 2x + 0.45 there, outside [-1, 1] for
    # x > 0.275 and x < -0.725 (never exactly at a pixel centre, x = odd/16). The triangle straddles both planes.
    xs = [(-0.9, -0.8), (0.9, -0.8), (0.0, 0.9)]
    verts = [[x, y, 2 * x + 0.45, 1.0] for x, y in xs]
    rast, _ = R.rasterize(torch.tensor([verts], dtype=torch.float64), torch.tensor([[0, 1, 2]]), (16, 16))
    flat = [[x, y, 0.0, 1.0] for x, y in xs]
    covered = _render_ids(flat, [[0, 1, 2]]) > 0
    x = torch.tensor([_ndc(i) for i in range(16)], dtype=torch.float64).expand(16, 16)
    zw = 2 * x + 0.45
    drawn = rast[0, ..., 3] > 0
    assert torch.equal(drawn, covered & (zw.abs() <= 1))
    assert (covered & (zw.abs() > 1)).sum() > 10
    torch.testing.assert_close(rast[0, ..., 2][drawn], zw[drawn], rtol=0, atol=1e-12)


def test_triangle_in_front_of_near_plane_occludes_nothing():
    verts, faces = _occlusion_scene()
    for v in verts[3:]:
        v[2] = -1.5 * v[3]  # z/w = -1.5 at every vertex: entirely outside the near plane
    ids = _render_ids(verts, faces)
    assert (ids == 1).sum() > 30 and not (ids == 2).any()


# ------------------------------------------------------------------------------------------------ visibility
@pytest.mark.parametrize("range_mode", [False, True])
def test_depth_tie_goes_to_lower_index(range_mode):
    verts, _ = _occlusion_scene()
    verts = verts + [list(v) for v in verts[3:]]  # vertices 6..8 duplicate the front triangle's 3..5
    pos = torch.tensor(verts, dtype=torch.float32)

    def ids(faces):
        tri = torch.tensor(faces, dtype=torch.int32)
        if range_mode:
            rast, _ = R.rasterize(pos, tri, (16, 16), ranges=torch.tensor([[0, len(faces)]], dtype=torch.int32))
        else:
            rast, _ = R.rasterize(pos[None], tri, (16, 16))
        return _ids(rast)[0]

    front, back, dup = [3, 4, 5], [0, 1, 2], [6, 7, 8]
    a = ids([front, back, front])
    assert (a == 1).sum() > 10 and not (a == 3).any()
    b = ids([back, dup, front])
    assert (b == 2).sum() > 10 and not (b == 3).any()
    assert torch.equal(a == 1, b == 2)


# ------------------------------------------------------------------------------------------------ batching modes
def _soup(n_tri=24, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ndc = torch.rand(n_tri * 3, 3, generator=g, dtype=dtype) * 1.6 - 0.8
    w = 1 + 2 * torch.rand(n_tri * 3, 1, generator=g, dtype=dtype)
    pos = torch.cat([ndc * w, w], dim=1)
    tri = torch.arange(n_tri * 3, dtype=torch.int32).reshape(n_tri, 3)
    return pos, tri


def test_range_mode_matches_instanced():
    pos, tri = _soup()
    h, w = 20, 24
    ranges = torch.tensor([[0, 24], [5, 10], [20, 0], [23, 1]], dtype=torch.int32)
    rast, db = R.rasterize(pos, tri, (h, w), ranges=ranges)
    assert rast.shape == (4, h, w, 4)
    for b, (first, count) in enumerate(ranges.tolist()):
        r_i, db_i = R.rasterize(pos[None], tri[first:first + count], (h, w))
        r_i[..., 3] = torch.where(r_i[..., 3] > 0, r_i[..., 3] + first, r_i[..., 3])  # ids are global in range mode
        assert torch.equal(rast[b], r_i[0]) and torch.equal(db[b], db_i[0])
    assert (rast[0, ..., 3] > 0).sum() > 50 and (rast[2] == 0).all()
    # Gradients: range mode over shared vertices gives the sum of what instanced mode gives per image.
    p1 = pos.clone().requires_grad_()
    R.interpolate(p1[:, :3], R.rasterize(p1, tri, (h, w), ranges=ranges)[0], tri)[0].sum().backward()
    p2 = pos.clone().requires_grad_()
    sum(R.interpolate(p2[:, :3], R.rasterize(p2[None], tri[f:f + c], (h, w))[0], tri[f:f + c])[0].sum()
        for f, c in ranges.tolist()).backward()
    assert (p1.grad != 0).any()
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-12, atol=1e-12)


def test_instanced_batch_images_are_independent_and_dtypes_agree():
    pos0, tri = _soup(seed=1)
    pos1, _ = _soup(seed=2)
    pos = torch.stack([pos0, pos1])
    rast, db = R.rasterize(pos, tri, (20, 24))
    for b in range(2):
        r_b, db_b = R.rasterize(pos[b:b + 1], tri, (20, 24))
        assert torch.equal(rast[b], r_b[0]) and torch.equal(db[b], db_b[0])
    r32, db32 = R.rasterize(pos.float(), tri, (20, 24))
    assert r32.dtype == torch.float32 and db32.dtype == torch.float32
    assert torch.equal(_ids(r32), _ids(rast))  # coverage does not depend on the dtype (no depth ties here)
    torch.testing.assert_close(r32.double(), rast, rtol=0, atol=1e-5)


def test_attr_broadcasting():
    pos, tri = _soup()
    pos = pos.expand(3, -1, -1)
    rast, db = R.rasterize(pos, tri, (20, 24))
    attr = torch.rand(pos.shape[1], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    results = []
    for a in (attr, attr[None], attr.expand(3, -1, -1)):
        a = a.clone().requires_grad_()
        out, da = R.interpolate(a, rast, tri, rast_db=db, diff_attrs="all")
        (out.sum() + da.sum()).backward()
        results.append((out, da, a.grad.reshape(-1, *attr.shape).sum(0)))
    for out, da, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(da, results[0][1])
        torch.testing.assert_close(grad, results[0][2], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        R.interpolate(attr.expand(2, -1, -1), rast, tri)


# ------------------------------------------------------------------------------------------------ interpolate
def test_diff_attrs_are_screen_derivatives_interleaved():
    # With every w = 1 the interpolation is affine in screen space: the difference between neighbouring pixels
    # of one triangle is exactly dA/dX (next column) and dA/dY (next row, upwards).
    pos, tri = _soup(n_tri=6, seed=4)
    pos[:, :3] /= pos[:, 3:]
    pos[:, 3] = 1
    rast, db = R.rasterize(pos[None], tri, (32, 32))
    attr = torch.rand(pos.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out, da = R.interpolate(attr, rast, tri, rast_db=db, diff_attrs="all")
    assert da.shape == (1, 32, 32, 6)
    u, v, t = rast[0, ..., 0], rast[0, ..., 1], rast[0, ..., 3]
    interior = (t > 0) & (u > 0) & (v > 0) & (u + v < 1)  # unclamped pixels
    for axis, col in ((1, 0), (0, 1)):  # (next column, dX), (next row, dY)
        a = interior.narrow(axis, 0, interior.shape[axis] - 1)
        b = interior.narrow(axis, 1, interior.shape[axis] - 1)
        same = a & b & (t.narrow(axis, 0, t.shape[axis] - 1) == t.narrow(axis, 1, t.shape[axis] - 1))
        assert same.sum() > 20
        diff = out[0].narrow(axis, 1, out.shape[axis + 1] - 1) - out[0].narrow(axis, 0, out.shape[axis + 1] - 1)
        deriv = da[0, ..., col::2].narrow(axis, 0, da.shape[axis + 1] - 1)
        torch.testing.assert_close(deriv[same], diff[same], rtol=0, atol=1e-12)
    _, sel = R.interpolate(attr, rast, tri, rast_db=db, diff_attrs=[2, -3])
    assert torch.equal(sel, torch.cat([da[..., 4:6], da[..., 0:2]], dim=-1))
    assert (da[rast[..., 3] == 0] == 0).all()
    _, none = R.interpolate(attr, rast, tri)
    assert none.shape == (1, 32, 32, 0)
    with pytest.raises(ValueError):
        R.interpolate(attr, rast, tri, diff_attrs="all")
    with pytest.raises(IndexError):
        R.interpolate(attr, rast, tri, rast_db=db, diff_attrs=[3])


def _hand_rast(dtype=torch.float64):
    """B=2, H=3, W=4 rast over 3 triangles, with empty pixels and one id (9) that names no triangle."""
    g = torch.Generator().manual_seed(6)
    uv = torch.rand(2, 3, 4, 2, generator=g, dtype=dtype) * 0.5
    ids = torch.tensor([[[1, 2, 0, 3], [0, 0, 2, 1], [3, 9, 1, 0]],
                        [[0, 3, 3, 2], [1, 0, 0, 0], [2, 2, 1, 3]]], dtype=dtype)
    zw = torch.rand(2, 3, 4, 1, generator=g, dtype=dtype) * 2 - 1
    rast = torch.cat([uv, zw, ids[..., None]], dim=-1)
    rast[ids == 0] = 0
    db = torch.randn(2, 3, 4, 4, generator=g, dtype=dtype)
    tri = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 1, 3]], dtype=torch.int32)
    return rast, db, tri


def test_interpolate_values_by_hand():
    rast, db, tri = _hand_rast()
    attr = torch.rand(2, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out, da = R.interpolate(attr, rast, tri, rast_db=db, diff_attrs=[1])
    b, j, i = 1, 2, 3  # triangle 2 = vertices (4, 1, 3)
    u, v = rast[b, j, i, :2]
    a0, a1, a2 = attr[b, 4], attr[b, 1], attr[b, 3]
    torch.testing.assert_close(out[b, j, i], u * a0 + v * a1 + (1 - u - v) * a2)
    dudx, dudy, dvdx, dvdy = db[b, j, i]
    expect = torch.stack([(a0 - a2)[1] * dudx + (a1 - a2)[1] * dvdx, (a0 - a2)[1] * dudy + (a1 - a2)[1] * dvdy])
    torch.testing.assert_close(da[b, j, i], expect)
    empty = (rast[..., 3] == 0) | (rast[..., 3] > 3)
    assert empty.sum() == 9 and (out[empty] == 0).all() and (da[empty] == 0).all()


def test_gradcheck_interpolate():
    rast, db, tri = _hand_rast()
    g = torch.Generator().manual_seed(8)
    uv = rast[..., :2].clone().requires_grad_()
    db = db.requires_grad_()
    for attr in (torch.rand(2, 5, 3, generator=g, dtype=torch.float64), torch.rand(5, 3, generator=g,
                                                                                    dtype=torch.float64)):
        attr.requires_grad_()

        def f(attr, uv, db):
            r = torch.cat([uv, rast[..., 2:]], dim=-1)
            return R.interpolate(attr, r, tri, rast_db=db, diff_attrs=[0, 2])

        assert torch.autograd.gradcheck(f, (attr, uv, db))


# ------------------------------------------------------------------------------------------------ rasterize gradients
def _screen_bary(verts, sx, sy):
    """Perspective-correct barycentrics written in screen space, independently of the reference's clip-space
    form: S_k = (x_k, y_k)/w_k, lambda_k = area(s, S_k+1, S_k+2) / area(S_0, S_1, S_2), b_k ~ lambda_k / w_k.
    Returns (b_0, b_1, q = sum_k lambda_k / w_k)."""
    s_ = verts[:, :2] / verts[:, 3:4]

    def area(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    s = torch.stack([sx, sy])
    total = area(s_[0], s_[1], s_[2])
    lam = [area(s, s_[1], s_[2]) / total, area(s, s_[2], s_[0]) / total, area(s, s_[0], s_[1]) / total]
    r = [lam[k] / verts[k, 3] for k in range(3)]
    q = r[0] + r[1] + r[2]
    return r[0] / q, r[1] / q, q


@pytest.mark.parametrize("rotation", [0, 1, 2])
def test_clamped_pixels_rast_db_and_gradient(rotation):
    """Pixels of column 8 lie exactly on the snapped left edge (covered), but 1/64 px outside the float triangle,
    so the weight of the opposite vertex is slightly negative and the output clamp acts: u < 0, v < 0 or u + v > 1
    depending on the vertex order. Forward: clamped values; gradient: that of the unclamped u, v (the clamp
    counts as the identity); rast_db: nvdiffrast's du/dX = (2/W)(da0/dx - u dat/dx)/at with the clamped u, which
    is d u_raw/dX + (u_raw - u) d ln(at)/dX."""
    xe = 1 / 16 + 1 / 512  # fixed point 8.25 -> snaps to 8, the centre of column 8
    ndc = [(xe, 0.5, 2.0), (xe, -0.5, 1.5), (0.6, 0.05, 3.0)]  # P, Q, R: P -> Q is the left edge
    pos = torch.tensor([[[x * w, y * w, 0.1 * w, w] for x, y, w in ndc]], dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1]][rotation:rotation + 1], dtype=torch.int32)
    rast, db = R.rasterize(pos, tri, (16, 16))
    verts = pos[0][tri[0].long()]
    covered = (rast[0, ..., 3] > 0).nonzero().tolist()
    assert len(covered) > 20
    n_clamped = 0
    for j, i in covered:
        sx = torch.tensor(_ndc(i), dtype=torch.float64, requires_grad=True)
        sy = torch.tensor(_ndc(j), dtype=torch.float64, requires_grad=True)
        u_raw, v_raw, q = _screen_bary(verts, sx, sy)
        uc, vc = u_raw.detach().clamp(0, 1), v_raw.detach().clamp(0, 1)
        if uc + vc > 1:
            uc, vc = uc / (uc + vc), vc / (uc + vc)
        torch.testing.assert_close(rast[0, j, i, :2], torch.stack([uc, vc]), rtol=0, atol=1e-12)
        clamped = (u_raw < 0) | (v_raw < 0) | (u_raw + v_raw > 1)
        n_clamped += int(clamped)
        assert bool(clamped) == (i == 8)
        expect_db = []
        for b_raw, b_out in ((u_raw, uc), (v_raw, vc)):
            db_dx, db_dy = torch.autograd.grad(b_raw, (sx, sy), retain_graph=True)
            dlq_dx, dlq_dy = torch.autograd.grad(torch.log(q.abs()), (sx, sy), retain_graph=True)
            expect_db += [(db_dx + (b_raw - b_out) * dlq_dx) * 2 / 16, (db_dy + (b_raw - b_out) * dlq_dy) * 2 / 16]
        torch.testing.assert_close(db[0, j, i], torch.stack(expect_db).detach(), rtol=1e-9, atol=1e-9)
        if i == 8 and j == 8:
            for k, b_raw in enumerate((u_raw, v_raw)):
                g_ref, = torch.autograd.grad(rast[0, j, i, k], pos, retain_graph=True)
                g_raw, = torch.autograd.grad(b_raw, pos, retain_graph=True)
                torch.testing.assert_close(g_ref, g_raw, rtol=1e-9, atol=1e-12)
    assert n_clamped >= 6


def _gradcheck_scene():
    verts = [[-0.7, -0.6, 0.2, 1.3], [0.5, -0.75, -0.1, 2.1], [0.1, 0.8, 0.3, 1.7],
             [-0.9, 0.2, 0.5, 1.1], [0.85, 0.1, -0.4, 2.4], [-0.2, -0.95, 0.6, 1.6]]
    pos = torch.tensor([verts], dtype=torch.float64)
    pos[..., :3] *= pos[..., 3:]
    return pos, torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)


def test_gradcheck_rasterize_uv_and_rast_db():
    pos, tri = _gradcheck_scene()
    res = (9, 11)
    ids = _ids(R.rasterize(pos, tri, res)[0])
    assert (ids == 1).sum() > 10 and (ids == 2).sum() > 10
    # Pixel centres are away from edges: perturbations far larger than gradcheck's change no coverage.
    g = torch.Generator().manual_seed(9)
    for _ in range(3):
        assert torch.equal(_ids(R.rasterize(pos + 1e-4 * torch.randn(pos.shape, generator=g, dtype=pos.dtype),
                                            tri, res)[0]), ids)

    def f(pos):
        rast, db = R.rasterize(pos, tri, res)
        return rast[..., :2], db

    assert torch.autograd.gradcheck(f, (pos.clone().requires_grad_(),))


def test_depth_and_id_get_no_gradient():
    pos, tri = _gradcheck_scene()
    pos.requires_grad_()
    rast, _ = R.rasterize(pos, tri, (9, 11))
    g_zid, = torch.autograd.grad(rast[..., 2:].sum(), pos, retain_graph=True)
    g_uv, = torch.autograd.grad(rast[..., :2].sum(), pos)
    assert (g_zid == 0).all() and (g_uv != 0).any()


# ------------------------------------------------------------------------------------------------ fragments
def test_fragments_layout_by_hand():
    rast = torch.zeros(1, 2, 3, 4)
    rast[0, 0, 0] = torch.tensor([0.25, 0.5, 0.1, 3.0])  # bottom row, left column: triangle 2
    rast[0, 1, 2] = torch.tensor([0.2, 0.3, -0.4, 1.0])  # top row, right column: triangle 0
    pix_to_face, zbuf, bary, dists = R.fragments(rast)
    assert dists is None
    assert pix_to_face.shape == zbuf.shape == (1, 2, 3, 1) and bary.shape == (1, 2, 3, 1, 3)
    assert pix_to_face.dtype == torch.int64 and zbuf.dtype == bary.dtype == torch.float32
    # PyTorch3D rows: row 0 is the top.
    assert pix_to_face[0, ..., 0].tolist() == [[-1, -1, 0], [2, -1, -1]]
    assert torch.equal(zbuf[0, ..., 0], torch.tensor([[-1, -1, -0.4], [0.1, -1, -1]]))
    assert bary[0, 1, 0, 0].tolist() == pytest.approx([0.25, 0.5, 0.25])
    assert bary[0, 0, 2, 0].tolist() == pytest.approx([0.2, 0.3, 0.5])
    empty = pix_to_face[..., 0] < 0
    assert empty.sum() == 4 and (bary[empty] == -1).all()
