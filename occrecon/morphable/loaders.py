"""Readers for the face models this project supports; each returns a ``MorphableModel``.

| loader | source | units | coefficients |
|---|---|---|---|
| ``load_ict_npz`` | ``ict_face.npz`` / ``ict_narrowface.npz`` (project's ICT extract) | cm | id ~ N(0, 1); exp blendshape weights in [0, 1] |
| ``convert_ict_obj`` | the ICT-FaceKit ``FaceXModel`` folder of OBJ files | cm | as above |
| ``load_sfm`` | Surrey Face Model ``sfm_3448.npz`` | mm | id in std (basis · sqrt(eigenvalue)); exp blendshape weights |
| ``load_bfm2017`` | ``model2017-1_bfm_nomouth.h5`` | mm | id, exp, tex in std (pcaBasis · sqrt(pcaVariance)) |
| ``load_deep3d`` | Deep3D's ``BFM_model_front.mat`` | dm | raw Deep3D coefficients (bases as stored) |

ICT and SFM have no albedo: they get the generic Laplacian prior of ``occrecon.morphable.albedo``
(``albedo_components`` K, cached in ``cache_dir``). Every problem with a file raises one ValueError naming the
file (a missing file: FileNotFoundError): a file that is not of its format or is truncated or damaged, missing
keys and inconsistent shapes (naming the key), landmark indices out of range (naming the landmark key), and NaN or
Inf in the mean, the bases or the albedo (naming the array).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .albedo import laplacian_albedo
from .crop import front_face_mask
from .export import read_obj
from .model import MorphableModel, _first_line, naming_file, read_npz

__all__ = ["load_ict_npz", "convert_ict_obj", "load_sfm", "load_bfm2017", "load_deep3d", "load_model",
           "ICT_FACE_VERTICES", "FORMATS"]

#: ICT-FaceKit geometry ranges (vertex counts from vertex 0) of the face areas in ``generic_neutral_mesh.obj``.
ICT_FACE_VERTICES = {"face": 9409, "narrowface": 6706}
#: Format names accepted by ``load_model`` and the CLI.
FORMATS = ("occrecon", "ict-npz", "ict-obj", "sfm", "bfm2017", "deep3d")


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """A third-party reader (h5py, scipy.io) failing on a damaged or foreign file: one ValueError naming the file
    (the reader's own checks, which name it already, pass through)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (h5py and scipy raise OSError, KeyError, TypeError, MatReadError ...)
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__}: {_first_line(exc)})") from None


def _get(d, key: str, src) -> np.ndarray:
    if key not in d:
        raise ValueError(f"{src}: key '{key}' missing")
    return np.asarray(d[key])


