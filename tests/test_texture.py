"""texture / texture_construct_mip: golden values from the documented conventions, the kernel against the independent
pure-PyTorch reference (values and gradients), gradcheck, opcheck, determinism and bad input."""
from __future__ import annotations

import math

import pytest
import torch

import occrecon.render as dr
from occrecon.ops.reference_texture import mip_reference, texture_reference

FILTERS = ["nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"]
BOUNDARIES = ["wrap", "clamp", "zero"]


def _inputs(nt=1, n=2, dtype=torch.float64, seed=0, hw=(16, 8), size=(5, 7), grad=False):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand(nt, *hw, 3, generator=g, dtype=dtype)
    uv = torch.rand(n, *size, 2, generator=g, dtype=dtype) * 1.6 - 0.3  # inside and outside [0, 1]
    da = torch.randn(n, *size, 4, generator=g, dtype=dtype) * 0.3
    bias = torch.randn(n, *size, generator=g, dtype=dtype)
    if grad:
        for t in (tex, uv, da, bias):
            t.requires_grad_()
    return tex, uv, da, bias


def _kwargs(fm, bm, da, bias):
    kw = dict(filter_mode=fm, boundary_mode=bm)
    if "mipmap" in fm:
        kw.update(uv_da=da, mip_level_bias=bias)
    return kw


# ------------------------------------------------------------------------------------------- golden values
def test_texel_centres_read_the_texel_in_every_mode():
    tex = torch.arange(8 * 4 * 2, dtype=torch.float64).reshape(1, 8, 4, 2)  # H = 8, W = 4: exact binary fractions
    j, i = torch.meshgrid(torch.arange(8, dtype=torch.float64), torch.arange(4, dtype=torch.float64), indexing="ij")
    uv = torch.stack([(i + 0.5) / 4, (j + 0.5) / 8], -1)[None]  # u along the width, row 0 at v = 0
    for fm in ("nearest", "linear"):
        for bm in BOUNDARIES:
            assert torch.equal(dr.texture(tex, uv, filter_mode=fm, boundary_mode=bm), tex), (fm, bm)


def test_bilinear_between_texels_and_at_the_border():
    tex = torch.tensor([[1.0, 3.0], [5.0, 7.0]], dtype=torch.float64).reshape(1, 2, 2, 1)
    uv = torch.tensor([[0.5, 0.5], [0.5, 0.25], [0.0, 0.25], [0.25, 0.0]], dtype=torch.float64).reshape(1, 1, 4, 2)
    got = {bm: dr.texture(tex, uv, boundary_mode=bm).flatten().tolist() for bm in BOUNDARIES}
    # centre: mean; (0.5, 0.25): between texels 1 and 3 of row 0; u = 0: half-way to the wrapped last column
    assert got["wrap"] == [4.0, 2.0, 2.0, 3.0]    # (1+3)/2 at x=-0.5 wraps; v = 0 averages rows 0 and 1 -> (1+5)/2
    assert got["clamp"] == [4.0, 2.0, 1.0, 1.0]   # clamped to the edge texel
    assert got["zero"] == [4.0, 2.0, 0.5, 0.5]    # half of the edge texel, half zero padding


def test_nearest_takes_the_upper_texel_on_a_boundary_and_zero_outside():
    tex = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64).reshape(1, 1, 4, 1)
    uv = torch.tensor([[0.25, 0.5], [0.2499, 0.5], [1.0, 0.5], [-0.1, 0.5]], dtype=torch.float64).reshape(1, 1, 4, 2)
    assert dr.texture(tex, uv, filter_mode="nearest", boundary_mode="clamp").flatten().tolist() == [20, 10, 40, 10]
    assert dr.texture(tex, uv, filter_mode="nearest", boundary_mode="wrap").flatten().tolist() == [20, 10, 10, 40]
    assert dr.texture(tex, uv, filter_mode="nearest", boundary_mode="zero").flatten().tolist() == [20, 10, 0, 0]


