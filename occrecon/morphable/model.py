"""``MorphableModel``: a linear 3D morphable face model (shape, expression, albedo) as a ``torch.nn.Module``."""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .layout import ParamLayout

__all__ = ["MorphableModel", "FORMAT_VERSION", "read_npz", "naming_file"]

#: Version of the project's ``.npz`` model format written by ``MorphableModel.save``.
FORMAT_VERSION = 1

_ARRAY_KEYS = ("mean", "id_basis", "exp_basis", "albedo_mean", "albedo_basis", "triangles", "landmarks",
               "front_face", "skin")


#: Floating arrays that must be finite (a NaN in the mean or a basis would give NaN faces, silently).
_FLOAT_KEYS = ("mean", "id_basis", "exp_basis", "albedo_mean", "albedo_basis")


def _as_np(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    with np.errstate(over="ignore"):  # values beyond float32 become Inf, which the constructor reports
        return np.ascontiguousarray(np.asarray(x), dtype=dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def naming_file(path: str | Path) -> Iterator[None]:
    """Inside a model reader: a ValueError (or a TypeError of malformed content, e.g. a text array where a number
    belongs) whose message does not start with ``path`` becomes a ValueError with ``"<path>: "`` in front (the
    model's own checks name the array, the reader the file)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {exc}") from None


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read at once (no pickles). ValueError naming the file for anything that is
    not an intact ``.npz``: another format, a single ``.npy`` array, an empty, truncated or damaged archive (a
    member whose CRC does not match)."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (numpy raises ValueError, EOFError, OSError, BadZipFile ... on bad files)
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    try:
        with f:
            return {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001  (a truncated or altered member: BadZipFile, EOFError, zlib.error ...)
        raise ValueError(f"{path}: damaged .npz file ({type(exc).__name__}: {_first_line(exc)})") from None


class MorphableModel(torch.nn.Module):
    """A linear face model: ``vertices = mean + Σ id_k·id_basis[k] + Σ exp_k·exp_basis[k]`` and
    ``albedo = albedo_mean + Σ tex_k·albedo_basis[k]``.

    Buffers (move with ``.to()``; floating ones follow ``.double()``):

    - ``mean`` ``(V, 3)``: mean shape in ``units`` (e.g. 'cm', 'mm', 'dm').
    - ``id_basis`` ``(K_id, V, 3)``, ``exp_basis`` ``(K_exp, V, 3)``: per-coefficient vertex offsets in
      ``units``. How a coefficient is scaled depends on the source (see the loaders): PCA models (BFM 2017,
      SFM, ICT identity) are scaled so coefficients are in standard deviations; blendshape models (ICT and SFM
      expressions) take weights in [0, 1]; Deep3D's file keeps its raw (unscaled) bases.
    - ``albedo_mean`` ``(V, 3)`` linear RGB in [0, 1], ``albedo_basis`` ``(K_tex, V, 3)``.
    - ``triangles`` ``(F, 3)`` int32, 0-based, winding as in the source (ICT, SFM: counter-clockwise seen from
      outside).
    - ``landmarks`` ``(68,)`` int64: vertex index of each iBUG/Multi-PIE 68-point landmark, **−1 where the
      model has no vertex for it** (e.g. SFM's jaw contour); users must mask those out.
    - ``front_face`` ``(V,)`` bool: vertices of the photometric region; ``skin`` ``(V,)`` bool: skin vertices.

    Attributes: ``units`` (str), ``name`` (str), ``exp_names`` (list of str, may be empty),
    ``albedo_source`` (str: 'model' for a source model's own albedo (BFM, Deep3D), 'learned' for one built by
    ``occrecon model albedo build``, else how the generic prior was made),
    ``exp_bounds`` (``(lo, hi)`` for blendshape expressions whose weights live in a range, e.g. ICT's and SFM's
    ``(0.0, 1.0)``; None for PCA expressions in standard deviations, e.g. BFM's), ``provenance`` (dict: how a
    learned albedo was built — faces, licences, command; empty otherwise).

    Optional buffers (None when the model has no illumination prior): ``sh_mean`` ``(27,)`` and ``sh_cov``
    ``(27, 27)``, the mean and covariance of the 27 SH coefficients of real-photo fits, in θ's [R9 | G9 | B9]
    order *including* the renderer's ambient on each DC coefficient (``occrecon.fit.appearance``).
    """

    mean: torch.Tensor
    id_basis: torch.Tensor
    exp_basis: torch.Tensor
    albedo_mean: torch.Tensor
    albedo_basis: torch.Tensor
    triangles: torch.Tensor
    landmarks: torch.Tensor
    front_face: torch.Tensor
    skin: torch.Tensor

    def __init__(self, mean, id_basis, exp_basis, albedo_mean, albedo_basis, triangles, landmarks,
                 front_face=None, skin=None, *, units: str, name: str, exp_names: Sequence[str] = (),
                 albedo_source: str = "model", exp_bounds: tuple[float, float] | None = None,
                 sh_prior: tuple | None = None, provenance: dict | None = None):
        super().__init__()
        mean = _as_np(mean, np.float32)
        if mean.ndim != 2 or mean.shape[1] != 3:
            raise ValueError(f"mean: expected shape (V, 3), got {mean.shape}")
        V = mean.shape[0]
        arrays = {"mean": mean}
        for key, val in (("id_basis", id_basis), ("exp_basis", exp_basis), ("albedo_basis", albedo_basis)):
            a = _as_np(val, np.float32)
            if a.ndim != 3 or a.shape[1:] != (V, 3):
                raise ValueError(f"{key}: expected shape (K, {V}, 3), got {a.shape}")
            arrays[key] = a
        a = _as_np(albedo_mean, np.float32)
        if a.shape != (V, 3):
            raise ValueError(f"albedo_mean: expected shape ({V}, 3), got {a.shape}")
        arrays["albedo_mean"] = a
        tri = np.asarray(triangles.detach().cpu().numpy() if isinstance(triangles, torch.Tensor) else triangles)
        if tri.ndim != 2 or tri.shape[1] != 3 or (tri.size and tri.dtype.kind not in "iu"):
            raise ValueError(f"triangles: expected integer shape (F, 3), got {tri.shape} {tri.dtype}")
        if tri.size and (tri.min() < 0 or tri.max() >= V):
            raise ValueError(f"triangles: indices must lie in [0, {V}), got [{tri.min()}, {tri.max()}]")
        arrays["triangles"] = np.ascontiguousarray(tri, dtype=np.int32)
        lm = np.asarray(landmarks.detach().cpu().numpy() if isinstance(landmarks, torch.Tensor) else landmarks)
        if lm.ndim != 1 or (lm.size and lm.dtype.kind not in "iu"):
            raise ValueError(f"landmarks: expected a 1-D integer array, got {lm.shape} {lm.dtype}")
        if lm.size and (lm.min() < -1 or lm.max() >= V):
            raise ValueError(f"landmarks: indices must lie in [0, {V}) or be -1, got [{lm.min()}, {lm.max()}]")
        arrays["landmarks"] = lm.astype(np.int64)
        for key in _FLOAT_KEYS:
            bad = ~np.isfinite(arrays[key])
            if bad.any():
                raise ValueError(f"{key}: {int(bad.sum())} NaN/Inf value(s) of {bad.size}, the first at index "
                                 f"{tuple(int(i) for i in np.argwhere(bad)[0])} (values beyond float32's range "
                                 f"overflow to Inf)")
        for key, val in (("front_face", front_face), ("skin", skin)):
            m = np.ones(V, bool) if val is None else _as_np(val, bool)
            if m.shape != (V,):
                raise ValueError(f"{key}: expected shape ({V},), got {m.shape}")
            arrays[key] = m
        for key in _ARRAY_KEYS:
            self.register_buffer(key, torch.from_numpy(arrays[key]))
        sh_mean = sh_cov = None
        if sh_prior is not None:
            sh_mean, sh_cov = (_as_np(a, np.float32) for a in sh_prior)
            if sh_mean.shape != (27,) or sh_cov.shape != (27, 27):
                raise ValueError(f"sh_prior: expected mean (27,) and covariance (27, 27), got {sh_mean.shape} and "
                                 f"{sh_cov.shape}")
            if not (np.isfinite(sh_mean).all() and np.isfinite(sh_cov).all()):
                raise ValueError("sh_prior: NaN or Inf values")
            if not np.allclose(sh_cov, sh_cov.T, atol=1e-6) or np.linalg.eigvalsh(sh_cov.astype(np.float64)).min() <= 0:
                raise ValueError("sh_prior: the covariance must be symmetric positive definite")
        self.register_buffer("sh_mean", None if sh_mean is None else torch.from_numpy(sh_mean))
        self.register_buffer("sh_cov", None if sh_cov is None else torch.from_numpy(sh_cov))
        self.provenance = dict(provenance or {})
        self.units = str(units)
        self.name = str(name)
        self.exp_names = [str(n) for n in exp_names]
        if self.exp_names and len(self.exp_names) != arrays["exp_basis"].shape[0]:
            raise ValueError(f"exp_names: {len(self.exp_names)} names for {arrays['exp_basis'].shape[0]} modes")
        self.albedo_source = str(albedo_source)
        if exp_bounds is not None:
            lo, hi = (float(v) for v in exp_bounds)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"exp_bounds: expected finite (lo, hi) with lo < hi or None, got {exp_bounds!r}")
            exp_bounds = (lo, hi)
        self.exp_bounds = exp_bounds

    # ---------------------------------------------------------------------------------------------- sizes
    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_id(self) -> int:
        return self.id_basis.shape[0]

    @property
    def n_exp(self) -> int:
        return self.exp_basis.shape[0]

    @property
    def n_tex(self) -> int:
        return self.albedo_basis.shape[0]

    @property
    def layout(self) -> ParamLayout:
        """θ layout for this model: id n_id, exp n_exp, tex n_tex, angle 3, gamma 27, trans 3 (Deep3D order)."""
        return ParamLayout.for_model(self.n_id, self.n_exp, self.n_tex)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, V={self.n_vertices}, F={self.triangles.shape[0]}, n_id={self.n_id}, "
                f"n_exp={self.n_exp}, n_tex={self.n_tex}, units={self.units!r}, albedo={self.albedo_source!r}"
                + (f", exp_bounds={self.exp_bounds}" if self.exp_bounds is not None else ""))

    # -------------------------------------------------------------------------------------------- forward
    def _coeffs(self, arg: str, x: torch.Tensor | None, k: int, batch: int) -> torch.Tensor:
        ref = self.mean
        if x is None:
            return ref.new_zeros(batch, k)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{arg}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape != (batch, k):
            raise ValueError(f"{arg}: expected shape ({batch}, {k}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{arg}: expected a floating dtype, got {x.dtype}")
        if x.device != ref.device:
            raise ValueError(f"{arg}: on {x.device}, model on {ref.device}")
        return x.to(ref.dtype)

    def forward(self, shape: torch.Tensor | None = None, expr: torch.Tensor | None = None,
                albedo: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices and per-vertex albedo for a batch of coefficients.

        Args:
            shape: ``(B, n_id)`` identity coefficients (None = zeros).
            expr: ``(B, n_exp)`` expression coefficients (None = zeros).
            albedo: ``(B, n_tex)`` albedo coefficients (None = zeros). At least one must be given (it sets B).
        Returns:
            ``vertices (B, V, 3)`` in ``units`` and ``albedo_rgb (B, V, 3)`` (linear RGB, not clamped), in the
            model's dtype. Differentiable in all coefficients; one matrix product per term, no batch loop.

        Coefficients of another floating dtype (bfloat16 or float16, e.g. a network's output under autocast, or
        float64) are converted to the model's dtype: the model computes in its own precision (the one the renderer's
        kernels take, float32 or float64) and gradients flow back to the coefficients in their dtype. For float64
        results, convert the model (``model.double()``). Integer coefficients raise TypeError naming the argument.
        """
        given = [x for x in (shape, expr, albedo) if x is not None]
        if not given:
            raise ValueError("shape, expr, albedo: at least one must be given (it sets the batch size)")
        for arg, x in (("shape", shape), ("expr", expr), ("albedo", albedo)):
            if x is not None and (not isinstance(x, torch.Tensor) or x.dim() != 2):
                shape_or_type = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{arg}: expected a (B, K) tensor, got {shape_or_type}")
        b = given[0].shape[0]
        s = self._coeffs("shape", shape, self.n_id, b)
        e = self._coeffs("expr", expr, self.n_exp, b)
        t = self._coeffs("albedo", albedo, self.n_tex, b)
        V = self.n_vertices
        verts = (self.mean.reshape(1, V * 3)
                 + s @ self.id_basis.reshape(self.n_id, V * 3)
                 + e @ self.exp_basis.reshape(self.n_exp, V * 3))
        rgb = self.albedo_mean.reshape(1, V * 3) + t @ self.albedo_basis.reshape(self.n_tex, V * 3)
        return verts.reshape(b, V, 3), rgb.reshape(b, V, 3)

    def landmark_points(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``vertices (B, V, 3)`` → ``(points (B, 68, 3), valid (68,) bool)``; unmapped landmarks give 0."""
        valid = self.landmarks >= 0
        idx = self.landmarks.clamp(min=0)
        pts = vertices[:, idx] * valid[None, :, None].to(vertices.dtype)
        return pts, valid

    # -------------------------------------------------------------------------------------------- editing
    def crop(self, keep: torch.Tensor | np.ndarray) -> MorphableModel:
        """A new (CPU, float32) model with only the vertices where ``keep`` ``(V,)`` is True and the triangles
        whose three vertices are kept; indices are renumbered in the old order, landmarks on dropped vertices
        become −1."""
        keep = _as_np(keep, bool)
        if keep.shape != (self.n_vertices,):
            raise ValueError(f"keep: expected shape ({self.n_vertices},), got {keep.shape}")
        new_index = np.full(self.n_vertices, -1, np.int64)
        new_index[keep] = np.arange(int(keep.sum()))
        tri = self.triangles.cpu().numpy()
        tri = new_index[tri[keep[tri].all(axis=1)]].astype(np.int32)
        lm = self.landmarks.cpu().numpy()
        lm = np.where(lm >= 0, new_index[np.maximum(lm, 0)], -1)
        b = {k: getattr(self, k).cpu().numpy() for k in ("mean", "id_basis", "exp_basis", "albedo_mean",
                                                            "albedo_basis", "front_face", "skin")}
        return MorphableModel(b["mean"][keep], b["id_basis"][:, keep], b["exp_basis"][:, keep],
                              b["albedo_mean"][keep], b["albedo_basis"][:, keep], tri, lm, b["front_face"][keep],
                              b["skin"][keep], units=self.units, name=self.name, exp_names=self.exp_names,
                              albedo_source=self.albedo_source, exp_bounds=self.exp_bounds,
                              sh_prior=self.sh_prior, provenance=self.provenance)

    def with_albedo_prior(self, components: int | None = None, cache_dir: str | Path | None = None) -> MorphableModel:
        """A new (CPU, float32) model with this one's geometry and the generic Laplacian albedo prior
        (:func:`occrecon.morphable.albedo.laplacian_albedo`, ``components`` modes, default :attr:`n_tex`) in place of
        its albedo, and no illumination prior: e.g. the shipped learned model as the plain ICT narrow face, for
        networks trained with the prior (``nets.albedo: "laplacian-prior"`` of a checkpoint)."""
        from .albedo import laplacian_albedo

        k = self.n_tex if components is None else int(components)
        tri = self.triangles.cpu().numpy()
        a_mean, a_basis = laplacian_albedo(self.n_vertices, tri, k, cache_dir)
        b = {key: getattr(self, key).cpu().numpy() for key in ("mean", "id_basis", "exp_basis", "front_face", "skin")}
        provenance = {**self.provenance, "albedo": "replaced by the Laplacian prior"} if self.provenance else None
        return MorphableModel(b["mean"], b["id_basis"], b["exp_basis"], a_mean, a_basis, tri,
                              self.landmarks.cpu().numpy(), b["front_face"], b["skin"], units=self.units, name=self.name,
                              exp_names=self.exp_names, albedo_source=f"laplacian-prior-K{k}",
                              exp_bounds=self.exp_bounds, provenance=provenance)

    @property
    def sh_prior(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(sh_mean (27,), sh_cov (27, 27))`` as numpy arrays, or None."""
        if self.sh_mean is None:
            return None
        return self.sh_mean.detach().cpu().numpy(), self.sh_cov.detach().cpu().numpy()

    # ----------------------------------------------------------------------------------------- save/load
    def save(self, path: str | Path, compact: bool = False) -> Path:
        """Write the project's versioned ``.npz`` (``format_version`` = FORMAT_VERSION; buffers as they are, so a
        float32 model round-trips bit for bit; ``load`` gives float32). Optional keys: ``exp_bounds`` (absent for
        None), ``sh_mean`` / ``sh_cov`` (the illumination prior) and ``provenance`` (JSON text); files without
        them load without them. ``compact=True`` stores the three bases as float16 in a compressed archive (a
        shipped model: about a quarter of the size; the bases' relative rounding is below 1e-3)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: getattr(self, k).detach().cpu().numpy() for k in _ARRAY_KEYS}
        if compact:
            for k in ("id_basis", "exp_basis", "albedo_basis"):
                data[k] = data[k].astype(np.float16)
        extra = {} if self.exp_bounds is None else {"exp_bounds": np.array(self.exp_bounds, np.float64)}
        if self.sh_mean is not None:
            extra["sh_mean"], extra["sh_cov"] = self.sh_prior
        if self.provenance:
            extra["provenance"] = np.str_(json.dumps(self.provenance, sort_keys=True))
        with open(path, "wb") as f:  # a file object: numpy would append '.npz' to a bare name otherwise
            (np.savez_compressed if compact else np.savez)(
                f, format_version=np.int64(FORMAT_VERSION), units=np.str_(self.units), name=np.str_(self.name),
                exp_names=np.array(self.exp_names, dtype=np.str_), albedo_source=np.str_(self.albedo_source),
                **data, **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MorphableModel:
        """Read a file written by ``save``. ValueError naming the file for a file that is not an intact ``.npz``
        (see :func:`read_npz`), missing keys, an unknown ``format_version``, arrays of the wrong shape or dtype, and
        NaN/Inf in the mean, the bases or the albedo; FileNotFoundError for a missing file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no model file at {path}")
        d = read_npz(path)
        with naming_file(path):
            if "format_version" not in d:
                raise ValueError(f"{path}: key 'format_version' missing (not an occrecon model file)")
            try:
                version = int(d["format_version"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: key 'format_version' must be one integer, got "
                                 f"{d['format_version']!r}") from None
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: format_version {version} is not supported (expected {FORMAT_VERSION})")
            need = list(_ARRAY_KEYS) + ["units", "name", "exp_names", "albedo_source"]
            missing = [k for k in need if k not in d]
            if missing:
                raise ValueError(f"{path}: key(s) {missing} missing")
            a = {k: d[k] for k in need}
            bounds = tuple(float(v) for v in np.atleast_1d(d["exp_bounds"])) if "exp_bounds" in d else None
            if bounds is not None and len(bounds) != 2:
                raise ValueError(f"{path}: key 'exp_bounds' must hold 2 values, got {len(bounds)}")
            if ("sh_mean" in d) != ("sh_cov" in d):
                raise ValueError(f"{path}: keys 'sh_mean' and 'sh_cov' come together (one is missing)")
            sh_prior = (d["sh_mean"], d["sh_cov"]) if "sh_mean" in d else None
            provenance = None
            if "provenance" in d:
                try:
                    provenance = json.loads(str(d["provenance"]))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: key 'provenance' is not JSON text ({e})") from None
                if not isinstance(provenance, dict):
                    raise ValueError(f"{path}: key 'provenance' must be a JSON object")
            return cls(a["mean"], a["id_basis"], a["exp_basis"], a["albedo_mean"], a["albedo_basis"], a["triangles"],
                       a["landmarks"], a["front_face"], a["skin"], units=str(a["units"]), name=str(a["name"]),
                       exp_names=[str(n) for n in np.atleast_1d(a["exp_names"])],
                       albedo_source=str(a["albedo_source"]), exp_bounds=bounds, sh_prior=sh_prior,
                       provenance=provenance)
