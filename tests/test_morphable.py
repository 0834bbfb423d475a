"""occrecon.morphable core: ParamLayout, MorphableModel (forward, gradients, save/load, crop), the albedo prior,
the front-face rule and mesh export. Checked against direct numpy computations."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from occrecon.morphable import (FORMAT_VERSION, MEAN_SKIN_ALBEDO, MorphableModel, ParamLayout, front_face_mask,
                                laplacian_albedo, read_obj, write_obj, write_ply)
from occrecon.morphable import albedo as albedo_mod


def tiny_model(grid, n_id=4, n_exp=3, n_tex=5, seed=0, dtype=np.float32) -> MorphableModel:
    verts, tris, _, lm = grid
    rng = np.random.default_rng(seed)
    V = verts.shape[0]
    return MorphableModel(verts.astype(dtype), rng.normal(size=(n_id, V, 3)), rng.normal(size=(n_exp, V, 3)),
                          rng.uniform(0.2, 0.8, size=(V, 3)), rng.normal(size=(n_tex, V, 3)), tris, lm,
                          units="cm", name="tiny", exp_names=[f"e{k}" for k in range(n_exp)])


# ------------------------------------------------------------------------------------------------ ParamLayout
def test_layout_deep3d_offsets():
    lay = ParamLayout.deep3d()
    assert lay.size == len(lay) == 257
    assert lay.names == ("id", "exp", "tex", "angle", "gamma", "trans")
    expect = {"id": (0, 80), "exp": (80, 144), "tex": (144, 224), "angle": (224, 227), "gamma": (227, 254),
              "trans": (254, 257)}
    for name, (a, b) in expect.items():
        assert lay.slice(name) == slice(a, b)
    assert "gamma=27 [227:254]" in repr(lay) and "size=257" in repr(lay)


def test_layout_split_join_roundtrip():
    lay = ParamLayout.for_model(100, 57, 80)
    theta = torch.randn(4, lay.size)
    parts = lay.split(theta)
    assert [p.shape for p in parts.values()] == [(4, 100), (4, 57), (4, 80), (4, 3), (4, 27), (4, 3)]
    assert torch.equal(parts["exp"], theta[:, 100:157])
    assert torch.equal(lay.join(**parts), theta)
    assert lay == ParamLayout.for_model(100, 57, 80) != ParamLayout.deep3d()


def test_layout_bad_input():
    lay = ParamLayout.deep3d()
    with pytest.raises(ValueError, match=r"theta: expected shape \(B, 257\) for ParamLayout\(id=80"):
        lay.split(torch.zeros(2, 256))
    parts = lay.split(torch.zeros(2, 257))
    with pytest.raises(ValueError, match="missing \\['trans'\\]"):
        lay.join(**{k: v for k, v in parts.items() if k != "trans"})
    parts["gamma"] = torch.zeros(2, 26)
    with pytest.raises(ValueError, match="gamma: expected last dimension 27"):
        lay.join(**parts)
    with pytest.raises(KeyError, match="no group 'pose'"):
        lay.slice("pose")
    with pytest.raises(ValueError, match="duplicate"):
        ParamLayout([("a", 1), ("a", 2)])


# ------------------------------------------------------------------------------------------- MorphableModel
def test_forward_matches_numpy(grid):
    model = tiny_model(grid)
    rng = np.random.default_rng(1)
    s, e, t = rng.normal(size=(3, 4)), rng.uniform(size=(3, 3)), rng.normal(size=(3, 5))
    verts, rgb = model(torch.tensor(s), torch.tensor(e), torch.tensor(t))
    mean, ib, eb = model.mean.numpy(), model.id_basis.numpy(), model.exp_basis.numpy()
    am, ab = model.albedo_mean.numpy(), model.albedo_basis.numpy()
    for b in range(3):
        want_v = mean.astype(np.float64).copy()
        for k in range(4):
            want_v += s[b, k] * ib[k]
        for k in range(3):
            want_v += e[b, k] * eb[k]
        want_a = am + sum(t[b, k] * ab[k] for k in range(5))
        np.testing.assert_allclose(verts[b].numpy(), want_v, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rgb[b].numpy(), want_a, rtol=1e-5, atol=1e-5)
    assert verts.dtype == torch.float32 and verts.shape == (3, 81, 3)


def test_forward_zero_and_none_is_mean(grid):
    model = tiny_model(grid)
    v, a = model(shape=torch.zeros(2, 4))
    assert torch.equal(v, model.mean.expand(2, -1, -1)) and torch.equal(a, model.albedo_mean.expand(2, -1, -1))


def test_gradcheck_float64(grid):
    verts, tris, _, lm = grid
    small = (verts[:6], tris[(tris < 6).all(1)], None, np.full(68, -1))
    model = tiny_model(small, n_id=2, n_exp=2, n_tex=2).double()
    assert model.mean.dtype == torch.float64 and model.triangles.dtype == torch.int32
    args = [torch.randn(2, k, dtype=torch.float64, requires_grad=True) for k in (2, 2, 2)]
    assert torch.autograd.gradcheck(lambda s, e, t: model(s, e, t), args)
    v, a = model(*args)
    (v.sum() + a.sum()).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in args)


def test_forward_bad_input(grid):
    model = tiny_model(grid)
    with pytest.raises(ValueError, match=r"shape: expected shape \(2, 4\)"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"expr: expected shape \(2, 3\)"):
        model(torch.zeros(2, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="albedo: expected a \\(B, K\\) tensor"):
        model(albedo=torch.zeros(5))
    with pytest.raises(TypeError, match="shape: expected a floating dtype"):
        model(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one"):
        model()


def test_constructor_errors(grid):
    verts, tris, _, lm = grid
    V = verts.shape[0]
    ok = dict(mean=verts, id_basis=np.zeros((1, V, 3)), exp_basis=np.zeros((1, V, 3)), albedo_mean=verts,
              albedo_basis=np.zeros((1, V, 3)), triangles=tris, landmarks=lm)
    with pytest.raises(ValueError, match="id_basis: expected shape"):
        MorphableModel(**{**ok, "id_basis": np.zeros((1, V - 1, 3))}, units="cm", name="x")
    with pytest.raises(ValueError, match="landmarks: indices must lie"):
        MorphableModel(**{**ok, "landmarks": np.r_[lm[:-1], V]}, units="cm", name="x")
    with pytest.raises(ValueError, match="landmarks: indices must lie"):
        MorphableModel(**{**ok, "landmarks": np.r_[lm[:-1], -2]}, units="cm", name="x")
    with pytest.raises(ValueError, match="triangles: indices"):
        MorphableModel(**{**ok, "triangles": tris + 1}, units="cm", name="x")


def test_constructor_refuses_nan_and_overflow(grid):
    verts, tris, _, lm = grid
    V = verts.shape[0]
    ok = dict(mean=verts, id_basis=np.zeros((1, V, 3)), exp_basis=np.zeros((1, V, 3)), albedo_mean=verts,
              albedo_basis=np.zeros((1, V, 3)), triangles=tris, landmarks=lm)
    for key, index in (("mean", (7, 2)), ("id_basis", (0, 3, 1)), ("exp_basis", (0, 0, 0)),
                       ("albedo_mean", (V - 1, 0)), ("albedo_basis", (0, 9, 2))):
        for bad in (np.nan, np.inf, 1e39):
            a = np.array(ok[key], np.float64)
            a[index] = bad
            with pytest.raises(ValueError, match=re.escape(f"{key}: 1 NaN/Inf value(s) of {a.size}, the first at "
                                                           f"index {index}")):
                MorphableModel(**{**ok, key: a}, units="cm", name="x")


def test_low_precision_coefficients_are_computed_in_the_models_dtype(grid):
    """A bfloat16 / float16 θ (a network under autocast) gives the model's float32 result for the rounded values, and
    its gradient comes back in its own dtype."""
    model = tiny_model(grid)
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        s, e, t = (torch.randn(2, k, generator=gen).to(dtype).requires_grad_() for k in (4, 3, 5))
        v, a = model(s, e, t)
        want_v, want_a = model(s.float(), e.float(), t.float())
        assert v.dtype == a.dtype == torch.float32
        assert torch.equal(v, want_v) and torch.equal(a, want_a)
        (v.sum() + a.sum()).backward()
        assert s.grad.dtype == e.grad.dtype == t.grad.dtype == dtype


def test_save_load_roundtrip(grid, tmp_path):
    model = tiny_model(grid)
    model.front_face[:10] = False
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as d:
        assert int(d["format_version"]) == FORMAT_VERSION
    back = MorphableModel.load(path)
    for name, buf in model.named_buffers():
        other = getattr(back, name)
        assert other.dtype == buf.dtype and torch.equal(other, buf), name
    assert (back.units, back.name, back.exp_names, back.albedo_source) == ("cm", "tiny", ["e0", "e1", "e2"], "model")
    assert back.layout == model.layout


def test_load_rejects_bad_files(grid, tmp_path):
    np.savez(tmp_path / "a.npz", mean=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'format_version' missing"):
        MorphableModel.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", format_version=99)
    with pytest.raises(ValueError, match="format_version 99"):
        MorphableModel.load(tmp_path / "b.npz")
    tiny_model(grid).save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as d:
        data = {k: d[k] for k in d.files if k != "skin"}
    np.savez(tmp_path / "d.npz", **data)
    with pytest.raises(ValueError, match="'skin'"):
        MorphableModel.load(tmp_path / "d.npz")


def test_exp_bounds_are_kept_by_save_load_and_crop(grid, tmp_path):
    model = tiny_model(grid)
    assert model.exp_bounds is None
    path = model.save(tmp_path / "pca.npz")
    with np.load(path) as d:
        assert "exp_bounds" not in d.files
    assert MorphableModel.load(path).exp_bounds is None
    model.exp_bounds = (0.0, 1.0)
    back = MorphableModel.load(model.save(tmp_path / "blend.npz"))
    assert back.exp_bounds == (0.0, 1.0) and "exp_bounds=(0.0, 1.0)" in repr(back)
    assert model.crop(model.mean[:, 0] >= 0).exp_bounds == (0.0, 1.0)
    verts, tris, _, lm = grid
    for bad in ((1.0, 0.0), (0.0, float("inf")), (0.0, 0.0)):
        with pytest.raises(ValueError, match="exp_bounds"):
            MorphableModel(verts, np.zeros((1, len(verts), 3)), np.zeros((1, len(verts), 3)), np.zeros_like(verts),
                           np.zeros((0, len(verts), 3)), tris, lm, units="cm", name="x", exp_bounds=bad)


def test_crop_reindexes(grid):
    model = tiny_model(grid)
    keep = model.mean[:, 0] >= 0  # right half of the grid
    sub = model.crop(keep)
    old = torch.nonzero(keep).ravel()
    assert torch.equal(sub.mean, model.mean[old]) and torch.equal(sub.id_basis, model.id_basis[:, old])
    tri = model.triangles.long()
    kept = tri[keep[tri].all(1)]
    assert torch.equal(old[sub.triangles.long()], kept)
    for i, v in enumerate(model.landmarks.tolist()):
        assert sub.landmarks[i] == (int((old == v).nonzero()) if keep[v] else -1)


# ------------------------------------------------------------------------------------------ front-face rule
def test_front_face_rule(grid):
    verts, _, _, lm = grid
    verts = verts.copy()
    verts[0, 2] = -5.0  # a vertex far behind the jaw ends ("an ear"): dropped
    mask = front_face_mask(verts, lm)
    # the rule, written out: jaw ends at x = ±0.75 (W = 1.5), chin y = −0.75, brows y = 0.5 (H = 1.25)
    z_ear = verts[lm[0], 2]
    want = ((np.abs(verts[:, 0]) <= 0.75 + 0.02 * 1.5) & (verts[:, 1] >= -0.75 - 0.02 * 1.25)
            & (verts[:, 1] <= 0.5 + 0.35 * 1.25) & (verts[:, 2] >= z_ear - 0.05 * 1.5))
    assert np.array_equal(mask, want) and not mask[0] and 0 < mask.sum() < len(verts)
    bad = lm.copy()
    bad[8] = -1
    with pytest.raises(ValueError, match="landmarks"):
        front_face_mask(verts, bad)


# ------------------------------------------------------------------------------------------- albedo prior
def _dense_laplacian(V, tris):
    edges = {tuple(sorted((int(t[a]), int(t[b])))) for t in tris for a, b in ((0, 1), (1, 2), (2, 0))}
    A = np.zeros((V, V))
    for i, j in edges:
        A[i, j] = A[j, i] = 1.0
    D = np.diag(A.sum(1))
    return D - A, D


@pytest.mark.parametrize("n", [7, 46])  # 49 vertices: dense path; 2116: ARPACK shift-invert path
def test_albedo_basis_is_laplacian_eigenvectors(n, tmp_path, make_grid):
    verts, tris, _, _ = make_grid(n)
    V, K = len(verts), 8
    mean, basis = laplacian_albedo(V, tris, K, cache_dir=tmp_path)
    assert mean.shape == (V, 3) and np.allclose(mean, MEAN_SKIN_ALBEDO)
    assert basis.shape == (K, V, 3) and basis.dtype == np.float32
    L, D = _dense_laplacian(V, tris)
    dih = np.diag(1 / np.sqrt(np.diag(D)))
    lam_ref = np.linalg.eigvalsh(dih @ L @ dih)[:3]
    for k in range(K):
        j, ch = divmod(k, 3)
        assert np.count_nonzero(basis[k][:, [c for c in range(3) if c != ch]]) == 0
        phi = basis[k][:, ch].astype(np.float64) / (0.1 / np.sqrt(1 + j))
        assert abs(np.sqrt(np.mean(phi ** 2)) - 1) < 1e-5
        lam = phi @ L @ phi / (phi @ D @ phi)
        assert lam == pytest.approx(lam_ref[j], abs=1e-5)
        assert np.linalg.norm(L @ phi - lam * D @ phi) < 1e-3 * np.linalg.norm(D @ phi)
        assert phi[np.argmax(np.abs(phi) >= 0.5 * np.abs(phi).max())] > 0
    assert np.allclose(basis[0][:, 0], 0.1)  # the constant mode on a connected mesh


def test_albedo_cache_and_determinism(grid, tmp_path, monkeypatch):
    verts, tris, _, _ = grid
    _, b1 = laplacian_albedo(len(verts), tris, 7, cache_dir=tmp_path / "c1")
    _, b2 = laplacian_albedo(len(verts), tris, 7, cache_dir=tmp_path / "c2")
    assert np.array_equal(b1, b2)
    files = list((tmp_path / "c1").glob("*.npz"))
    assert len(files) == 1 and "_K7" in files[0].name

    def fail(*a, **k):
        raise AssertionError("cache not used")

    monkeypatch.setattr(albedo_mod, "laplacian_eigenvectors", fail)
    _, b3 = laplacian_albedo(len(verts), tris, 7, cache_dir=tmp_path / "c1")
    assert np.array_equal(b1, b3)
    with pytest.raises(AssertionError):  # another K or another mesh is another key
        laplacian_albedo(len(verts), tris, 8, cache_dir=tmp_path / "c1")
    with pytest.raises(AssertionError):
        laplacian_albedo(len(verts), tris[::-1], 7, cache_dir=tmp_path / "c1")


# ------------------------------------------------------------------------------------------------- export
def _parse_obj_colours(path):
    vs, fs = [], []
    for line in open(path):
        p = line.split()
        if p and p[0] == "v":
            vs.append([float(x) for x in p[1:]])
        elif p and p[0] == "f":
            fs.append([int(x) - 1 for x in p[1:]])
    return np.array(vs), np.array(fs)


def _parse_ply(path):
    lines = open(path).read().splitlines()
    end = lines.index("end_header")
    nv = int(next(line for line in lines if line.startswith("element vertex")).split()[-1])
    nf = int(next(line for line in lines if line.startswith("element face")).split()[-1])
    body = [line.split() for line in lines[end + 1:]]
    assert len(body) == nv + nf
    v = np.array([[float(x) for x in r[:3]] for r in body[:nv]])
    c = np.array([[int(x) for x in r[3:]] for r in body[:nv]])
    f = np.array([[int(x) for x in r[1:]] for r in body[nv:]])
    assert all(r[0] == "3" for r in body[nv:])
    return v, c, f


def test_export_obj_ply_roundtrip(grid, tmp_path):
    verts, tris, _, _ = grid
    rng = np.random.default_rng(3)
    cols = rng.uniform(-0.1, 1.1, size=verts.shape)
    write_obj(tmp_path / "m.obj", torch.tensor(verts), torch.tensor(tris, dtype=torch.int32), torch.tensor(cols))
    v, f = _parse_obj_colours(tmp_path / "m.obj")
    np.testing.assert_allclose(v[:, :3], verts, rtol=1e-8)
    np.testing.assert_allclose(v[:, 3:], np.clip(cols, 0, 1), atol=1e-5)
    assert np.array_equal(f, tris)
    rv, rt = read_obj(tmp_path / "m.obj")
    assert np.allclose(rv, verts) and np.array_equal(rt, tris)
    write_ply(tmp_path / "m.ply", verts, tris, cols)
    v, c, f = _parse_ply(tmp_path / "m.ply")
    np.testing.assert_allclose(v, verts, rtol=1e-6, atol=1e-7)
    assert np.array_equal(c, np.rint(np.clip(cols, 0, 1) * 255)) and np.array_equal(f, tris)
    write_ply(tmp_path / "n.ply", verts, tris)
    assert "red" not in (tmp_path / "n.ply").read_text()
    with pytest.raises(ValueError, match="colors: expected shape"):
        write_obj(tmp_path / "x.obj", verts, tris, cols[:-1])
    with pytest.raises(ValueError, match="faces: indices"):
        write_ply(tmp_path / "x.ply", verts, tris + 100)


def test_read_obj_polygons_and_slashes(tmp_path):
    (tmp_path / "q.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 2 0.5 0.5 0.5\nvt 0 0\n"
                                    "f 1/1/1 2/1/1 3/1/1 4/1/1\nf -3//1 -2//1 -1//1\n")
    v, t = read_obj(tmp_path / "q.obj")
    assert v.shape == (5, 3) and t.tolist() == [[0, 1, 2], [0, 2, 3], [2, 3, 4]]