def _expect(a: np.ndarray, shape: tuple, key: str, src) -> np.ndarray:
    ok = a.ndim == len(shape) and all(s is None or s == t for s, t in zip(shape, a.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{src}: key '{key}' has shape {a.shape}, expected {want}")
    return a


def _check_indices(a: np.ndarray, n: int, key: str, src, allow_missing: bool = False) -> np.ndarray:
    a = np.asarray(a).astype(np.int64)
    lo = -1 if allow_missing else 0
    if a.size and (a.min() < lo or a.max() >= n):
        raise ValueError(f"{src}: key '{key}' has indices in [{a.min()}, {a.max()}], outside [{lo}, {n})")
    return a


#: Range of blendshape expression weights (ICT's ARKit-style and SFM's blendshapes).
BLENDSHAPE_BOUNDS = (0.0, 1.0)


def _with_prior_albedo(mean, id_basis, exp_basis, tris, lm, front, skin, *, units, name, exp_names,
                       albedo_components, cache_dir) -> MorphableModel:
    """A blendshape-expression model (ICT, SFM) with the generic albedo prior."""
    a_mean, a_basis = laplacian_albedo(mean.shape[0], tris, albedo_components, cache_dir)
    return MorphableModel(mean, id_basis, exp_basis, a_mean, a_basis, tris, lm, front, skin, units=units,
                          name=name, exp_names=exp_names, albedo_source=f"laplacian-prior-K{albedo_components}",
                          exp_bounds=BLENDSHAPE_BOUNDS)


def _ict_model(mean, id_basis, exp_basis, tris, lm, exp_names, name, src, albedo_components, cache_dir, crop):
    V = mean.shape[0]
    _expect(id_basis, (None, V, 3), "id_basis", src)
    _expect(exp_basis, (None, V, 3), "exp_basis", src)
    _expect(tris, (None, 3), "tris", src)
    tris = _check_indices(tris, V, "tris", src)
    lm = _check_indices(_expect(np.asarray(lm), (68,), "lm68", src), V, "lm68", src, allow_missing=True)
    front = front_face_mask(mean, lm)
    id_basis, exp_basis = id_basis.astype(np.float32), exp_basis.astype(np.float32)
    if crop:  # crop first, so that the albedo prior is the cropped mesh's own
        bare = MorphableModel(mean, id_basis, exp_basis, np.zeros_like(mean), np.zeros((0, V, 3), np.float32),
                              tris, lm, front, None, units="cm", name=name, exp_bounds=BLENDSHAPE_BOUNDS).crop(front)
        mean, id_basis, exp_basis = (bare.mean.numpy(), bare.id_basis.numpy(), bare.exp_basis.numpy())
        tris, lm, front = bare.triangles.numpy(), bare.landmarks.numpy(), bare.front_face.numpy()
    return _with_prior_albedo(mean, id_basis, exp_basis, tris, lm, front, None, units="cm", name=name,
                              exp_names=exp_names, albedo_components=albedo_components, cache_dir=cache_dir)


def load_ict_npz(path: str | Path, *, albedo_components: int = 80, cache_dir: str | Path | None = None,
                 crop: bool = False) -> MorphableModel:
    """ICT-FaceKit Light from the project's extract (``ict_face.npz``/``ict_narrowface.npz``: ``mean (V,3)``,
    ``tris``, ``id_basis (100,V,3)`` float16, ``exp_basis (57,V,3)`` float16, ``exp_names``, ``lm68``).

    Units cm; float16 bases become float32. Identity coefficients ~ N(0, 1) (ICT's identity modes are one
    standard deviation); expression coefficients are ARKit-style blendshape weights in [0, 1] (not orthogonal,
    not standard deviations). No albedo in ICT: the generic Laplacian prior (``albedo_components``). ``front_face``
    is the landmark rule of ``occrecon.morphable.crop``; ``skin`` is every vertex (the face area has no eyeballs,
    teeth or inner mouth). ``crop=True`` keeps only the front face (albedo prior rebuilt on the cropped mesh).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {path}")
    d = read_npz(path)
    with naming_file(path):
        mean = _expect(_get(d, "mean", path), (None, 3), "mean", path).astype(np.float32)
        arrays = {k: _get(d, k, path) for k in ("tris", "id_basis", "exp_basis", "lm68")}
        names = [str(n) for n in np.atleast_1d(d["exp_names"])] if "exp_names" in d else []
        return _ict_model(mean, arrays["id_basis"], arrays["exp_basis"], arrays["tris"], arrays["lm68"], names,
                          path.stem, path, albedo_components, cache_dir, crop)


def convert_ict_obj(folder: str | Path, *, region: str | int = "face", albedo_components: int = 80,
                    cache_dir: str | Path | None = None, crop: bool = False) -> MorphableModel:
    """ICT-FaceKit from the original download's ``FaceXModel`` folder of OBJ files.

    Layout assumed (as in github.com/USC-ICT/ICT-FaceKit, ``FaceXModel/``): ``generic_neutral_mesh.obj`` (the
    full head, 26,719 vertices, mostly quads); ``identity000.obj`` … ``identity099.obj`` (neutral + one standard
    deviation of each identity mode, same topology); one OBJ per expression blendshape named after it
    (``browDown_L.obj``, ``jawOpen.obj``, …; neutral + full blendshape); ``vertex_indices.json`` with
    ``idx_to_landmark_verts`` (68 vertex indices, iBUG order) and, optionally, ``expressions`` (names).
    Expressions are all ``*.obj`` that are neither the neutral nor ``identity###``, in sorted name order (the
    order of the project's ``ict_face.npz``); identity files are taken in number order.

    ``region``: 'face' keeps vertices [0, 9409) (ICT's face area: forehead, scalp, ears, neck), 'narrowface'
    [0, 6706), 'full' every vertex (eyes, teeth, gums included), an int n the first n vertices. Triangles with
    a vertex outside are dropped.
    Units cm. Otherwise as ``load_ict_npz``.
    """
    folder = Path(folder)
    neutral_file = folder / "generic_neutral_mesh.obj"
    cfg_file = folder / "vertex_indices.json"
    for f in (neutral_file, cfg_file):
        if not f.is_file():
            raise FileNotFoundError(f"folder: {f.name} missing in {folder}")
    if not (isinstance(region, int) and region > 0) and region not in (*ICT_FACE_VERTICES, "full"):
        raise ValueError(f"region: expected one of {[*ICT_FACE_VERTICES, 'full']} or an int > 0, got {region!r}")
    with naming_file(folder):
        return _convert_ict_obj(folder, neutral_file, cfg_file, region, albedo_components, cache_dir, crop)


def _convert_ict_obj(folder: Path, neutral_file: Path, cfg_file: Path, region: str | int, albedo_components: int,
                     cache_dir: str | Path | None, crop: bool) -> MorphableModel:
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{cfg_file}: not a JSON file ({exc})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file}: expected a JSON object, got {type(cfg).__name__}")
    neutral, tris = read_obj(neutral_file)
    ids = sorted((int(m.group(1)), p) for p in folder.glob("identity*.obj")
                 if (m := re.fullmatch(r"identity(\d+)\.obj", p.name)))
    if not ids:
        raise ValueError(f"folder: no identityNNN.obj files in {folder}")
    if [i for i, _ in ids] != list(range(len(ids))):
        raise ValueError(f"folder: identity files are not numbered 0..{len(ids) - 1} without gaps")
    exp_files = sorted((p for p in folder.glob("*.obj") if p.name != neutral_file.name
                        and not re.fullmatch(r"identity\d+\.obj", p.name)), key=lambda p: p.name)
    V_all = neutral.shape[0]
    n = V_all if region == "full" else region if isinstance(region, int) else ICT_FACE_VERTICES[region]
    if n > V_all:
        raise ValueError(f"region: {region!r} needs {n} vertices, the neutral mesh has {V_all}")

    def offsets(files) -> np.ndarray:
        out = np.empty((len(files), n, 3), np.float32)
        for k, p in enumerate(files):
            v, _ = read_obj(p)
            if v.shape[0] != V_all:
                raise ValueError(f"{p.name}: {v.shape[0]} vertices, the neutral mesh has {V_all}")
            out[k] = v[:n] - neutral[:n]
        return out

    lm = np.asarray(cfg.get("idx_to_landmark_verts", []))
    if lm.shape != (68,):
        raise ValueError(f"{cfg_file.name}: key 'idx_to_landmark_verts' must hold 68 vertex indices, got {lm.shape}")
    tris = tris[(tris < n).all(axis=1)]
    return _ict_model(neutral[:n].astype(np.float32), offsets([p for _, p in ids]),
                      offsets(exp_files), tris, lm, [p.stem for p in exp_files], f"ict-obj-{region}", cfg_file,
                      albedo_components, cache_dir, crop)


def load_sfm(path: str | Path, *, albedo_components: int = 80,
             cache_dir: str | Path | None = None) -> MorphableModel:
    """Surrey Face Model from ``sfm_3448.npz`` (``mean (V,3)`` mm, ``shape_basis_orthonormal (3V, K)`` with
    rows interleaved x0 y0 z0 x1 …, ``eigenvalues (K,)``, ``exp_basis (E,V,3)``, ``exp_names``, ``tris``,
    ``lm68_ibug`` (−1 where unmapped)).

    ``shape = mean + B·(sqrt(ev)·z)``: identity coefficients z in standard deviations. Expressions are SFM's
    blendshapes (weights in [0, 1]). Units mm. The mesh is a face mask already: ``front_face`` and ``skin`` are
    every vertex. No albedo: the generic Laplacian prior. (SFM licence: non-commercial.)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {path}")
    d = read_npz(path)
    with naming_file(path):
        return _sfm_model(d, path, albedo_components, cache_dir)


def _sfm_model(d: dict, path: Path, albedo_components: int, cache_dir: str | Path | None) -> MorphableModel:
    mean = _expect(_get(d, "mean", path), (None, 3), "mean", path).astype(np.float32)
    V = mean.shape[0]
    basis = _expect(_get(d, "shape_basis_orthonormal", path), (3 * V, None), "shape_basis_orthonormal", path)
    ev = _expect(_get(d, "eigenvalues", path), (basis.shape[1],), "eigenvalues", path).astype(np.float64)
    if np.any(ev < 0):
        raise ValueError(f"{path}: key 'eigenvalues' has negative entries")
    exp = _expect(_get(d, "exp_basis", path), (None, V, 3), "exp_basis", path).astype(np.float32)
    tris = _check_indices(_expect(_get(d, "tris", path), (None, 3), "tris", path), V, "tris", path)
    lm = _check_indices(_expect(_get(d, "lm68_ibug", path), (68,), "lm68_ibug", path), V, "lm68_ibug", path,
                        allow_missing=True)
    names = [str(n) for n in np.atleast_1d(d["exp_names"])] if "exp_names" in d else []
    id_basis = (basis.astype(np.float64) * np.sqrt(ev)[None, :]).T.reshape(-1, V, 3).astype(np.float32)
    return _with_prior_albedo(mean, id_basis, exp, tris, lm, None, None, units="mm", name=path.stem,
                              exp_names=names, albedo_components=albedo_components, cache_dir=cache_dir)


def _pca_std(mean: np.ndarray, basis: np.ndarray, var: np.ndarray, group: str, src, V: int):
    _expect(mean, (3 * V,), f"{group}/model/mean", src)
    _expect(basis, (3 * V, None), f"{group}/model/pcaBasis", src)
    _expect(var, (basis.shape[1],), f"{group}/model/pcaVariance", src)
    if np.any(var < 0):
        raise ValueError(f"{src}: key '{group}/model/pcaVariance' has negative entries")
    scaled = basis.astype(np.float64) * np.sqrt(var.astype(np.float64))[None, :]
    return mean.reshape(V, 3), scaled.T.reshape(-1, V, 3).astype(np.float32)


def load_bfm2017(path: str | Path, *, landmarks=None) -> MorphableModel:
    """Basel Face Model 2017 (``model2017-1_bfm_nomouth.h5``, statismo layout).

    Reads ``shape/representer/points (3, V)``, ``shape/representer/cells (3, F)`` (0-based) and, for each of
    ``shape``, ``expression``, ``color``: ``model/mean (3V,)`` (x0 y0 z0 x1 …), ``model/pcaBasis (3V, K)``
    (orthonormal columns), ``model/pcaVariance (K,)``. Bases are scaled by sqrt(variance): coefficients in
    standard deviations (prior ‖α‖²). Mean shape = shape mean + expression mean. Albedo = colour model, RGB in
    [0, 1]. Units mm. The official file has no iBUG-68 mapping: pass ``landmarks`` (68 vertex indices, −1 for
    unmapped) or get all −1. ``front_face`` and ``skin``: every vertex (the no-mouth model is a face mask).
    (Licence: registration with the University of Basel; users bring their own file.)
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {path}")
    with _reading(path, "HDF5 model file"), h5py.File(path, "r") as f:
        def get(key):
            if key not in f:
                raise ValueError(f"{path}: key '{key}' missing")
            return np.asarray(f[key][()])

        pts = _expect(get("shape/representer/points"), (3, None), "shape/representer/points", path)
        V = pts.shape[1]
        cells = _expect(get("shape/representer/cells"), (3, None), "shape/representer/cells", path)
        groups = {g: _pca_std(get(f"{g}/model/mean"), get(f"{g}/model/pcaBasis"), get(f"{g}/model/pcaVariance"),
                              g, path, V) for g in ("shape", "expression", "color")}
    with naming_file(path):
        tris = _check_indices(cells.T, V, "shape/representer/cells", path)
        lm = np.full(68, -1, np.int64) if landmarks is None else np.asarray(landmarks)
        lm = _check_indices(_expect(lm, (68,), "landmarks", path), V, "landmarks", path, allow_missing=True)
        mean = groups["shape"][0] + groups["expression"][0]
        return MorphableModel(mean, groups["shape"][1], groups["expression"][1], groups["color"][0],
                              groups["color"][1], tris, lm, units="mm", name=f"bfm2017-{path.stem}")


def load_deep3d(path: str | Path) -> MorphableModel:
    """Deep3D's ``BFM_model_front.mat`` (BFM 2009 front face + FaceWarehouse expressions, 35,709 vertices).

    Keys: ``meanshape (1, 3V)``, ``idBase (3V, 80)``, ``exBase (3V, 64)``, ``meantex (1, 3V)`` and
    ``texBase (3V, 80)`` in 0–255, ``tri (F, 3)``, ``point_buf (V, 8)`` (checked, not kept: normals are computed
    from ``tri``), ``keypoints (1, 68)``, ``frontmask2_idx (N, 1)``, ``skinmask (1, V)``; ``tri``, ``point_buf``,
    ``keypoints`` and ``frontmask2_idx`` are 1-based (converted to 0-based). Coefficients are Deep3D's raw ones
    (bases as stored, not rescaled), so Deep3D-trained θ transfers unchanged. Albedo = texture / 255. Units: as
    Deep3D uses the file (BFM09's µm / 1e5), decimetres; the mean is not re-centred. ``front_face`` from
    ``frontmask2_idx``, ``skin`` from ``skinmask``.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {path}")
    with _reading(path, "MATLAB model file"):
        d = scipy.io.loadmat(str(path))
    with naming_file(path):
        return _deep3d_model(d, path)


def _deep3d_model(d: dict, path: Path) -> MorphableModel:
    mean = _get(d, "meanshape", path)
    if mean.ndim != 2 or mean.shape[0] != 1 or mean.shape[1] % 3:
        raise ValueError(f"{path}: key 'meanshape' has shape {mean.shape}, expected (1, 3V)")
    V = mean.shape[1] // 3

    def basis(key):
        b = _expect(_get(d, key, path), (3 * V, None), key, path).astype(np.float64)
        return b.T.reshape(-1, V, 3).astype(np.float32)

    id_b, ex_b = basis("idBase"), basis("exBase")
    tex = _expect(_get(d, "meantex", path), (1, 3 * V), "meantex", path).astype(np.float64)
    tex_b = basis("texBase")
    tri = _check_indices(_expect(_get(d, "tri", path), (None, 3), "tri", path).astype(np.int64) - 1, V, "tri", path)
    _check_indices(_expect(_get(d, "point_buf", path), (V, None), "point_buf", path).astype(np.int64) - 1,
                   tri.shape[0], "point_buf", path)
    kp = _get(d, "keypoints", path).reshape(-1)
    kp = _check_indices(_expect(kp, (68,), "keypoints", path).astype(np.int64) - 1, V, "keypoints", path)
    front_idx = _check_indices(_get(d, "frontmask2_idx", path).reshape(-1).astype(np.int64) - 1, V,
                               "frontmask2_idx", path)
    skin = _get(d, "skinmask", path).reshape(-1)
    _expect(skin, (V,), "skinmask", path)
    front = np.zeros(V, bool)
    front[front_idx] = True
    return MorphableModel(mean.reshape(V, 3), id_b, ex_b, (tex.reshape(V, 3) / 255.0), tex_b / 255.0, tri, kp,
                          front, skin.astype(bool), units="dm", name=f"deep3d-{path.stem}")


def _sniff(src: Path) -> str:
    if src.is_dir():
        return "ict-obj"
    suffix = src.suffix.lower()
    if suffix == ".h5":
        return "bfm2017"
    if suffix == ".mat":
        return "deep3d"
    if suffix == ".npz":
        with _reading(src, ".npz file"), np.load(src, allow_pickle=False) as d:
            keys = set(d.files)
        if "format_version" in keys:
            return "occrecon"
        if "shape_basis_orthonormal" in keys:
            return "sfm"
        if "id_basis" in keys:
            return "ict-npz"
    raise ValueError(f"format: cannot tell the format of {src}; pass one of {FORMATS}")


def load_model(src: str | Path, format: str | None = None, *, albedo_components: int = 80,
               cache_dir: str | Path | None = None) -> MorphableModel:
    """Load any supported model; ``format`` (one of FORMATS) is guessed from the file when None."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"src: {src} does not exist")
    fmt = format or _sniff(src)
    prior = {"albedo_components": albedo_components, "cache_dir": cache_dir}
    if fmt == "occrecon":
        return MorphableModel.load(src)
    if fmt == "ict-npz":
        return load_ict_npz(src, **prior)
    if fmt == "ict-obj":
        return convert_ict_obj(src, **prior)
    if fmt == "sfm":
        return load_sfm(src, **prior)
    if fmt == "bfm2017":
        return load_bfm2017(src)
    if fmt == "deep3d":
        return load_deep3d(src)
    raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")
