"""Client scenarios, on the CPU: what nvdiffrast's samples do, each checked to converge — ``earth.py`` (learn a
texture from renders of a textured mesh at random poses through rasterize → interpolate (with uv derivatives) →
texture (linear-mipmap-linear) → antialias), ``envphong.py`` (learn a cube-map environment from a mirror sphere's
reflections), ``cube.py`` (vertex positions and colours from random views, antialiased) and ``pose.py`` (a
rotation from one render)."""
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


# ---------------------------------------------------------------------------------------------- cube and pose
_CUBE_QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _cube():
    pos = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32) * 0.5
    pos_idx = torch.tensor([t for q in _CUBE_QUADS for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))],
                           dtype=torch.int32)
    col_idx = torch.tensor([t for k in range(6) for t in ((4 * k, 4 * k + 1, 4 * k + 2), (4 * k, 4 * k + 2, 4 * k + 3))],
                           dtype=torch.int32)
    return pos, pos_idx, col_idx


def _quat_to_mat(q):
    w, x, y, z = (q / q.norm()).unbind()
    return torch.stack([torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
                        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
                        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])])


def _mvp(rot, t=(0.0, 0.0, -3.5)):
    n, f, x = 1.0, 200.0, 0.4
    proj = torch.tensor([[n / x, 0, 0, 0], [0, n / -x, 0, 0], [0, 0, -(f + n) / (f - n), -(2 * f * n) / (f - n)],
                         [0, 0, -1, 0]])
    mv = torch.cat([torch.cat([rot, torch.tensor(t)[:, None]], 1), torch.tensor([[0.0, 0, 0, 1]])])
    return proj @ mv


def _cube_render(mtx, pos, pos_idx, col, col_idx, res):
    clip = (torch.cat([pos, torch.ones(pos.shape[0], 1)], 1) @ mtx.T)[None]
    rast, _ = dr.rasterize(None, clip, pos_idx, (res, res))
    color, _ = dr.interpolate(col[None], rast, col_idx)
    return dr.antialias(color, rast, clip, pos_idx)


def test_cube_style_geometry_fit_converges():
    """nvdiffrast's cube.py at 16 × 16: vertex positions (noise ±0.5) and colours learned from random views; the
    geometric error of cube.py (mean over corners of ‖|p| − 0.5‖) must fall from ~0.5 to near zero."""
    g = torch.Generator().manual_seed(0)
    pos, pos_idx, col_idx = _cube()
    col = torch.rand(24, 3, generator=g)
    pos_opt = (pos + torch.rand(pos.shape, generator=g) - 0.5).requires_grad_()
    col_opt = torch.rand(24, 3, generator=g).requires_grad_()
    opt = torch.optim.Adam([pos_opt, col_opt], lr=1e-2)
    err = lambda: float((((pos_opt.detach().abs() - 0.5) ** 2).sum(-1) ** 0.5).mean())  # noqa: E731
    start = err()
    for it in range(600):
        rot = _quat_to_mat(torch.randn(4, generator=g))
        mtx = _mvp(rot, tuple((torch.rand(3, generator=g) * 0.5 - 0.25 + torch.tensor([0, 0, -3.5])).tolist()))
        with torch.no_grad():
            target = _cube_render(mtx, pos, pos_idx, col, col_idx, 16)
        loss = ((_cube_render(mtx, pos_opt, pos_idx, col_opt, col_idx, 16) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert start > 0.4 and err() < 0.02, (start, err())  # measured: 0.532 -> 0.0078


def test_pose_style_rotation_fit_converges():
    """nvdiffrast's pose.py, reduced: recover a cube's rotation (a quaternion) from a 64 × 64 render, starting
    40 degrees away; the final angular error must be below half a degree."""
    g = torch.Generator().manual_seed(2)
    pos, pos_idx, col_idx = _cube()
    col = torch.rand(24, 3, generator=g)
    q_true = torch.randn(4, generator=g)
    q_true = q_true / q_true.norm()
    axis = torch.randn(3, generator=g)
    axis = axis / axis.norm()
    half = math.radians(40) / 2
    dq = torch.cat([torch.tensor([math.cos(half)]), axis * math.sin(half)])
    w1, v1, w2, v2 = dq[0], dq[1:], q_true[0], q_true[1:]
    q0 = torch.cat([(w1 * w2 - v1 @ v2)[None], w1 * v2 + w2 * v1 + torch.linalg.cross(v1, v2)])
    q = q0.clone().requires_grad_()
    with torch.no_grad():
        target = _cube_render(_mvp(_quat_to_mat(q_true)), pos, pos_idx, col, col_idx, 64)
    opt = torch.optim.Adam([q], lr=0.01)
    for it in range(300):
        loss = ((_cube_render(_mvp(_quat_to_mat(q)), pos, pos_idx, col, col_idx, 64) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def angle(a, b):
        d = abs(float((a / a.norm()) @ (b / b.norm())))
        return math.degrees(2 * math.acos(min(1.0, d)))

    start, end = angle(q0, q_true), angle(q.detach(), q_true)
    assert start > 39 and end < 0.5, (start, end)  # measured: 40 -> 0.0 degrees
