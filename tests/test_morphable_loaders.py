"""Model loaders (project .npz, ICT npz and OBJ folder, SFM, BFM 2017 .h5, Deep3D .mat) and
``occrecon model convert``: each checked against a direct numpy computation from the source arrays."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.io
import torch

from occrecon import assets, cli
from occrecon.morphable import (MorphableModel, convert_ict_obj, load_bfm2017, load_deep3d, load_ict_npz,
                                load_model, load_sfm)
from occrecon.morphable.crop import front_face_mask

SHARED = assets.shared_dir(required=False)
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared assets not present")


def _models():
    return SHARED / "assets" / "models"


def _forward_np(model: MorphableModel, rng):
    s = rng.normal(size=(2, model.n_id))
    e = rng.uniform(size=(2, model.n_exp))
    t = rng.normal(size=(2, model.n_tex))
    v, a = model(torch.tensor(s, dtype=torch.float32), torch.tensor(e, dtype=torch.float32),
                 torch.tensor(t, dtype=torch.float32))
    return s, e, t, v.numpy(), a.numpy()


# -------------------------------------------------------------------------------------------------- ICT
@needs_shared
@pytest.mark.parametrize("stem,V,F", [("ict_face", 9409, 18460), ("ict_narrowface", 6706, 13120)])
def test_ict_npz(stem, V, F, tmp_path):
    src = np.load(_models() / f"{stem}.npz")
    model = load_ict_npz(_models() / f"{stem}.npz", albedo_components=6, cache_dir=tmp_path)
    assert (model.n_vertices, model.triangles.shape[0], model.n_id, model.n_exp, model.n_tex) == (V, F, 100, 57, 6)
    assert model.units == "cm" and model.id_basis.dtype == torch.float32
    assert model.exp_names == list(src["exp_names"]) and model.layout.size == 100 + 57 + 6 + 33
    assert np.array_equal(model.landmarks.numpy(), src["lm68"]) and np.array_equal(model.triangles.numpy(), src["tris"])
    s, e, t, v, a = _forward_np(model, np.random.default_rng(0))
    want = (src["mean"][None] + np.einsum("bk,kvc->bvc", s, src["id_basis"].astype(np.float64))
            + np.einsum("bk,kvc->bvc", e, src["exp_basis"].astype(np.float64)))
    np.testing.assert_allclose(v, want, atol=2e-4)
    assert model.front_face[model.landmarks].all() and model.skin.all()
    assert np.array_equal(model.front_face.numpy(), front_face_mask(src["mean"], src["lm68"]))
    assert model.exp_bounds == (0.0, 1.0)  # ARKit-style blendshape weights


@needs_shared
def test_ict_npz_crop(tmp_path):
    full = load_ict_npz(_models() / "ict_face.npz", albedo_components=3, cache_dir=tmp_path)
    crop = load_ict_npz(_models() / "ict_face.npz", albedo_components=3, cache_dir=tmp_path, crop=True)
    keep = full.front_face
    assert crop.n_vertices == int(keep.sum()) == 6768 and crop.front_face.all()
    assert torch.equal(crop.mean, full.mean[keep]) and torch.equal(crop.exp_basis, full.exp_basis[:, keep])
    assert (crop.landmarks >= 0).all()
    assert torch.equal(crop.mean[crop.landmarks], full.mean[full.landmarks])
    assert crop.albedo_basis.shape == (3, 6768, 3)  # the prior of the cropped mesh


def _write_obj(path, verts, quads, offset=0.0):
    with open(path, "w") as f:
        f.write("# synthetic ICT-style OBJ\nmtllib ICTFaceModelMaterial.mtl\n")
        for v in verts + offset:
            f.write(f"v {v[0]:.8f} {v[1]:.8f} {v[2]:.8f}\n")
        for v in verts:
            f.write(f"vt {0.5 + 0.5 * v[0]:.6f} {0.5 + 0.5 * v[1]:.6f}\nvn 0 0 1\n")
        f.write("usemtl face\n")
        for q in quads:
            f.write("f " + " ".join(f"{i + 1}/{i + 1}/{i + 1}" for i in q) + "\n")


def make_ict_folder(root, grid, rng):
    """A FaceXModel-like folder (see convert_ict_obj's docstring); returns the arrays it was made from."""
    verts, _, quads, lm = grid
    root.mkdir()
    _write_obj(root / "generic_neutral_mesh.obj", verts, quads)
    ids = rng.normal(scale=0.05, size=(3, len(verts), 3))
    for k in range(3):
        _write_obj(root / f"identity{k:03d}.obj", verts, quads, ids[k])
    names = ["jawOpen", "PupilDilate_L", "browDown_L"]
    exps = {n: rng.normal(scale=0.05, size=(len(verts), 3)) for n in names}
    for n in names:
        _write_obj(root / f"{n}.obj", verts, quads, exps[n])
    (root / "vertex_indices.json").write_text(json.dumps(
        {"expressions": names, "idx_to_landmark_verts": [int(i) for i in lm]}))
    return ids, exps


def test_ict_obj_folder(tmp_path, grid):
    verts, _, quads, lm = grid
    ids, exps = make_ict_folder(tmp_path / "FaceXModel", grid, np.random.default_rng(1))
    n = 72  # the first 8 of 9 grid rows: the top row (y = 1) is outside the region
    model = convert_ict_obj(tmp_path / "FaceXModel", region=n, albedo_components=4, cache_dir=tmp_path / "c")
    assert model.n_vertices == n and model.n_id == 3 and model.units == "cm"
    assert model.exp_names == ["PupilDilate_L", "browDown_L", "jawOpen"]  # sorted file names
    np.testing.assert_allclose(model.mean.numpy(), verts[:n], atol=1e-6)
    np.testing.assert_allclose(model.id_basis.numpy(), ids[:, :n], atol=1e-6)
    np.testing.assert_allclose(model.exp_basis.numpy(), np.stack([exps[k][:n] for k in model.exp_names]), atol=1e-6)
    fan = [t for q in quads if max(q) < n for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))]
    assert model.triangles.tolist() == [list(t) for t in fan]
    assert np.array_equal(model.landmarks.numpy(), lm)
    assert np.array_equal(model.front_face.numpy(), front_face_mask(verts[:n], lm))
    full = convert_ict_obj(tmp_path / "FaceXModel", region="full", albedo_components=4, cache_dir=tmp_path / "c")
    assert full.n_vertices == len(verts) and full.triangles.shape[0] == 2 * len(quads)
    with pytest.raises(ValueError, match="region"):
        convert_ict_obj(tmp_path / "FaceXModel", region="face")  # needs 9409 vertices
    (tmp_path / "FaceXModel" / "identity001.obj").rename(tmp_path / "FaceXModel" / "identity007.obj")
    with pytest.raises(ValueError, match="numbered"):
        convert_ict_obj(tmp_path / "FaceXModel", region="full")
    (tmp_path / "FaceXModel" / "vertex_indices.json").unlink()
    with pytest.raises(FileNotFoundError, match="vertex_indices.json"):
        convert_ict_obj(tmp_path / "FaceXModel", region="full")


