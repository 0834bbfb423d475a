"""neighbour_min / neighbour_loss: values against the pure-PyTorch reference and closed forms, gradients,
opcheck, determinism, torch.compile, bad input."""
from __future__ import annotations

import pytest
import torch

import occrecon  # noqa: F401  (registers torch.ops.occrecon)
from occrecon import ops
from occrecon.ops import reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _images(b, h, w, c=3, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, c, h, w, generator=g, dtype=dtype)
    r = torch.rand(b, c, h, w, generator=g, dtype=dtype)
    reg = torch.rand(b, 1, h, w, generator=g) > 0.4
    return t.to(device), r.to(device), reg.to(device)


# ---------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("b,h,w", [(1, 7, 9), (4, 13, 17), (1, 16, 16), (4, 8, 31)])
@pytest.mark.parametrize("use_region", [False, True])
def test_matches_reference_float64(k, b, h, w, use_region):
    t, r, reg = _images(b, h, w, seed=k * 100 + h)
    region = reg if use_region else None
    d2, idx = ops.neighbour_min(t, r, k=k, region=region)
    d2_ref, idx_ref = reference.neighbour_min(t, r, k=k, region=region)
    assert d2.shape == (b, h, w) and idx.shape == (b, h, w)
    assert idx.dtype == torch.int32 and d2.dtype == torch.float64
    torch.testing.assert_close(d2, d2_ref, rtol=0, atol=1e-15)
    assert torch.equal(idx.long(), idx_ref)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_float32_and_channel_counts(k, channels):
    t, r, reg = _images(2, 11, 14, c=channels, dtype=torch.float32, seed=7)
    d2, idx = ops.neighbour_min(t, r, k=k, region=reg)
    d2_ref, _ = reference.neighbour_min(t, r, k=k, region=reg)
    torch.testing.assert_close(d2, d2_ref, rtol=1e-6, atol=1e-6)
    _assert_idx_consistent(t, r, d2, idx, k)


def _assert_idx_consistent(t, r, d2, idx, k):
    """The distance to the neighbour that idx names, recomputed directly, equals d2."""
    dy, dx = ops.decode_offset(idx.long(), k)
    b, _, h, w = t.shape
    bb, yy, xx = torch.meshgrid(torch.arange(b), torch.arange(h), torch.arange(w), indexing="ij")
    qy, qx = yy + dy, xx + dx
    assert ((qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)).all()
    picked = r[bb, :, qy, qx]  # (B, H, W, C)
    direct = ((t.permute(0, 2, 3, 1) - picked) ** 2).sum(-1)
    direct = torch.where(idx >= 0, direct, torch.zeros_like(direct))
    torch.testing.assert_close(d2, direct, rtol=1e-6, atol=1e-6)


def test_k1_is_pixelwise_squared_distance():
    t, r, _ = _images(3, 9, 10)
    d2, idx = ops.neighbour_min(t, r, k=1)
    torch.testing.assert_close(d2, ((t - r) ** 2).sum(1), rtol=0, atol=0)
    assert (idx == 0).all()


def test_shifted_copy_has_zero_distance_inside():
    """A render shifted by (1, -2) px is matched exactly by a 5x5 window away from the border."""
    t, _, _ = _images(2, 20, 24)
    r = torch.roll(t, shifts=(1, -2), dims=(2, 3))
    d2, idx = ops.neighbour_min(t, r, k=5)
    inner = d2[:, 2:-2, 3:-3]
    assert inner.abs().max() == 0
    dy, dx = ops.decode_offset(idx[:, 2:-2, 3:-3].long(), 5)
    assert (dy == 1).all() and (dx == -2).all()


