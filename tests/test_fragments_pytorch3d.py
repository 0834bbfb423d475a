"""The "pytorch3d" Fragments convention against a transcription, written here, of PyTorch3D's documented
``rasterize_meshes`` semantics (perspective_correct=True, blur_radius=0): pixel centres in PyTorch3D's NDC (+X left,
+Y up, the shorter side spanning [-1, 1]), per pixel the K nearest faces whose barycentrics are all positive,
zbuf = the perspective-correct z of the face vertices (MeshRasterizer puts view-space depth there), dists = the
squared distance to the nearest edge, negated inside."""
from __future__ import annotations

import pytest
import torch

import occrecon.render as dr


def _edge(p, a, b):  # PyTorch3D's edge_function
    return (p[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1]) - (p[..., 1] - a[..., 1]) * (b[..., 0] - a[..., 0])


def _seg(p, a, b):
    e = b - a
    t = (((p - a) * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
    d = a + t[..., None] * e - p
    return (d * d).sum(-1)


def rasterize_meshes_transcribed(face_verts, h, w, k):
    """face_verts [F, 3, 3] in PyTorch3D NDC (x, y, z = view depth); one mesh; returns (pix_to_face, zbuf, bary,
    dists) [H, W, K(, 3)] as rasterize_meshes documents them (perspective_correct=True, blur_radius=0)."""
    s = min(h, w)
    yi, xi = torch.meshgrid(torch.arange(h, dtype=face_verts.dtype), torch.arange(w, dtype=face_verts.dtype),
                            indexing="ij")
    xf = (-1 + (2 * (w - 1 - xi) + 1.0) / w) * (w / s)   # reversed: +X points left
    yf = (-1 + (2 * (h - 1 - yi) + 1.0) / h) * (h / s)   # reversed: +Y points up
    p = torch.stack([xf, yf], -1).to(face_verts.dtype)[:, :, None]  # [H, W, 1, 2]
    v0, v1, v2 = face_verts[:, 0], face_verts[:, 1], face_verts[:, 2]  # [F, 3]
    area = _edge(v2[:, :2], v0[:, :2], v1[:, :2])
    l0 = _edge(p, v1[:, :2], v2[:, :2]) / area
    l1 = _edge(p, v2[:, :2], v0[:, :2]) / area
    l2 = _edge(p, v0[:, :2], v1[:, :2]) / area
    z0, z1, z2 = v0[:, 2], v1[:, 2], v2[:, 2]
    top0, top1, top2 = l0 * z1 * z2, z0 * l1 * z2, z0 * z1 * l2
    bot = top0 + top1 + top2
    bary = torch.stack([top0 / bot, top1 / bot, top2 / bot], -1)  # [H, W, F, 3]
    pz = (bary * torch.stack([z0, z1, z2], -1)).sum(-1)
    inside = (bary > 0).all(-1) & (pz >= 0)
    dist = torch.stack([_seg(p, v0[:, :2], v1[:, :2]), _seg(p, v0[:, :2], v2[:, :2]),
                        _seg(p, v1[:, :2], v2[:, :2])], -1).amin(-1)
    key = torch.where(inside, pz, torch.full_like(pz, float("inf")))
    order = torch.argsort(key, dim=-1, stable=True)[..., :k]
    ok = torch.gather(inside, -1, order)
    take = lambda t: torch.gather(t, 2, order)  # noqa: E731
    p2f = torch.where(ok, order, -1)
    zbuf = torch.where(ok, take(pz), -1.0)
    dists = torch.where(ok, -take(dist), -1.0)
    b = torch.gather(bary, 2, order[..., None].expand(-1, -1, -1, 3))
    b = torch.where(ok[..., None], b, -1.0)
    return p2f, zbuf, b, dists


@pytest.mark.parametrize("res", [(24, 40), (36, 20), (32, 32)])
def test_matches_the_transcribed_pytorch3d_semantics(res, quad_stack):
    pos, tri = quad_stack()
    h, w = res
    k = 3
    frag = dr.rasterize_fragments(None, pos, tri, res, faces_per_pixel=k)
    clip = pos[0][tri.long()]  # [F, 3, 4]
    s = min(h, w)
    fv = torch.stack([-clip[..., 0] / clip[..., 3] * (w / s), clip[..., 1] / clip[..., 3] * (h / s), clip[..., 3]], -1)
    p2f, zbuf, bary, dists = rasterize_meshes_transcribed(fv, h, w, k)
    same = (frag.pix_to_face[0] == p2f).all(-1)
    # (measured: 0.991-0.998) they differ only where a pixel centre grazes an edge (coverage on snapped vertices)
    assert same.float().mean() > 0.985, same.float().mean()
    assert (frag.pix_to_face[0][same] >= 0).any(-1).float().mean() > 0.3 and (p2f[..., 1] >= 0).any()
    torch.testing.assert_close(frag.zbuf[0][same], zbuf[same], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(frag.bary_coords[0][same], bary[same], rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(frag.dists[0][same], dists[same], rtol=1e-9, atol=1e-12)


def test_gradients_detach_and_soft_silhouette(quad_stack):
    pos, tri = quad_stack(n=2)
    pos = pos.clone().requires_grad_()
    frag = dr.rasterize_fragments(None, pos, tri, (16, 20), faces_per_pixel=2)
    assert frag.zbuf.requires_grad and frag.dists.requires_grad
    # a PyTorch3D-style soft silhouette: prob = sigmoid(-dists / sigma), alpha = 1 - prod(1 - prob)
    prob = torch.sigmoid(-frag.dists / 1e-3) * (frag.pix_to_face >= 0)
    alpha = 1 - torch.prod(1 - prob, dim=-1)
    (alpha.sum() + frag.zbuf.sum()).backward()
    assert torch.isfinite(pos.grad).all() and pos.grad.abs().sum() > 0
    d = frag.detach()
    assert not any(t.requires_grad for t in d) and isinstance(d, dr.Fragments)
    assert torch.equal(d.pix_to_face, frag.pix_to_face)

    # gradcheck where the pixel centre is strictly inside its face: where it is not (coverage is decided on
    # 1/16-px snapped vertices) the rasterizer clamps (u, v) and treats the clamp as identity, as nvdiffrast does
    p0 = pos.detach().clone()
    ref = dr.rasterize_fragments(None, p0, tri, (10, 12), faces_per_pixel=2)
    inner = (ref.bary_coords > 1e-3).all(-1) & (ref.pix_to_face >= 0)
    assert inner.sum() > 20

    def zbuf_and_dists(p):
        f = dr.rasterize_fragments(None, p, tri, (10, 12), faces_per_pixel=2)
        return f.zbuf[inner], f.dists[inner], f.bary_coords[inner]

    assert torch.autograd.gradcheck(zbuf_and_dists, (p0.requires_grad_(),))


def test_nvdiffrast_convention_unchanged_and_bad_input(quad_stack):
    pos, tri = quad_stack(n=2)
    rast, _ = dr.rasterize(None, pos, tri, (8, 8))
    f = dr.fragments(rast)
    assert f.dists is None and f.pix_to_face.shape == (1, 8, 8, 1)
    with pytest.raises(ValueError, match="convention"):
        dr.fragments(rast, convention="opengl")
    with pytest.raises(ValueError, match="needs pos and tri"):
        dr.fragments(rast, convention="pytorch3d")
    with pytest.raises(ValueError, match="rast\\[1\\] must match"):
        dr.fragments([rast, rast[:, :4]])
    with pytest.raises(ValueError, match="faces_per_pixel"):
        dr.rasterize_fragments(None, pos, tri, (8, 8), faces_per_pixel=0)
    with pytest.raises(ValueError, match="names triangle"):
        dr.fragments(rast, convention="pytorch3d", pos=pos, tri=tri[:1])