# -------------------------------------------------------------------------------------------------- SFM
@needs_shared
def test_sfm(tmp_path):
    src = np.load(_models() / "sfm_3448.npz")
    model = load_sfm(_models() / "sfm_3448.npz", albedo_components=5, cache_dir=tmp_path)
    assert (model.n_vertices, model.n_id, model.n_exp, model.units) == (3448, 63, 6, "mm")
    assert np.array_equal(model.landmarks.numpy(), src["lm68_ibug"]) and (model.landmarks == -1).sum() == 18
    assert model.exp_bounds == (0.0, 1.0)  # SFM's expressions are blendshapes too
    s, e, _, v, _ = _forward_np(model, np.random.default_rng(2))
    B = src["shape_basis_orthonormal"].astype(np.float64)
    for b in range(2):
        shape = src["mean"].reshape(-1) + B @ (np.sqrt(src["eigenvalues"].astype(np.float64)) * s[b])
        shape = shape.reshape(-1, 3) + np.einsum("k,kvc->vc", e[b], src["exp_basis"])
        np.testing.assert_allclose(v[b], shape, atol=1e-2)  # mm, float32 accumulation of ~±100 mm values
    pts, valid = model.landmark_points(torch.tensor(v))
    assert torch.equal(valid, model.landmarks >= 0) and (pts[:, ~valid] == 0).all()