def test_ties_go_to_first_in_window_order():
    t = torch.zeros(1, 3, 6, 7)
    r = torch.zeros(1, 3, 6, 7)
    d2, idx = ops.neighbour_min(t, r, k=3)
    assert (d2 == 0).all()
    assert idx[0, 0, 0] == 4  # (dy, dx) = (0, 0): the first in-image cell at the top-left corner
    assert idx[0, 0, 3] == 3  # top row: dy = -1 is outside, first is (0, -1)
    assert idx[0, 3, 0] == 1  # left column: (-1, 0)
    assert (idx[0, 1:, 1:] == 0).all()  # everywhere else: (-1, -1)


def test_region_restricts_candidates_and_empty_window_reports_none():
    t, r, _ = _images(1, 9, 9)
    region = torch.zeros(1, 9, 9, dtype=torch.bool)
    region[0, 4, 4] = True  # a single candidate pixel
    d2, idx = ops.neighbour_min(t, r, k=3, region=region)
    for y in range(9):
        for x in range(9):
            if abs(y - 4) <= 1 and abs(x - 4) <= 1:
                assert idx[0, y, x] == (4 - y + 1) * 3 + (4 - x + 1)
                torch.testing.assert_close(d2[0, y, x], ((t[0, :, y, x] - r[0, :, 4, 4]) ** 2).sum())
            else:
                assert idx[0, y, x] == -1 and d2[0, y, x] == 0


@pytest.mark.parametrize("shape", ["b1hw", "bhw"])
def test_float_region_thresholded_and_both_layouts(shape):
    t, r, reg = _images(2, 8, 9)
    soft = reg.double() * 0.7 + 0.2  # inside: 0.9, outside: 0.2
    if shape == "bhw":
        soft = soft[:, 0]
    d2, idx = ops.neighbour_min(t, r, k=3, region=soft)
    d2_b, idx_b = ops.neighbour_min(t, r, k=3, region=reg)
    assert torch.equal(d2, d2_b) and torch.equal(idx, idx_b)


def test_nan_propagates_like_torch_min():
    t, r, _ = _images(1, 8, 8)
    t[0, 1, 2, 3] = float("nan")
    r[0, 0, 6, 6] = float("nan")
    d2, idx = ops.neighbour_min(t, r, k=3)
    d2_ref, idx_ref = reference.neighbour_min(t, r, k=3)
    assert torch.equal(torch.isnan(d2), torch.isnan(d2_ref))
    assert torch.isnan(d2[0, 2, 3]) and torch.isnan(d2[0, 5:8, 5:8]).all()
    assert torch.equal(idx.long(), idx_ref)
    assert torch.isfinite(d2).sum() == 64 - 1 - 9


def test_non_contiguous_inputs_accepted():
    t, r, reg = _images(2, 10, 12)
    t_nc = t.to(memory_format=torch.channels_last)
    r_nc = r.transpose(2, 3).contiguous().transpose(2, 3)
    assert not t_nc.is_contiguous() and not r_nc.is_contiguous()
    reg_nc = reg[:, 0].transpose(1, 2).contiguous().transpose(1, 2)
    got = ops.neighbour_min(t_nc, r_nc, k=3, region=reg_nc)
    want = ops.neighbour_min(t, r, k=3, region=reg)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_empty_batch():
    t = torch.zeros(0, 3, 5, 6, requires_grad=True)
    r = torch.zeros(0, 3, 5, 6, requires_grad=True)
    d2, idx = ops.neighbour_min(t, r, k=3)
    assert d2.shape == (0, 5, 6) and idx.shape == (0, 5, 6)
    d2.sum().backward()
    assert t.grad.shape == t.shape and r.grad.shape == r.shape


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("use_region", [False, True])
def test_gradcheck(k, use_region):
    t, r, reg = _images(2, 6, 7, seed=k)
    t.requires_grad_(True)
    r.requires_grad_(True)
    region = reg if use_region else None
    assert torch.autograd.gradcheck(lambda a, b: ops.neighbour_min(a, b, k=k, region=region)[0], (t, r),
                                    eps=1e-6, atol=1e-8)