def test_mip_levels_are_box_averages_and_the_lod_picks_them():
    tex = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4, 1)
    mip = dr.texture_construct_mip(tex)
    assert [tuple(t.shape) for t in mip.levels] == [(1, 2, 2, 1), (1, 1, 1, 1)]
    assert mip.levels[0].flatten().tolist() == [2.5, 4.5, 10.5, 12.5] and mip.levels[1].item() == 7.5
    centre = torch.full((1, 1, 1, 2), 0.25, dtype=torch.float64)  # texel centre of level 1's (0, 0)
    # footprints of 2 and 4 base texels (major axis), the bias alone, and floor in mipmap-nearest
    for da, bias, fm, want in [((2 / 4, 0, 0, 2 / 4), None, "linear-mipmap-linear", 2.5),
                               ((0.1, 4 / 4, 0, 1 / 4), None, "linear-mipmap-linear", 7.5),
                               (None, 1.0, "linear-mipmap-linear", 2.5),
                               (None, 1.75, "linear-mipmap-nearest", 2.5),
                               (None, 1.5, "linear-mipmap-linear", 5.0),  # half-way between 2.5 and 7.5
                               (None, 9.0, "linear-mipmap-linear", 7.5)]:  # clamped to the last level
        kw = {"uv_da": torch.tensor(da, dtype=torch.float64).reshape(1, 1, 1, 4)} if da is not None else {}
        if bias is not None:
            kw["mip_level_bias"] = torch.full((1, 1, 1), bias, dtype=torch.float64)
        for m in (None, mip):
            assert dr.texture(tex, centre, mip=m, filter_mode=fm, **kw).item() == pytest.approx(want, abs=1e-12)
    # a magnified footprint (lod < 0) is level 0, bilinear: the centre of texels 0, 1, 4, 5
    small = {"uv_da": torch.tensor((0.01, 0, 0, 0.01), dtype=torch.float64).reshape(1, 1, 1, 4)}
    assert dr.texture(tex, centre, **small).item() == pytest.approx(2.5, abs=1e-12)
    assert dr.texture(tex, centre, max_mip_level=0, mip_level_bias=torch.ones(1, 1, 1, dtype=torch.float64)).item() \
        == pytest.approx(2.5)


def test_lod_is_log2_of_the_largest_singular_value():
    tex = torch.rand(1, 64, 32, 1, dtype=torch.float64)
    da = torch.tensor([0.02, 0.05, -0.03, 0.01], dtype=torch.float64)
    jac = torch.tensor([[da[0] * 32, da[1] * 32], [da[2] * 64, da[3] * 64]])
    lod = math.log2(torch.linalg.svdvals(jac)[0].item())
    uv = torch.rand(1, 1, 1, 2, dtype=torch.float64)
    got = dr.texture(tex, uv, uv_da=da.reshape(1, 1, 1, 4))
    ref = dr.texture(tex, uv, mip_level_bias=torch.full((1, 1, 1), lod, dtype=torch.float64))
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)


def test_mip_size_rules():
    with pytest.raises(ValueError, match="odd extent"):
        dr.texture_construct_mip(torch.rand(1, 6, 8, 3))  # 6 -> 3 -> cannot halve 3
    assert len(dr.texture_construct_mip(torch.rand(1, 6, 8, 3), max_mip_level=1).levels) == 1
    assert [t.shape[1:3] for t in dr.texture_construct_mip(torch.rand(1, 1, 8, 3)).levels] == [(1, 4), (1, 2), (1, 1)]
    assert len(dr.texture_construct_mip(torch.rand(1, 16, 4, 3), max_mip_level=9).levels) == 4


# ------------------------------------------------------------------------------------------- against the reference
def _assert_matches_reference(fm, bm, tex, uv, da, bias):
    """Kernel and pure-PyTorch reference agree in value (1e-12) and in every gradient; returns the kernel's."""
    kw = _kwargs(fm, bm, da, bias)
    ins = [tex, uv] + ([da, bias] if "mipmap" in fm else [])
    out, ref = dr.texture(tex, uv, **kw), texture_reference(tex, uv, **kw)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(out)
    ga = torch.autograd.grad((out * g).sum(), ins, allow_unused=True)
    gb = torch.autograd.grad((ref * g).sum(), ins, allow_unused=True)
    for name, a, b in zip(("tex", "uv", "uv_da", "bias"), ga, gb):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, rtol=1e-9, atol=1e-10, msg=name)
    return ga


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("bm", BOUNDARIES)
@pytest.mark.parametrize("fm", FILTERS)
def test_matches_reference_values_and_gradients(fm, bm, nt):
    ga = _assert_matches_reference(fm, bm, *_inputs(nt=nt, grad=True))
    if fm == "linear-mipmap-linear":
        assert ga[2].abs().sum() > 0 and ga[3].abs().sum() > 0  # the LOD gradient is exercised


