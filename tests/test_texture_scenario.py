"""Client scenarios, on the CPU: what nvdiffrast's ``earth.py`` does (learn a texture from renders of a textured mesh
at random poses through rasterize → interpolate (with uv derivatives) → texture (linear-mipmap-linear) →
antialias) and ``envphong.py`` (learn a cube-map environment from a mirror sphere's reflections), each checked to
converge."""
from __future__ import annotations

import math

import torch

import occrecon.render as dr


def _quad():
    pos = torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float32)
    uv = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=torch.float32)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    return pos, uv, tri


def _clip(pos, yaw, pitch, distance):
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rot = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    p = pos @ rot.T
    z = p[:, 2] - distance
    near, far = 0.1, 100.0
    return torch.stack([2 * p[:, 0], 2 * p[:, 1], -(far + near) / (far - near) * z - 2 * far * near / (far - near),
                        -z], -1)


def _render(tex, pos_clip, uv, tri, res):
    rast, rast_db = dr.rasterize(None, pos_clip, tri, (res, res))
    texc, texd = dr.interpolate(uv[None], rast, tri, rast_db=rast_db, diff_attrs="all")
    color = dr.texture(tex, texc, texd, filter_mode="linear-mipmap-linear", boundary_mode="clamp")
    color = color * (rast[..., 3:] > 0)
    return dr.antialias(color, rast, pos_clip, tri)


def test_earth_style_texture_learning_converges():
    g = torch.Generator().manual_seed(0)
    # a smooth "true" texture (128², RGB): a few random sinusoids
    y, x = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    true = torch.stack([0.5 + 0.4 * torch.sin(2 * math.pi * (k + 1) * (x * torch.rand(1, generator=g)
                                                                       + y * torch.rand(1, generator=g)))
                        for k in range(3)], -1)[None]
    pos, uv, tri = _quad()
    tex = torch.full_like(true, 0.5).requires_grad_()
    opt = torch.optim.Adam([tex], lr=0.03)
    res = 48  # the 128² texture lands on <= 48² pixels: every view minifies, so the mip levels are read
    losses = []
    for it in range(150):
        views = [_clip(pos, float(torch.rand(1, generator=g) - 0.5), float(torch.rand(1, generator=g) - 0.5),
                       float(2.5 + 2 * torch.rand(1, generator=g))) for _ in range(4)]
        pos_clip = torch.stack(views)
        with torch.no_grad():
            target = _render(true, pos_clip, uv, tri, res)
        loss = ((_render(tex, pos_clip, uv, tri, res) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 1e-3 * first, (first, last)  # measured: 2.0e-2 -> 1.2e-7
    # the learned texture explains the truth at the resolution it was seen at (level 2: 32²)
    lvl = lambda t: torch.nn.functional.avg_pool2d(t.detach().permute(0, 3, 1, 2), 4)  # noqa: E731
    err0 = (lvl(torch.full_like(true, 0.5)) - lvl(true)).abs().mean()
    err = (lvl(tex) - lvl(true)).abs().mean()
    assert err < 0.01 * err0, (err0.item(), err.item())  # measured: 0.279 -> 0.00024


def test_envphong_style_environment_map_learning_converges():
    """nvdiffrast's envphong.py, reduced: a mirror sphere reflects a cube-map environment; learn the environment
    from renders at random rotations (reflection vectors interpolated with their image-space derivatives, sampled
    with linear-mipmap-linear in cube mode)."""
    from occrecon.render.meshes import perspective_clip, uv_sphere

    g = torch.Generator().manual_seed(1)
    v, tri = uv_sphere(16, 24)
    true = torch.rand(1, 6, 16, 16, 3, generator=g)
    true = torch.nn.functional.avg_pool2d(true.reshape(6, 16, 16, 3).permute(0, 3, 1, 2), 3, 1, 1,
                                          count_include_pad=False).permute(0, 2, 3, 1).reshape(1, 6, 16, 16, 3)
    true = (0.5 + 3 * (true - 0.5)).clamp(0, 1)  # contrast: the smoothed noise is close to grey
    env = torch.full_like(true, 0.5).requires_grad_()
    opt = torch.optim.Adam([env], lr=0.03)
    res = 48
    view = torch.tensor([0.0, 0.0, 1.0])  # towards the camera on +z

    def render(cube, rot):
        n = v @ rot.T  # unit sphere: the normal is the position
        refl = 2 * (n @ view)[:, None] * n - view  # mirror direction of the view ray
        clip = perspective_clip(n)[None]
        rast, rast_db = dr.rasterize(None, clip, tri, (res, res))
        r, r_da = dr.interpolate(refl[None].contiguous(), rast, tri, rast_db=rast_db, diff_attrs="all")
        col = dr.texture(cube, r, r_da, filter_mode="linear-mipmap-linear", boundary_mode="cube")
        return col * (rast[..., 3:] > 0)

    losses = []
    for it in range(120):
        a = torch.rand(3, generator=g) * 2 * math.pi
        cx, sx, cy, sy = math.cos(a[0]), math.sin(a[0]), math.cos(a[1]), math.sin(a[1])
        rot = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ torch.tensor([[1, 0, 0], [0, cx, -sx],
                                                                                [0, sx, cx]])
        with torch.no_grad():
            target = render(true, rot)
        loss = ((render(env, rot) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 1e-3 * first, (first, last)  # measured: 1.0e-2 -> 2.6e-6