# ----------------------------------------------------------------------------------------------- BFM 2017
def make_bfm2017(path, grid, rng, K=(5, 4, 3)):
    import h5py

    verts, tris, _, _ = grid
    V = len(verts)
    arrays = {"shape/representer/points": verts.T.astype(np.float32),
              "shape/representer/cells": tris.T.astype(np.uint32)}
    for group, k in zip(("shape", "expression", "color"), K):
        q, _ = np.linalg.qr(rng.normal(size=(3 * V, k)))
        mean = verts.reshape(-1) if group == "shape" else rng.uniform(0.0, 0.5, 3 * V)
        arrays[f"{group}/model/mean"] = mean.astype(np.float32)
        arrays[f"{group}/model/pcaBasis"] = q.astype(np.float32)
        arrays[f"{group}/model/pcaVariance"] = rng.uniform(1.0, 4.0, k).astype(np.float32)
    with h5py.File(path, "w") as f:
        for key, a in arrays.items():
            f.create_dataset(key, data=a)
    return arrays


def test_bfm2017(tmp_path, grid):
    import h5py

    rng = np.random.default_rng(3)
    arr = make_bfm2017(tmp_path / "bfm.h5", grid, rng)
    model = load_model(tmp_path / "bfm.h5")
    assert (model.n_id, model.n_exp, model.n_tex, model.units) == (5, 4, 3, "mm")
    assert (model.landmarks == -1).all() and model.front_face.all()
    assert model.exp_bounds is None  # BFM's expressions are PCA coefficients in standard deviations
    assert np.array_equal(model.triangles.numpy(), arr["shape/representer/cells"].T)
    s, e, t, v, a = _forward_np(model, rng)

    def pca(group, c):
        m = arr[f"{group}/model/mean"].astype(np.float64)
        return m + arr[f"{group}/model/pcaBasis"] @ (np.sqrt(arr[f"{group}/model/pcaVariance"]) * c)

    for b in range(2):
        want = pca("shape", s[b]) + pca("expression", e[b])
        np.testing.assert_allclose(v[b], want.reshape(-1, 3), atol=1e-5)
        np.testing.assert_allclose(a[b], pca("color", t[b]).reshape(-1, 3), atol=1e-5)
    lm = np.arange(68)
    lm[5] = -1
    assert np.array_equal(load_bfm2017(tmp_path / "bfm.h5", landmarks=lm).landmarks.numpy(), lm)
    with pytest.raises(ValueError, match="'landmarks' has indices"):
        load_bfm2017(tmp_path / "bfm.h5", landmarks=np.full(68, 81))
    with h5py.File(tmp_path / "bfm.h5", "a") as f:
        del f["color/model/pcaVariance"]
        f["color/model/pcaVariance"] = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="'color/model/pcaVariance' has shape"):
        load_bfm2017(tmp_path / "bfm.h5")
    with h5py.File(tmp_path / "bfm.h5", "a") as f:
        del f["expression/model/pcaBasis"]
    with pytest.raises(ValueError, match="'expression/model/pcaBasis' missing"):
        load_bfm2017(tmp_path / "bfm.h5")


# --------------------------------------------------------------------------------------------------- Deep3D
def make_deep3d(path, grid, rng):
    verts, tris, _, lm = grid
    V = len(verts)
    d = {"meanshape": verts.reshape(1, -1), "idBase": rng.normal(size=(3 * V, 6)),
         "exBase": rng.normal(size=(3 * V, 4)), "meantex": rng.uniform(50, 200, size=(1, 3 * V)),
         "texBase": rng.normal(scale=10, size=(3 * V, 5)), "tri": (tris + 1).astype(np.float64),
         "point_buf": rng.integers(1, len(tris) + 1, size=(V, 8)).astype(np.float64),
         "keypoints": (lm + 1).reshape(1, 68).astype(np.float64),
         "frontmask2_idx": np.arange(1, V + 1, 2).reshape(-1, 1).astype(np.float64),
         "skinmask": (np.arange(V) % 3 == 0).reshape(1, V).astype(np.float64)}
    scipy.io.savemat(path, {k: v.astype(np.float32) for k, v in d.items()})
    return d