def test_float32_matches_float64():
    tex, uv, da, bias = _inputs()
    for fm in FILTERS:
        kw = _kwargs(fm, "wrap", da, bias)
        kw32 = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        torch.testing.assert_close(dr.texture(tex.float(), uv.float(), **kw32), dr.texture(tex, uv, **kw).float(),
                                   rtol=0, atol=2e-5)


@pytest.mark.parametrize("bm", BOUNDARIES)
@pytest.mark.parametrize("fm", ["linear", "linear-mipmap-linear"])
def test_gradcheck(fm, bm):
    tex, uv, da, bias = _inputs(nt=2, size=(3, 4), hw=(8, 4), grad=True)
    if fm == "linear":
        assert torch.autograd.gradcheck(lambda t, u: dr.texture(t, u, filter_mode=fm, boundary_mode=bm), (tex, uv))
    else:
        assert torch.autograd.gradcheck(
            lambda t, u, d, b: dr.texture(t, u, uv_da=d, mip_level_bias=b, filter_mode=fm, boundary_mode=bm),
            (tex, uv, da, bias))


def test_opcheck():
    tex, uv, da, bias = _inputs(nt=1, size=(3, 4), hw=(8, 4), grad=True)
    levels = [tex] + [t.detach().requires_grad_() for t in mip_reference(tex.detach())]
    torch.library.opcheck(torch.ops.occrecon.texture.default, (levels, uv, da, bias, 3, 1))
    torch.library.opcheck(torch.ops.occrecon.texture.default, ([tex], uv, None, None, 1, 3))
    torch.library.opcheck(torch.ops.occrecon.texture.default, ([tex], uv, None, None, 0, 2))


def test_mip_gradients_reach_the_texture():
    tex, uv, da, bias = _inputs(grad=True)
    kw = dict(uv_da=da, mip_level_bias=bias)
    g_inline, = torch.autograd.grad(dr.texture(tex, uv, **kw).sum(), tex)
    mip = dr.texture_construct_mip(tex)
    g_wrapped, = torch.autograd.grad(dr.texture(tex, uv, mip=mip, **kw).sum(), tex)
    g_ref, = torch.autograd.grad(texture_reference(tex, uv, **kw).sum(), tex)
    torch.testing.assert_close(g_inline, g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_wrapped, g_ref, rtol=1e-10, atol=1e-12)
    # a custom stack gets its own gradients; tex only those of level 0
    custom = [t.detach().clone().requires_grad_() for t in mip_reference(tex.detach())]
    out = dr.texture(tex, uv, mip=custom, **kw)
    grads = torch.autograd.grad(out.sum(), [tex] + custom)
    ref = torch.autograd.grad(texture_reference(tex, uv, mip=custom, **kw).sum(), [tex] + custom)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert grads[0].sum() < g_ref.sum()


def test_non_finite_uv_reads_zero_without_gradient_and_never_out_of_bounds():
    tex = torch.rand(1, 8, 8, 3, dtype=torch.float64, requires_grad=True)
    bad = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 3.7], dtype=torch.float64)
    uv = torch.stack(torch.meshgrid(bad, bad, indexing="ij"), -1)[None].requires_grad_()
    finite = torch.isfinite(uv).all(-1)
    for fm in FILTERS:
        for bm in BOUNDARIES:
            kw = _kwargs(fm, bm, torch.full((1, 6, 6, 4), 0.3, dtype=torch.float64), torch.zeros(1, 6, 6,
                                                                                             dtype=torch.float64))
            out = dr.texture(tex, uv, **kw)
            assert torch.isfinite(out).all() and (out[~finite] == 0).all(), (fm, bm)
            g_tex, g_uv = torch.autograd.grad(out.sum(), (tex, uv))
            assert torch.isfinite(g_tex).all() and torch.isfinite(g_uv).all()
            assert (g_uv[~finite] == 0).all()


