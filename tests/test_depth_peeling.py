"""DepthPeeler / rasterize_next_layer: layers against a brute-force per-pixel sort of every triangle's fragment,
coincident triangles, empty pixels, gradients, the context rules and the op's peel check."""
from __future__ import annotations

import pytest
import torch

import occrecon.render as dr
from occrecon.ops import reference


def _layers_brute_force(pos, tri, res, k):
    """Per pixel, the k nearest (z/w, id) fragments from rasterizing every triangle alone (the reference)."""
    alone = [reference.rasterize(pos, tri[t:t + 1], res)[0] for t in range(tri.shape[0])]
    out = []
    z = torch.stack([r[..., 2] for r in alone], -1)
    hit = torch.stack([r[..., 3] > 0 for r in alone], -1)
    key = torch.where(hit, z, torch.full_like(z, float("inf")))
    order = torch.argsort(key, dim=-1, stable=True)  # by depth, then by triangle id
    for layer in range(k):
        t = order[..., layer]
        ok = torch.gather(hit, -1, t[..., None])[..., 0]
        zz = torch.gather(z, -1, t[..., None])[..., 0]
        out.append((torch.where(ok, t + 1, torch.zeros_like(t)), torch.where(ok, zz, torch.zeros_like(zz))))
    return out


def test_layers_are_the_sorted_fragments(quad_stack):
    pos, tri = quad_stack(batch=2)
    res = (40, 48)
    want = _layers_brute_force(pos, tri, res, 6)
    with dr.DepthPeeler(None, pos, tri, res) as peeler:
        got = [peeler.rasterize_next_layer() for _ in range(6)]
    assert got[0][0].equal(dr.rasterize(None, pos, tri, res)[0])  # layer 0 is rasterize
    for k, ((rast, _), (ids, z)) in enumerate(zip(got, want)):
        assert torch.equal(dr.triangle_index(rast[..., 3]) + 1, ids), k
        torch.testing.assert_close(rast[..., 2], z, rtol=0, atol=1e-12)
    assert (got[-1][0] == 0).all() or (got[-1][0][..., 3] > 0).sum() < (got[0][0][..., 3] > 0).sum()
    assert (got[0][0][..., 3] > 0).sum() > (got[1][0][..., 3] > 0).sum() > 0


def test_coincident_triangles_come_one_per_layer_and_empty_stays_empty():
    quad = torch.tensor([[-0.5, -0.5, 0.2, 1], [0.5, -0.5, 0.2, 1], [0.0, 0.5, 0.2, 1]], dtype=torch.float64)
    pos = quad[None]
    tri = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 1, 2]], dtype=torch.int32)
    with dr.DepthPeeler(dr.RasterizeCudaContext(), pos, tri, (16, 16)) as peeler:
        layers = [peeler.rasterize_next_layer()[0] for _ in range(5)]
    covered = layers[0][..., 3] > 0
    for k in range(3):
        assert (dr.triangle_index(layers[k][..., 3])[covered] == k).all()
        assert (layers[k][~covered] == 0).all()
    assert (layers[3] == 0).all() and (layers[4] == 0).all()


def test_peeled_layer_has_rasterize_gradients(quad_stack):
    pos, tri = quad_stack(n=3, batch=2)
    pos = pos.requires_grad_()
    attr = torch.rand(1, pos.shape[1], 2, dtype=torch.float64)

    def second_layer(p):
        with dr.DepthPeeler(None, p, tri, (12, 12)) as peeler:
            peeler.rasterize_next_layer()
            rast, db = peeler.rasterize_next_layer()
        return dr.interpolate(attr, rast, tri, rast_db=db, diff_attrs="all")

    assert torch.autograd.gradcheck(lambda p: second_layer(p)[0], (pos,))
    assert torch.autograd.gradcheck(lambda p: second_layer(p)[1], (pos,))


def test_range_mode_and_float32(quad_stack):
    pos, tri = quad_stack(n=3, dtype=torch.float32, batch=2)
    flat = pos.reshape(-1, 4)
    tri2 = torch.cat([tri, tri + pos.shape[1]])
    ranges = torch.tensor([[0, tri.shape[0]], [tri.shape[0], tri.shape[0]]], dtype=torch.int32)
    with dr.DepthPeeler(None, pos, tri, (20, 20)) as a, dr.DepthPeeler(None, flat, tri2, (20, 20), ranges) as b:
        for _ in range(3):
            ra, rb = a.rasterize_next_layer()[0], b.rasterize_next_layer()[0]
            ids_a, ids_b = dr.triangle_index(ra[..., 3]), dr.triangle_index(rb[..., 3])
            assert torch.equal(ids_a[0], ids_b[0])
            assert torch.equal(torch.where(ids_a[1] >= 0, ids_a[1] + tri.shape[0], ids_a[1]), ids_b[1])
            assert torch.equal(ra[..., :3], rb[..., :3])


def test_context_rules(quad_stack):
    pos, tri = quad_stack(n=2, batch=2)
    ctx = dr.RasterizeCudaContext()
    peeler = dr.DepthPeeler(ctx, pos, tri, (8, 8))
    with pytest.raises(RuntimeError, match="active DepthPeeler"):
        peeler.rasterize_next_layer()
    with peeler:
        with pytest.raises(RuntimeError, match="active DepthPeeler"):
            dr.rasterize(ctx, pos, tri, (8, 8))
        with pytest.raises(RuntimeError, match="multiple depth peelers"):
            with dr.DepthPeeler(ctx, pos, tri, (8, 8)):
                pass
        dr.rasterize(None, pos, tri, (8, 8))  # another context (None) is free
    dr.rasterize(ctx, pos, tri, (8, 8))
    with pytest.raises(RuntimeError, match="re-enter"):
        with peeler:
            pass
    with pytest.raises(RuntimeError, match="active DepthPeeler"):
        peeler.rasterize_next_layer()
    with pytest.raises(ValueError, match="pos must be"):
        dr.DepthPeeler(ctx, pos[..., :3], tri, (8, 8))
    # the op checks the peel layer itself
    with pytest.raises(RuntimeError, match="peel"):
        torch.ops.occrecon.rasterize(pos, tri, 8, 8, None, True, torch.zeros(2, 8, 9, 4, dtype=torch.float64))
    junk = torch.full((2, 8, 8, 4), float("nan"), dtype=torch.float64)
    out, _ = torch.ops.occrecon.rasterize(pos, tri, 8, 8, None, True, junk)  # garbage peel: nothing drawn
    assert (out == 0).all()
