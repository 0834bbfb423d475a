"""sh_shade: basis against hand-computed closed forms, values against the pure-PyTorch reference, layouts,
gradients, opcheck, determinism, torch.compile, bad input."""
from __future__ import annotations

import math

import pytest
import torch

import occrecon  # noqa: F401  (registers torch.ops.occrecon)
from occrecon import ops
from occrecon.ops import reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Deep3D's constants, written out independently of the package.
A = [math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)]
C = [1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi), 3 * math.sqrt(5) / math.sqrt(12 * math.pi)]


def _unit(shape, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(*shape, 3, generator=g, dtype=dtype)
    return (n / n.norm(dim=-1, keepdim=True)).to(device)


def _inputs(b, inner, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed + 1)
    n = _unit((b, *inner), dtype, seed)
    alb = torch.rand(b, *inner, 3, generator=g, dtype=dtype)
    gamma = torch.randn(b, 9, 3, generator=g, dtype=dtype) * 0.3
    gamma[:, 0] += 0.8
    return n.to(device), alb.to(device), gamma.to(device)


def _basis_via_op(normals):
    """Y_k(n) read off the op: light only band function k, white albedo, red channel."""
    v = normals.shape[0]
    cols = []
    for k in range(9):
        gamma = torch.zeros(1, 9, 3, dtype=normals.dtype)
        gamma[0, k, 0] = 1.0
        out = ops.sh_shade(normals[None], torch.ones(1, v, 3, dtype=normals.dtype), gamma)
        cols.append(out[0, :, 0])
    return torch.stack(cols, dim=-1)


# ------------------------------------------------------------------------------------------------ values
def test_basis_closed_form_on_known_normals():
    s2, s3 = 1 / math.sqrt(2), 1 / math.sqrt(3)
    normals = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1),
               (s2, s2, 0), (0, s2, -s2), (-s2, 0, s2), (s3, s3, s3), (s3, -s3, -s3)]
    k0, k1, k2 = A[0] * C[0], A[1] * C[1], A[2] * C[2]
    want = []
    for x, y, z in normals:  # Deep3D's compute_color, by hand
        want.append([k0, -k1 * y, k1 * z, -k1 * x, k2 * x * y, -k2 * y * z, k2 / (2 * math.sqrt(3)) * (3 * z * z - 1),
                     -k2 * x * z, k2 / 2 * (x * x - y * y)])
    n = torch.tensor(normals, dtype=torch.float64)
    want = torch.tensor(want, dtype=torch.float64)
    torch.testing.assert_close(_basis_via_op(n), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(reference.sh_basis(n), want, rtol=0, atol=1e-15)
    # Spot values: +z gives Y2 = sqrt(pi), Y6 = 2 K2 / (2 sqrt 3) = sqrt(5 pi / 8); +x gives Y8 = sqrt(15 pi / 32).
    assert abs(want[4, 2] - math.sqrt(math.pi)) < 1e-15
    assert abs(want[4, 6] - math.sqrt(5 * math.pi / 8)) < 1e-14
    assert abs(want[0, 8] - math.sqrt(15 * math.pi / 32)) < 1e-15
    assert abs(want[0, 0] - math.sqrt(math.pi) / 2) < 1e-15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_light_is_albedo_times_gamma0_y0(dtype):
    n, alb, _ = _inputs(3, (50,), dtype)
    gamma = torch.zeros(3, 9, 3, dtype=dtype)
    gamma[:, 0] = torch.tensor([[0.8, 0.5, 1.3], [1.0, 0.0, 2.0], [0.1, 0.2, 0.3]], dtype=dtype)
    out = ops.sh_shade(n, alb, gamma)
    want = alb * gamma[:, None, 0] * (math.sqrt(math.pi) / 2)
    torch.testing.assert_close(out, want, rtol=1e-6 if dtype == torch.float32 else 1e-15, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("inner", [(1,), (37,), (2500,), (9, 11), (40, 33)])
@pytest.mark.parametrize("b", [1, 3])
def test_matches_reference_float64(device, inner, b):
    n, alb, gamma = _inputs(b, inner, seed=b * 7 + len(inner), device=device)
    out = ops.sh_shade(n, alb, gamma)
    assert out.shape == n.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, reference.sh_shade(n, alb, gamma), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_matches_reference_float32_per_pixel(device):
    n, alb, gamma = _inputs(2, (32, 40), torch.float32, device=device)
    torch.testing.assert_close(ops.sh_shade(n, alb, gamma), reference.sh_shade(n, alb, gamma), rtol=1e-5, atol=1e-5)


def test_flat_gamma_matches_band_rgb_layout():
    n, alb, gamma = _inputs(4, (60,))
    flat = torch.cat([gamma[:, :, 0], gamma[:, :, 1], gamma[:, :, 2]], dim=1)  # [R9 | G9 | B9]
    assert flat.shape == (4, 27)
    assert torch.equal(ops.sh_shade(n, alb, flat), ops.sh_shade(n, alb, gamma))
    # Deep3D's layout by hand: channel c of vertex v is albedo * sum_k flat[9 c + k] Y_k.
    y = reference.sh_basis(n)
    by_hand = torch.stack([(y * flat[:, None, 9 * c:9 * c + 9]).sum(-1) for c in range(3)], dim=-1) * alb
    torch.testing.assert_close(ops.sh_shade(n, alb, flat), by_hand, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("shared_shape", ["1N3", "N3"])
def test_albedo_shared_by_batch(shared_shape):
    n, alb, gamma = _inputs(3, (8, 9))
    a1 = alb[:1] if shared_shape == "1N3" else alb[0]
    got = ops.sh_shade(n, a1, gamma)
    torch.testing.assert_close(got, ops.sh_shade(n, alb[:1].expand_as(alb).contiguous(), gamma), rtol=0, atol=0)


def test_non_unit_normals_used_as_given():
    n, alb, gamma = _inputs(2, (20,))
    n2 = n * 1.7
    torch.testing.assert_close(ops.sh_shade(n2, alb, gamma), reference.sh_shade(n2, alb, gamma), rtol=1e-13,
                               atol=1e-14)
    assert not torch.allclose(ops.sh_shade(n2, alb, gamma), ops.sh_shade(n, alb, gamma))


def test_non_contiguous_and_empty():
    n, alb, gamma = _inputs(2, (10, 12))
    n_nc = n.transpose(1, 2).contiguous().transpose(1, 2)
    g_nc = gamma.transpose(1, 2).contiguous().transpose(1, 2)
    assert not n_nc.is_contiguous() and not g_nc.is_contiguous()
    assert torch.equal(ops.sh_shade(n_nc, alb, g_nc), ops.sh_shade(n, alb, gamma))
    for b, v in [(0, 5), (2, 0)]:
        ne = torch.zeros(b, v, 3, dtype=torch.float64, requires_grad=True)
        ae = torch.zeros(b, v, 3, dtype=torch.float64, requires_grad=True)
        ge = torch.ones(b, 9, 3, dtype=torch.float64, requires_grad=True)
        out = ops.sh_shade(ne, ae, ge)
        assert out.shape == (b, v, 3)
        out.sum().backward()
        assert ge.grad.shape == (b, 9, 3) and (ge.grad == 0).all()


# ------------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("albedo_kind", ["batched", "shared"])
@pytest.mark.parametrize("flat", [False, True])
def test_gradcheck_all_inputs(albedo_kind, flat):
    n, alb, gamma = _inputs(2, (3, 4), seed=5)
    if albedo_kind == "shared":
        alb = alb[0]
    if flat:
        gamma = gamma.transpose(1, 2).reshape(2, 27)
    args = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    assert torch.autograd.gradcheck(ops.sh_shade, args)


def test_gradients_match_reference_large():
    n, alb, gamma = _inputs(3, (3000,), seed=2)  # several CPU chunks
    ours = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    refs = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    w = torch.randn(3, 3000, 3, dtype=torch.float64)
    (ops.sh_shade(*ours) * w).sum().backward()
    (reference.sh_shade(*refs) * w).sum().backward()
    for a, b in zip(ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_opcheck_both_ops():
    n, alb, gamma = _inputs(2, (13,))
    torch.library.opcheck(torch.ops.occrecon.sh_shade.default, (n, alb, gamma))
    torch.library.opcheck(torch.ops.occrecon.sh_shade.default, (n.requires_grad_(), alb[:1], gamma))
    go = torch.randn_like(n)
    torch.library.opcheck(torch.ops.occrecon.sh_shade_backward.default, (go, n.detach(), alb, gamma))
    torch.library.opcheck(torch.ops.occrecon.sh_shade_backward.default, (go, n.detach(), alb[:1], gamma))


def _grads(n, alb, gamma, w):
    ts = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    out = ops.sh_shade(*ts)
    (out * w).sum().backward()
    return [out] + [t.grad for t in ts]


@pytest.mark.parametrize("shared", [False, True])
def test_deterministic_across_runs_and_threads(shared):
    n, alb, gamma = _inputs(3, (5000,), torch.float32, seed=3)
    if shared:
        alb = alb[:1]
    w = torch.randn(3, 5000, 3, generator=torch.Generator().manual_seed(9))
    old = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1, 3):
            torch.set_num_threads(threads)
            results.append(_grads(n, alb, gamma, w))
    finally:
        torch.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)


def test_torch_compile_matches_eager():
    n, alb, gamma = _inputs(2, (16, 16), torch.float32)

    def shade(n, alb, gamma):
        return ops.sh_shade(n, alb, gamma + torch.tensor([0.8, 0, 0, 0, 0, 0, 0, 0, 0])[:, None]).clamp(0, 1)

    compiled = torch.compile(shade, backend="inductor", fullgraph=True)
    ins_e = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    ins_c = [t.clone().requires_grad_() for t in (n, alb, gamma)]
    out_e, out_c = shade(*ins_e), compiled(*ins_c)
    torch.testing.assert_close(out_c, out_e)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    for a, b in zip(ins_e, ins_c):
        torch.testing.assert_close(b.grad, a.grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shared", [False, True])
def test_cuda_matches_cpu(shared):
    n, alb, gamma = _inputs(3, (4000,), seed=4)
    if shared:
        alb = alb[:1]
    w = torch.randn(3, 4000, 3, dtype=torch.float64)
    cpu = _grads(n, alb, gamma, w)
    gpu = _grads(n.cuda(), alb.cuda(), gamma.cuda(), w.cuda())
    gpu2 = _grads(n.cuda(), alb.cuda(), gamma.cuda(), w.cuda())
    for a, b, c in zip(cpu, gpu, gpu2):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-12, atol=1e-12)
        assert torch.equal(b, c)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input():
    n, alb, gamma = _inputs(2, (5,))
    with pytest.raises(TypeError, match="normals"):
        ops.sh_shade(n.numpy(), alb, gamma)
    with pytest.raises(TypeError, match="normals"):
        ops.sh_shade(n.half(), alb.half(), gamma.half())
    with pytest.raises(TypeError, match="albedo"):
        ops.sh_shade(n, alb.float(), gamma)
    with pytest.raises(TypeError, match="gamma"):
        ops.sh_shade(n, alb, gamma.float())
    with pytest.raises(ValueError, match="normals"):
        ops.sh_shade(n[..., :2], alb, gamma)
    with pytest.raises(ValueError, match="normals"):
        ops.sh_shade(n[0, 0], alb, gamma)
    with pytest.raises(ValueError, match="albedo"):
        ops.sh_shade(n, alb[:, :4], gamma)
    with pytest.raises(ValueError, match="gamma"):
        ops.sh_shade(n, alb, gamma[:, :8])
    with pytest.raises(ValueError, match="gamma"):
        ops.sh_shade(n, alb, gamma[:1])
    with pytest.raises(ValueError, match="gamma"):
        ops.sh_shade(n, alb, gamma.reshape(2, 27)[:, :26])
    with pytest.raises(TypeError, match="gamma"):
        ops.sh_shade(n, alb, [0.0] * 27)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="albedo"):
            ops.sh_shade(n, alb.cuda(), gamma)
    # Direct op calls are checked in C++ too.
    with pytest.raises(RuntimeError, match="gamma"):
        torch.ops.occrecon.sh_shade(n, alb, gamma[:, :8])
    with pytest.raises(RuntimeError, match="albedo"):
        torch.ops.occrecon.sh_shade(n, alb[:, :4], gamma)
    with pytest.raises(RuntimeError, match="grad_out"):
        torch.ops.occrecon.sh_shade_backward(n[:1], n, alb, gamma)