def test_gradient_matches_reference_autograd():
    t, r, reg = _images(3, 12, 15, seed=3)
    g = torch.rand(3, 12, 15, dtype=torch.float64)
    grads = []
    for fn in (ops.neighbour_min, reference.neighbour_min):
        a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
        d2, _ = fn(a, b, k=5, region=reg)
        (d2 * g).sum().backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


def test_opcheck():
    t, r, reg = _images(2, 6, 7, dtype=torch.float32)
    t.requires_grad_(True)
    r.requires_grad_(True)
    torch.library.opcheck(torch.ops.occrecon.neighbour_min.default, (t, r, reg[:, 0].contiguous(), 3))
    torch.library.opcheck(torch.ops.occrecon.neighbour_min.default, (t, r, None, 5))
    d2, idx = ops.neighbour_min(t.detach(), r.detach(), k=3)
    torch.library.opcheck(torch.ops.occrecon.neighbour_min_backward.default,
                          (torch.rand_like(d2), t.detach(), r.detach(), idx, 3))


def test_backward_op_tolerates_garbage_idx():
    """A hand-made idx that names no in-image window cell is 'no candidate', never an out-of-bounds read."""
    t, r, _ = _images(1, 5, 6)
    g = torch.ones(1, 5, 6, dtype=torch.float64)
    for bad in (999, -7, 8):  # 8 = (dy, dx) = (1, 1): out of the image on the last row/column only
        idx = torch.full((1, 5, 6), bad, dtype=torch.int32)
        gt, gr = torch.ops.occrecon.neighbour_min_backward(g, t, r, idx, 3)
        assert torch.isfinite(gt).all() and torch.isfinite(gr).all()
        if bad != 8:
            assert (gt == 0).all() and (gr == 0).all()
        else:
            assert (gt[0, :, -1, :] == 0).all() and (gt[0, :, :, -1] == 0).all()
            assert (gt[0, :, :-1, :-1] != 0).all()


def test_deterministic_bitwise():
    t, r, reg = _images(4, 40, 50, dtype=torch.float32, seed=11)
    outs = []
    for _ in range(2):
        a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
        d2, idx = ops.neighbour_min(a, b, k=5, region=reg)
        (d2 * torch.linspace(0, 1, d2.numel()).view_as(d2)).sum().backward()
        outs.append((d2, idx, a.grad, b.grad))
    for x, y in zip(*outs):
        assert torch.equal(x, y)