def test_deep3d(tmp_path, grid):
    rng = np.random.default_rng(4)
    d = make_deep3d(tmp_path / "BFM_model_front.mat", grid, rng)
    model = load_model(tmp_path / "BFM_model_front.mat")
    V = model.n_vertices
    assert (V, model.n_id, model.n_exp, model.n_tex, model.units) == (81, 6, 4, 5, "dm")
    assert np.array_equal(model.triangles.numpy(), d["tri"] - 1)
    assert np.array_equal(model.landmarks.numpy(), d["keypoints"].ravel() - 1)
    assert model.front_face.tolist() == [i % 2 == 0 for i in range(V)]
    assert model.skin.tolist() == [i % 3 == 0 for i in range(V)]
    s, e, t, v, a = _forward_np(model, rng)
    f32 = {k: x.astype(np.float32).astype(np.float64) for k, x in d.items()}
    for b in range(2):
        shape = f32["meanshape"].ravel() + f32["idBase"] @ s[b] + f32["exBase"] @ e[b]
        tex = (f32["meantex"].ravel() + f32["texBase"] @ t[b]) / 255
        np.testing.assert_allclose(v[b], shape.reshape(V, 3), atol=1e-4)
        np.testing.assert_allclose(a[b], tex.reshape(V, 3), atol=1e-5)
    bad = dict(d, keypoints=d["keypoints"].copy())
    bad["keypoints"][0, 3] = V + 1  # 1-based V + 1 = one past the end
    scipy.io.savemat(tmp_path / "bad.mat", bad)
    with pytest.raises(ValueError, match="'keypoints' has indices"):
        load_deep3d(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "bad.mat", {k: x for k, x in d.items() if k != "skinmask"})
    with pytest.raises(ValueError, match="'skinmask' missing"):
        load_deep3d(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "bad.mat", dict(d, exBase=d["exBase"][:-3]))
    with pytest.raises(ValueError, match="'exBase' has shape"):
        load_deep3d(tmp_path / "bad.mat")


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_convert(tmp_path, grid, capsys):
    rng = np.random.default_rng(5)
    make_deep3d(tmp_path / "front.mat", grid, rng)
    assert cli.main(["model", "convert", str(tmp_path / "front.mat"), str(tmp_path / "d3.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    back, direct = MorphableModel.load(tmp_path / "d3.npz"), load_deep3d(tmp_path / "front.mat")
    assert all(torch.equal(getattr(back, k), b) for k, b in direct.named_buffers())
    assert torch.equal(load_model(tmp_path / "d3.npz").mean, direct.mean)  # the project's format is recognised
    make_ict_folder(tmp_path / "FaceXModel", grid, rng)
    capsys.readouterr()  # the default region needs ICT's real 9409-vertex mesh: one line, exit status 2
    assert cli.main(["model", "convert", str(tmp_path / "FaceXModel"), str(tmp_path / "x.npz"), "--format",
                     "ict-obj"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"occrecon model convert: error: {tmp_path / 'FaceXModel'}: region: 'face' needs 9409 "
                          f"vertices") and err.count("\n") == 1
    make_bfm2017(tmp_path / "m.h5", grid, rng)
    assert cli.main(["model", "convert", str(tmp_path / "m.h5"), str(tmp_path / "b.npz"), "--format",
                     "bfm2017"]) == 0
    assert MorphableModel.load(tmp_path / "b.npz").n_tex == 3
    with pytest.raises(SystemExit):
        cli.main(["model", "convert", "a", "b", "--format", "flame"])


@needs_shared
def test_cli_convert_sfm_with_albedo_prior(tmp_path):
    out = tmp_path / "sfm.npz"
    assert cli.main(["model", "convert", str(_models() / "sfm_3448.npz"), str(out), "--albedo-components", "7",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    model = MorphableModel.load(out)
    assert model.n_tex == 7 and model.albedo_source == "laplacian-prior-K7" and model.units == "mm"
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_npz_loaders_on_synthetic_files_and_errors(tmp_path, grid):
    verts, tris, _, lm = grid
    V = len(verts)
    rng = np.random.default_rng(6)
    ict = {"mean": verts.astype(np.float32), "tris": tris.astype(np.int32), "lm68": lm.astype(np.int32),
           "id_basis": rng.normal(size=(2, V, 3)).astype(np.float16),
           "exp_basis": rng.uniform(size=(3, V, 3)).astype(np.float16), "exp_names": np.array(["a", "b", "c"])}
    np.savez(tmp_path / "ict.npz", **ict)
    model = load_model(tmp_path / "ict.npz", albedo_components=2, cache_dir=tmp_path / "c")
    assert torch.equal(model.id_basis, torch.from_numpy(ict["id_basis"].astype(np.float32)))
    np.savez(tmp_path / "ict_bad.npz", **dict(ict, lm68=np.r_[lm[:-1], V]))
    with pytest.raises(ValueError, match="'lm68' has indices"):
        load_ict_npz(tmp_path / "ict_bad.npz", albedo_components=0)
    np.savez(tmp_path / "ict_bad.npz", **{k: v for k, v in ict.items() if k != "tris"})
    with pytest.raises(ValueError, match="'tris' missing"):
        load_ict_npz(tmp_path / "ict_bad.npz", albedo_components=0)
    q, _ = np.linalg.qr(rng.normal(size=(3 * V, 4)))
    sfm = {"mean": verts, "shape_basis_orthonormal": q, "eigenvalues": np.arange(1.0, 5.0),
           "exp_basis": np.zeros((1, V, 3)), "tris": tris, "lm68_ibug": np.full(68, -1)}
    np.savez(tmp_path / "sfm.npz", **sfm)
    model = load_model(tmp_path / "sfm.npz", albedo_components=0)
    np.testing.assert_allclose(model.id_basis[3].numpy(), 2.0 * q[:, 3].reshape(V, 3), atol=1e-6)
    np.savez(tmp_path / "sfm_bad.npz", **dict(sfm, eigenvalues=np.ones(3)))
    with pytest.raises(ValueError, match="'eigenvalues' has shape"):
        load_sfm(tmp_path / "sfm_bad.npz", albedo_components=0)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_model(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="src"):
        load_model(tmp_path / "missing.h5")


def _synthetic_sources(tmp_path, grid) -> dict:
    """The project's, ICT's and SFM's .npz layouts of the grid face: ``{name: (arrays, loader)}``."""
    verts, tris, _, lm = grid
    V = len(verts)
    rng = np.random.default_rng(7)
    MorphableModel(verts, rng.normal(size=(2, V, 3)), rng.normal(size=(1, V, 3)), np.full((V, 3), 0.5),
                   rng.normal(size=(2, V, 3)), tris, lm, units="cm", name="own").save(tmp_path / "occrecon.npz")
    with np.load(tmp_path / "occrecon.npz") as d:
        own = {k: d[k] for k in d.files}
    ict = {"mean": verts.astype(np.float32), "tris": tris.astype(np.int32), "lm68": lm.astype(np.int32),
           "id_basis": rng.normal(size=(2, V, 3)).astype(np.float16),
           "exp_basis": rng.uniform(size=(3, V, 3)).astype(np.float16)}
    q, _ = np.linalg.qr(rng.normal(size=(3 * V, 4)))
    sfm = {"mean": verts, "shape_basis_orthonormal": q, "eigenvalues": np.arange(1.0, 5.0),
           "exp_basis": np.zeros((1, V, 3)), "tris": tris, "lm68_ibug": np.full(68, -1)}
    return {"occrecon": (own, MorphableModel.load), "ict": (ict, load_ict_npz), "sfm": (sfm, load_sfm)}


def _member_bytes(path, key: str) -> slice:
    """Where the bytes of the array ``key`` of an uncompressed .npz lie in the file."""
    import struct
    import zipfile

    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
    n, m = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + n + m
    return slice(start, start + info.file_size)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("fmt", ["occrecon", "ict", "sfm"])
def test_every_npz_problem_names_the_file(tmp_path, grid, fmt):
    """Wrong shapes, missing keys, NaN or overflowing values, a file that is not an .npz, truncated or damaged:
    one ValueError starting with the file's path, from the format's loader and from ``load_model``."""
    arrays, loader = _synthetic_sources(tmp_path, grid)[fmt]
    V = len(grid[0])
    mean_key = "mean"
    nan_mean = arrays[mean_key].copy()
    nan_mean[5, 1] = np.nan
    big = arrays[mean_key].astype(np.float64)
    big[2, 0] = 1e39  # beyond float32
    cases = {
        "shape": (dict(arrays, mean=arrays[mean_key][:, :2]), "mean"),
        "missing": ({k: v for k, v in arrays.items() if k != "tris" and k != "triangles"}, "tri"),
        "nan": (dict(arrays, mean=nan_mean), "mean: 1 NaN/Inf value(s) of"),
        "overflow": (dict(arrays, mean=big), "overflow to Inf"),
    }
    if fmt == "occrecon":
        cases["version"] = (dict(arrays, format_version=np.array(["one"])), "format_version")
        cases["id_shape"] = (dict(arrays, id_basis=arrays["id_basis"][:, : V - 1]), "id_basis: expected shape")
    for name, (content, phrase) in cases.items():
        path = tmp_path / f"{fmt}_{name}.npz"
        np.savez(path, **content)
        for load in (loader, load_model):
            kwargs = {} if load is MorphableModel.load or fmt == "occrecon" else {"albedo_components": 0}
            with pytest.raises(ValueError) as info:
                load(path, **kwargs)
            msg = str(info.value)
            assert msg.startswith(f"{path}: ") and phrase in msg, (name, load.__name__, msg)
    good = tmp_path / f"{fmt}.npz"
    np.savez(good, **arrays)
    data = good.read_bytes()
    where = _member_bytes(good, mean_key)
    flipped = bytearray(data)
    flipped[where.start + (where.stop - where.start) // 2] ^= 0x04
    damaged = {
        "text": (b"mean: 1 2 3\n", "not a readable .npz file"),
        "empty": (b"", "not a readable .npz file"),
        "truncated": (data[: len(data) // 2], "not a readable .npz file"),
        "flipped": (bytes(flipped), "damaged .npz file"),  # a member's CRC-32 does not match
    }
    np.save(tmp_path / "single.npy", np.zeros(3))
    damaged["npy"] = ((tmp_path / "single.npy").read_bytes(), "a single .npy array")
    for name, (content, phrase) in damaged.items():
        path = tmp_path / f"{fmt}_{name}.npz"
        path.write_bytes(content)
        kwargs = {} if fmt == "occrecon" else {"albedo_components": 0}
        with pytest.raises(ValueError) as info:
            loader(path, **kwargs)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and phrase in msg and "\n" not in msg, (name, msg)
        with pytest.raises(ValueError, match="^" + re.escape(f"{path}: ")):
            load_model(path, **kwargs)
    assert loader(good, **({} if fmt == "occrecon" else {"albedo_components": 0})).n_vertices == V


def test_h5_and_mat_files_that_are_not_models_name_the_file(tmp_path):
    for name, load in (("bad.h5", load_bfm2017), ("bad.mat", load_deep3d)):
        path = tmp_path / name
        path.write_bytes(b"not a model\n" * 8)
        with pytest.raises(ValueError, match="^" + re.escape(f"{path}: not a readable ")):
            load(path)
        with pytest.raises(ValueError, match="^" + re.escape(f"{path}: not a readable ")):
            load_model(path)


def test_a_damaged_albedo_cache_is_rebuilt(tmp_path, grid):
    from occrecon.morphable import laplacian_albedo

    verts, tris, _, _ = grid
    mean, basis = laplacian_albedo(len(verts), tris, 3, tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:40])  # a write cut short
    mean2, basis2 = laplacian_albedo(len(verts), tris, 3, tmp_path)
    np.testing.assert_array_equal(basis2, basis)
    np.testing.assert_array_equal(laplacian_albedo(len(verts), tris, 3, tmp_path)[1], basis)
