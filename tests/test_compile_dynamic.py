"""torch.compile(dynamic=True, fullgraph=True) through every op, forward and backward, against eager: a textured,
shaded, antialiased render with a float argument (pos_gradient_boost) and two image sizes, plus the loss ops."""
from __future__ import annotations

import torch

import occrecon.render as dr
from occrecon import ops
from occrecon.render.meshes import perspective_clip, uv_sphere


def _pipeline(pos, tex, albedo, gamma, boost, res):
    v, tri = _MESH
    clip = perspective_clip(pos)[None]
    normals = dr.vertex_normals(pos[None], tri)
    shade = ops.sh_shade(normals, albedo, gamma)
    rast, rast_db = dr.rasterize(None, clip, tri, (res, res))
    uv, uv_da = dr.interpolate(_UV[None], rast, tri, rast_db=rast_db, diff_attrs="all")
    col, _ = dr.interpolate(shade, rast, tri)
    col = col * dr.texture(tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    img = dr.antialias(col, rast, clip, tri, pos_gradient_boost=boost)
    target = torch.full_like(img, 0.5)
    d2, _ = ops.neighbour_min(target.permute(0, 3, 1, 2), img.permute(0, 3, 1, 2), k=3)
    return img, d2.mean()


_V, _T = uv_sphere(8, 12)
_MESH = (_V, _T)
_UV = torch.stack([torch.atan2(_V[:, 2], _V[:, 0]) / (2 * torch.pi) + 0.5, _V[:, 1] * 0.5 + 0.5], -1).contiguous()


def test_every_op_compiles_with_dynamic_shapes():
    g = torch.Generator().manual_seed(0)
    compiled = torch.compile(_pipeline, dynamic=True, fullgraph=True)
    for res, boost in ((24, 2.0), (40, 0.5)):
        leaves = [(_V + 0.01 * torch.randn(_V.shape, generator=g)).requires_grad_(),
                  torch.rand(1, 16, 32, 3, generator=g).requires_grad_(),
                  torch.rand(1, _V.shape[0], 3, generator=g).requires_grad_(),
                  (torch.randn(1, 9, 3, generator=g) * 0.3).requires_grad_()]
        twins = [t.detach().clone().requires_grad_() for t in leaves]
        img_c, loss_c = compiled(*leaves, boost, res)
        img_e, loss_e = _pipeline(*twins, boost, res)
        torch.testing.assert_close(img_c, img_e)
        torch.testing.assert_close(loss_c, loss_e)
        (loss_c + img_c.square().mean()).backward()
        (loss_e + img_e.square().mean()).backward()
        for a, b in zip(leaves, twins):
            torch.testing.assert_close(a.grad, b.grad)
