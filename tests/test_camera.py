"""Camera (pose, clip space, projection) and vertex normals: closed forms and consistency with the rasterizer."""
from __future__ import annotations

import math

import pytest
import torch

import occrecon.render as dr
from occrecon.render.meshes import uv_sphere


def test_euler_rotation_closed_forms():
    r = dr.euler_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    torch.testing.assert_close(r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                               torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # yaw: +z -> +x
    r = dr.euler_rotation(torch.tensor([math.pi / 2, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(r @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                               torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # pitch: +y -> +z
    r = dr.euler_rotation(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(r @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))  # roll: +x -> +y
    a = torch.tensor([[0.3, -0.7, 1.1]], dtype=torch.float64)
    full = dr.euler_rotation(a)[0]
    rx = dr.euler_rotation(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    ry = dr.euler_rotation(torch.tensor([0.0, -0.7, 0.0], dtype=torch.float64))
    rz = dr.euler_rotation(torch.tensor([0.0, 0.0, 1.1], dtype=torch.float64))
    torch.testing.assert_close(full, rz @ ry @ rx)  # R = Rz Ry Rx
    torch.testing.assert_close(full @ full.T, torch.eye(3, dtype=torch.float64))
    assert abs(torch.linalg.det(full) - 1) < 1e-12
    with pytest.raises(ValueError, match="angles must be"):
        dr.euler_rotation(torch.zeros(2, 2))


def test_projection_closed_form_and_clip_agreement():
    cam = dr.PerspectiveCamera(focal=500.0, image_size=(120, 160), principal_point=(70.0, 50.0))
    pts = torch.tensor([[0.0, 0.0, -10.0], [1.0, 2.0, -5.0], [-3.0, 0.5, -20.0]], dtype=torch.float64)
    uv = cam.project(pts)
    torch.testing.assert_close(uv[0], torch.tensor([70.0, 50.0], dtype=torch.float64))
    torch.testing.assert_close(uv[1], torch.tensor([70 + 500 * 1 / 5, 50 - 500 * 2 / 5], dtype=torch.float64))
    clip = cam.to_clip(pts)
    ndc = clip[:, :2] / clip[:, 3:]
    # NDC x = 2u/W - 1 and NDC y = 1 - 2v/H (y up)
    torch.testing.assert_close(ndc[:, 0], 2 * uv[:, 0] / 160 - 1)
    torch.testing.assert_close(ndc[:, 1], 1 - 2 * uv[:, 1] / 120)
    torch.testing.assert_close(clip[:, 3], -pts[:, 2])
    zn = clip[:, 2] / clip[:, 3]
    assert ((zn > -1) & (zn < 1)).all() and zn[0] < zn[2]  # nearer is smaller
    with pytest.raises(ValueError, match="focal"):
        dr.PerspectiveCamera(focal=-1.0)


def test_projected_point_lands_in_the_rasterized_pixel():
    cam = dr.PerspectiveCamera(focal=300.0, image_size=(64, 80))
    centre = torch.tensor([0.37, -0.21, -6.0], dtype=torch.float64)
    u, v = cam.project(centre).tolist()
    d = 0.01  # a tiny triangle around the point (about a third of a pixel)
    tri_pts = centre + torch.tensor([[-d, -d, 0.0], [d, -d, 0.0], [0.0, d, 0.0]], dtype=torch.float64)
    rast, _ = dr.rasterize(None, cam.to_clip(tri_pts)[None], torch.tensor([[0, 1, 2]], dtype=torch.int32), (64, 80))
    covered = (rast[0, ..., 3] > 0).nonzero().tolist()
    assert covered == [[64 - 1 - int(v), int(u)]]


def test_transform_applies_rotation_then_translation():
    cam = dr.PerspectiveCamera()
    v = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    out = cam.transform(v, torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64),
                        torch.tensor([[0.0, 0.0, -10.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.0, -10.0]]], dtype=torch.float64))


def test_vertex_normals_sphere_and_area_weighting():
    v, tri = uv_sphere(40, 60)
    n = dr.vertex_normals(v.double(), tri)
    cos = (n * torch.nn.functional.normalize(v.double(), dim=-1)).sum(-1)
    assert cos.min() > 0.999  # outward, radial
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(v.shape[0], dtype=torch.float64))
    # area weighting: vertex 0 shared by a big triangle in the xy plane and a small one in the xz plane
    verts = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, -1.0], [1, 0, 0]], dtype=torch.float64)
    tri2 = torch.tensor([[0, 1, 2], [0, 4, 3]], dtype=torch.int32)
    n0 = dr.vertex_normals(verts[None], tri2)[0, 0]
    big = torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64)  # cross((2,0,0), (0,2,0))
    small = torch.cross(torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 0, -1.0],
                                                                                      dtype=torch.float64), dim=0)
    torch.testing.assert_close(n0, torch.nn.functional.normalize(big + small, dim=0))
    # gradients flow (float64 gradcheck) and repeated calls are identical (no in-place corruption)
    vv = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: dr.vertex_normals(x, tri2)[:3], (vv,))
    assert torch.equal(dr.vertex_normals(verts, tri2), dr.vertex_normals(verts, tri2))