def _bytes_allocated(fn):
    """Total bytes allocated by the ops that fn runs (each allocation counted once, at the op that made it)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)


def test_no_k_squared_memory():
    """Forward + backward allocate O(B*H*W) memory: no (k*k, B, H, W) stack as in the reference."""
    t, r, _ = _images(2, 64, 64, dtype=torch.float32)
    image_bytes = t.numel() * t.element_size()

    def kernel():
        a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
        d2, _ = ops.neighbour_min(a, b, k=7)
        d2.sum().backward()

    def ref():
        a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
        d2, _ = reference.neighbour_min(a, b, k=7)
        d2.sum().backward()

    # two clones, two gradients, d2 + idx: about 5 image-sized buffers in all
    assert _bytes_allocated(kernel) <= 6 * image_bytes
    assert _bytes_allocated(ref) >= 49 / 3 * image_bytes  # the reference's window stack, for contrast


# ---------------------------------------------------------------------------------------------- loss
def test_neighbour_loss_values():
    t, r, reg = _images(2, 10, 11, seed=5)
    mask = torch.rand(2, 1, 10, 11, dtype=torch.float64)
    d2, _ = reference.neighbour_min(t, r, k=3, region=reg)
    m = mask[:, 0]
    regf = reg[:, 0].double()
    want = (m * d2).sum() / regf.sum()
    torch.testing.assert_close(ops.neighbour_loss(t, r, mask, reg, k=3), want)
    want_unsq = (m * d2.sqrt()).sum() / regf.sum()
    torch.testing.assert_close(ops.neighbour_loss(t, r, mask, reg, k=3, squared=False), want_unsq)
    per_image = (m * d2).sum((1, 2)) / regf.sum((1, 2))
    torch.testing.assert_close(ops.neighbour_loss(t, r, mask, reg, k=3, reduction="none"), per_image)
    # no region: every pixel is a candidate and the denominator is H*W per image
    d2_all, _ = reference.neighbour_min(t, r, k=3)
    torch.testing.assert_close(ops.neighbour_loss(t, r, mask, None, k=3), (m * d2_all).sum() / (2 * 10 * 11))


@pytest.mark.parametrize("squared", [True, False])
def test_neighbour_loss_gradcheck_all_inputs(squared):
    t, r, reg = _images(2, 6, 6, seed=9)
    mask = torch.rand(2, 6, 6, dtype=torch.float64, requires_grad=True)
    t.requires_grad_(True)
    r.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b, m: ops.neighbour_loss(a, b, m, reg, k=3, squared=squared), (t, r, mask), eps=1e-6, atol=1e-8)


def test_neighbour_loss_mask_gradient_is_distance():
    t, r, reg = _images(1, 7, 8)
    mask = torch.ones(1, 1, 7, 8, dtype=torch.float64, requires_grad=True)
    loss = ops.neighbour_loss(t, r, mask, reg, k=3)
    loss.backward()
    d2, _ = ops.neighbour_min(t, r, k=3, region=reg)
    torch.testing.assert_close(mask.grad[:, 0], d2 / reg.sum())


def test_unsquared_loss_safe_gradient_at_zero():
    t, _, _ = _images(1, 6, 6)
    t.requires_grad_(True)
    r = t.detach().clone().requires_grad_(True)
    mask = torch.ones(1, 6, 6, dtype=torch.float64, requires_grad=True)
    loss = ops.neighbour_loss(t, r, mask, None, k=3, squared=False)
    loss.backward()
    assert loss.item() == 0
    for g in (t.grad, r.grad, mask.grad):
        assert torch.isfinite(g).all() and (g == 0).all()


def test_empty_region_gives_zero_loss():
    t, r, _ = _images(1, 5, 5)
    region = torch.zeros(1, 5, 5, dtype=torch.bool)
    loss = ops.neighbour_loss(t, r, torch.zeros(1, 5, 5, dtype=torch.float64), region, k=3)
    assert loss.item() == 0


# ---------------------------------------------------------------------------------------------- compile
def test_torch_compile_matches_eager():
    t, r, reg = _images(2, 16, 18, dtype=torch.float32, seed=2)

    def f(a, b):
        return ops.neighbour_loss(a, b, torch.ones_like(a[:, :1]), reg, k=3)

    compiled = torch.compile(f, fullgraph=True)
    a1, b1 = t.clone().requires_grad_(), r.clone().requires_grad_()
    a2, b2 = t.clone().requires_grad_(), r.clone().requires_grad_()
    out_c = compiled(a1, b1)
    out_e = f(a2, b2)
    torch.testing.assert_close(out_c, out_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(a1.grad, a2.grad)
    torch.testing.assert_close(b1.grad, b2.grad)


# ---------------------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("k", [1, 3, 5])
def test_cuda_matches_cpu(k):
    t, r, reg = _images(3, 33, 47, seed=k)
    a, b = t.clone().requires_grad_(), r.clone().requires_grad_()
    ac, bc = t.cuda().requires_grad_(), r.cuda().requires_grad_()
    d2, idx = ops.neighbour_min(a, b, k=k, region=reg)
    d2c, idxc = ops.neighbour_min(ac, bc, k=k, region=reg.cuda())
    torch.testing.assert_close(d2c.cpu(), d2, rtol=1e-12, atol=1e-12)
    assert torch.equal(idxc.cpu(), idx)
    g = torch.rand_like(d2)
    (d2 * g).sum().backward()
    (d2c * g.cuda()).sum().backward()
    torch.testing.assert_close(ac.grad.cpu(), a.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bc.grad.cpu(), b.grad, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------- bad input
def _ok():
    return torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)


@pytest.mark.parametrize("case,exc,match", [
    ("rank", ValueError, "target must be"),
    ("shape_mismatch", ValueError, "render shape"),
    ("int_dtype", TypeError, "target must be float32 or float64"),
    ("half_dtype", TypeError, "render must be float32 or float64"),
    ("dtype_mismatch", TypeError, "render dtype"),
    ("even_k", ValueError, "k must be odd"),
    ("zero_k", ValueError, "k must be odd"),
    ("negative_k", ValueError, "k must be odd"),
    ("float_k", TypeError, "k must be an int"),
    ("k_too_big", ValueError, "larger than the image"),
    ("region_shape", ValueError, "region must be"),
    ("region_dtype", TypeError, "region must be bool or floating"),
    ("not_tensor", TypeError, "target must be a torch.Tensor"),
    ("no_channels", ValueError, "at least one channel"),
    ("meta_device", ValueError, "render is on meta"),
])
def test_bad_input(case, exc, match):
    t, r = _ok()
    kwargs = {"k": 3}
    if case == "rank":
        t, r = t[0], r[0]
    elif case == "shape_mismatch":
        r = torch.rand(1, 3, 8, 9)
    elif case == "int_dtype":
        t, r = (t * 255).to(torch.uint8), (r * 255).to(torch.uint8)
    elif case == "half_dtype":
        r = r.half()
    elif case == "dtype_mismatch":
        r = r.double()
    elif case == "even_k":
        kwargs["k"] = 4
    elif case == "zero_k":
        kwargs["k"] = 0
    elif case == "negative_k":
        kwargs["k"] = -3
    elif case == "float_k":
        kwargs["k"] = 3.0
    elif case == "k_too_big":
        kwargs["k"] = 9
    elif case == "region_shape":
        kwargs["region"] = torch.ones(1, 2, 8, 8, dtype=torch.bool)
    elif case == "region_dtype":
        kwargs["region"] = torch.ones(1, 8, 8, dtype=torch.int64)
    elif case == "not_tensor":
        t = t.numpy()
    elif case == "no_channels":
        t, r = torch.rand(1, 0, 8, 8), torch.rand(1, 0, 8, 8)
    elif case == "meta_device":
        r = r.to("meta")
    with pytest.raises(exc, match=match):
        ops.neighbour_min(t, r, **kwargs)


def test_bad_loss_arguments():
    t, r = _ok()
    with pytest.raises(ValueError, match="mask must be"):
        ops.neighbour_loss(t, r, torch.ones(1, 8, 9), None)
    with pytest.raises(TypeError, match="mask must be floating point"):
        ops.neighbour_loss(t, r, torch.ones(1, 8, 8, dtype=torch.bool), None)
    with pytest.raises(ValueError, match="reduction"):
        ops.neighbour_loss(t, r, torch.ones(1, 8, 8), None, reduction="sum")


def test_direct_torch_ops_call_is_checked_in_cpp():
    """The C++ checks guard direct torch.ops calls that bypass the Python wrapper."""
    t, r = _ok()
    with pytest.raises(RuntimeError, match="k must be odd"):
        torch.ops.occrecon.neighbour_min(t, r, None, 2)
    with pytest.raises(RuntimeError, match="region must be"):
        torch.ops.occrecon.neighbour_min(t, r, torch.ones(1, 4, 4, dtype=torch.bool), 3)
    with pytest.raises(RuntimeError, match="idx must be"):
        torch.ops.occrecon.neighbour_min_backward(torch.ones(1, 8, 8), t, r, torch.zeros(1, 8, 8, dtype=torch.int64), 3)