def test_cpu_backward_is_deterministic_and_thread_independent():
    tex, uv, da, bias = _inputs(nt=1, n=3, dtype=torch.float32, size=(160, 150), hw=(64, 64), grad=True)
    # 72,000 pixels, 5,461 texels: two scatter groups (csrc/cpu/texture.cpp), summed in order
    threads = torch.get_num_threads()
    grads = []
    try:
        for t in (1, 2, 1):
            torch.set_num_threads(t)
            grads.append(torch.autograd.grad(dr.texture(tex, uv, uv_da=da, mip_level_bias=bias).sum(), (tex, uv, da)))
    finally:
        torch.set_num_threads(threads)
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            assert torch.equal(a, b)


def test_compile_dynamic_matches_eager():
    tex, uv, da, bias = _inputs(dtype=torch.float32)
    f = torch.compile(lambda t, u, d: dr.texture(t, u, uv_da=d), dynamic=True, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(f(tex, uv, da), dr.texture(tex, uv, uv_da=da))


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    tex, uv, da, bias = _inputs()
    with pytest.raises(ValueError, match="filter_mode"):
        dr.texture(tex, uv, filter_mode="cubic")
    with pytest.raises(ValueError, match="boundary_mode"):
        dr.texture(tex, uv, boundary_mode="mirror")
    with pytest.raises(ValueError, match="cube map mode"):
        dr.texture(tex, uv, boundary_mode="cube")
    with pytest.raises(ValueError, match="needs uv_da"):
        dr.texture(tex, uv, filter_mode="linear-mipmap-linear")
    with pytest.raises(ValueError, match="uv must be"):
        dr.texture(tex, uv[..., :1])
    with pytest.raises(TypeError, match="uv dtype"):
        dr.texture(tex, uv.float())
    with pytest.raises(ValueError, match="tex minibatch"):
        dr.texture(tex.expand(3, -1, -1, -1), uv)
    with pytest.raises(ValueError, match="uv_da must be"):
        dr.texture(tex, uv, uv_da=da[..., :2])
    with pytest.raises(ValueError, match="mip_level_bias must be"):
        dr.texture(tex, uv, mip_level_bias=bias[:1])
    with pytest.raises(ValueError, match=r"mip\[0\]"):
        dr.texture(tex, uv, uv_da=da, mip=[torch.rand(1, 4, 4, 3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="mip was built"):
        dr.texture(tex, uv, uv_da=da, mip=dr.texture_construct_mip(torch.rand(1, 8, 8, 3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="max_mip_level"):
        dr.texture(tex, uv, max_mip_level=-1)
    with pytest.raises(TypeError, match="tex must be float"):
        dr.texture(tex.long(), uv)
    # the op's own checks (direct calls)
    with pytest.raises(RuntimeError, match="mip level 1"):
        torch.ops.occrecon.texture([tex, torch.rand(1, 3, 3, 3, dtype=torch.float64)], uv, da, None, 3, 1)
    with pytest.raises(RuntimeError, match="requires uv_da"):
        torch.ops.occrecon.texture([tex], uv, None, None, 3, 1)
    with pytest.raises(RuntimeError, match="boundary"):
        torch.ops.occrecon.texture([tex], uv, None, None, 1, 7)


def test_log_level(caplog):
    import logging

    assert dr.get_log_level() == 1  # warning, nvdiffrast's default
    tex, uv, da, bias = _inputs()
    try:
        dr.set_log_level(0)
        assert dr.get_log_level() == 0
        with caplog.at_level(logging.INFO, logger="occrecon.render"):
            dr.texture(tex, uv, uv_da=da)
        assert any("mip stack of 4 levels" in r.getMessage() for r in caplog.records)
        dr.set_log_level(2)
        caplog.clear()
        dr.texture(tex, uv, uv_da=da)
        assert dr.get_log_level() == 2 and not caplog.records
        for bad in (-1, 4, 1.0, True, "info"):
            with pytest.raises(ValueError, match="level"):
                dr.set_log_level(bad)
    finally:
        dr.set_log_level(1)


# ------------------------------------------------------------------------------------------- cube maps
def _cube_inputs(nt=1, n=2, dtype=torch.float64, seed=0, size=8, grad=False, near_edges=False):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand(nt, 6, size, size, 3, generator=g, dtype=dtype)
    d = torch.randn(n, 5, 7, 3, generator=g, dtype=dtype)
    if near_edges:  # two components of nearly equal size: samples next to an edge or a corner of the cube
        d = torch.sign(d) * (1 + 0.03 * torch.rand(d.shape, generator=g, dtype=dtype))
        d[..., 1] *= torch.where(torch.rand(d.shape[:-1], generator=g) < 0.5, 1.0, 0.3).to(dtype)
    da = torch.randn(n, 5, 7, 6, generator=g, dtype=dtype) * 0.3
    bias = torch.randn(n, 5, 7, generator=g, dtype=dtype)
    if grad:
        for t in (tex, d, da, bias):
            t.requires_grad_()
    return tex, d, da, bias


@pytest.mark.parametrize("near_edges", [False, True])
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("fm", FILTERS)
def test_cube_matches_reference_values_and_gradients(fm, nt, near_edges):
    _assert_matches_reference(fm, "cube", *_cube_inputs(nt=nt, grad=True, near_edges=near_edges))


def test_cube_golden_faces_edges_and_corners():
    tex = torch.arange(6, dtype=torch.float64).reshape(1, 6, 1, 1, 1).expand(1, 6, 4, 4, 1).contiguous()
    axes = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    got = dr.texture(tex, axes.reshape(1, 1, 6, 3), boundary_mode="cube").flatten().tolist()
    assert got == [0, 1, 2, 3, 4, 5]  # +X, -X, +Y, -Y, +Z, -Z
    # exactly on the +X/+Z edge: half of each face's edge texel; on a corner: the three faces' mean
    edge = torch.tensor([[1.0, 0.1, 1.0]], dtype=torch.float64)
    assert dr.texture(tex, edge.reshape(1, 1, 1, 3), boundary_mode="cube").item() == pytest.approx(2.0)
    corner = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    assert dr.texture(tex, corner.reshape(1, 1, 1, 3), boundary_mode="cube").item() == pytest.approx(2.0)
    # OpenGL's orientation: +X face, s = 0.5 - z / 2|x|, t = 0.5 - y / 2|x| (t = row)
    ramp = torch.zeros(1, 6, 4, 4, 1, dtype=torch.float64)
    ramp[0, 0, :, :, 0] = torch.arange(16, dtype=torch.float64).reshape(4, 4)  # value = 4 row + col
    d = torch.tensor([[1.0, -(2 * 0.875 - 1), -(2 * 0.375 - 1)]], dtype=torch.float64)  # s = 0.375, t = 0.875
    assert dr.texture(ramp, d.reshape(1, 1, 1, 3), boundary_mode="cube", filter_mode="nearest").item() == 4 * 3 + 1
    assert dr.texture(tex, torch.zeros(1, 1, 1, 3, dtype=torch.float64), boundary_mode="cube").item() == 0


def test_cube_gradcheck_and_mip():
    tex, d, da, bias = _cube_inputs(nt=2, grad=True, size=4)
    assert torch.autograd.gradcheck(
        lambda t, u, a, b: dr.texture(t, u, uv_da=a, mip_level_bias=b, boundary_mode="cube"), (tex, d, da, bias))
    mip = dr.texture_construct_mip(tex.detach(), cube_mode=True)
    assert [tuple(t.shape) for t in mip.levels] == [(2, 6, 2, 2, 3), (2, 6, 1, 1, 3)]
    torch.testing.assert_close(mip.levels[1][:, :, 0, 0], tex.detach().mean((2, 3)))
    with pytest.raises(ValueError, match="not this texture"):
        dr.texture(tex.detach()[:, 0], d[..., :2].detach(), uv_da=da.detach()[..., :4], mip=mip)
    with pytest.raises(ValueError, match="cube map mode"):
        dr.texture(tex.detach()[:, :5], d.detach(), boundary_mode="cube")
    with pytest.raises(ValueError, match="uv must be"):
        dr.texture(tex.detach(), d.detach()[..., :2], boundary_mode="cube")
