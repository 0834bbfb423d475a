"""Learned appearance statistics: a PCA that tolerates missing data, the left-right vertex correspondence of a mesh,
and the attaching of a learned albedo model and illumination prior to a :class:`MorphableModel`.

The statistics themselves are estimated from fits of real photos by :mod:`occrecon.fit.appearance` (this layer
only holds the mathematics and the model format; it does not fit anything).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from .model import MorphableModel

__all__ = ["weighted_pca", "mirror_map", "with_learned_albedo", "WeightedPCA"]


class WeightedPCA:
    """Result of :func:`weighted_pca`: ``mean (D,)``, ``basis (K, D)`` (orthogonal directions scaled by their standard
    deviations, so that coefficients are standard-normal, as BFM's), ``std (K,)``, ``iterations`` run and
    ``explained (K,)`` (the share of the total variance of the completed data each mode explains)."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, std: np.ndarray, explained: np.ndarray,
                 iterations: int):
        self.mean, self.basis, self.std, self.explained, self.iterations = mean, basis, std, explained, iterations

    @property
    def directions(self) -> np.ndarray:
        """``(K, D)`` orthonormal principal directions."""
        return self.basis / np.maximum(self.std, 1e-300)[:, None]


#: Above this many entries (N · D) the EM iterations use a randomised truncated SVD (Halko et al.) of rank K + 10
#: with 4 power iterations instead of a full SVD: the same leading subspace to rounding on the spectra of face
#: data, at a fraction of the cost (a build from 2,000 faces). The final decomposition is always exact.
RANDOMISED_ABOVE = 5_000_000


def _top_svd(a: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets of ``a``: exact for small arrays, randomised for large ones."""
    if a.size <= RANDOMISED_ABOVE or k + 10 >= min(a.shape):
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return u[:, :k], s[:k], vt[:k]
    q = np.linalg.qr(a @ rng.standard_normal((a.shape[1], k + 10)))[0]
    for _ in range(4):
        q = np.linalg.qr(a @ (a.T @ q))[0]
    ub, s, vt = np.linalg.svd(q.T @ a, full_matrices=False)
    return (q @ ub)[:, :k], s[:k], vt[:k]


def weighted_pca(data: np.ndarray, weights: np.ndarray | None, k: int, *, iterations: int = 100, tol: float = 1e-7,
                 ddof: int = 1) -> WeightedPCA:
    """Principal components of ``data (N, D)`` whose entries have confidence ``weights (N, D)`` in [0, 1] (0 =
    missing), by EM (Srebro & Jaakkola's weighted low-rank approximation): the missing part of each sample is
    filled with its current rank-K reconstruction, the weighted mean and the SVD are recomputed, until the filled
    values change by less than ``tol`` (relative). With all weights 1 it is exactly the PCA of ``data`` (one
    SVD). Modes are scaled to standard deviations (the singular values over ``sqrt(N - ddof)``); a mode's sign
    makes the largest-magnitude entry of its direction positive.

    Raises ValueError for ``k`` outside ``[1, min(N - ddof, D)]``, shapes that do not match, NaN data where the
    weight is positive, weights outside [0, 1], or a column that no sample observes.
    """
    x = np.asarray(data, np.float64)
    if x.ndim != 2:
        raise ValueError(f"data: expected (N, D), got shape {x.shape}")
    n, d = x.shape
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= min(n - ddof, d):
        raise ValueError(f"k: need 1 <= k <= min(N - {ddof}, D) = {min(n - ddof, d)} (N = {n} samples), got {k!r}")
    if weights is None:
        w = np.ones_like(x)
    else:
        w = np.asarray(weights, np.float64)
        if w.shape != x.shape:
            raise ValueError(f"weights: expected shape {x.shape}, got {w.shape}")
        if not np.isfinite(w).all() or w.min() < 0 or w.max() > 1:
            raise ValueError("weights: must be finite and in [0, 1]")
    if not np.isfinite(x[w > 0]).all():
        raise ValueError("data: NaN or Inf where the weight is positive")
    seen = w.sum(0)
    if (seen <= 0).any():
        raise ValueError(f"data: {int((seen <= 0).sum())} column(s) observed by no sample (weight 0 everywhere)")
    x = np.where(w > 0, x, 0.0)
    mean = (w * x).sum(0) / seen
    filled = np.where(w > 0, x, mean[None])
    complete = bool((w == 1).all())
    rng = np.random.default_rng(0)
    it = 0
    for it in range(1, (0 if complete else iterations) + 1):
        mean = filled.mean(0)
        u, s, vt = _top_svd(filled - mean, k, rng)
        recon = mean + (u * s) @ vt
        new = w * x + (1 - w) * recon
        change = np.abs(new - filled).max() / max(np.abs(filled).max(), 1e-12)
        filled = new
        if change < tol:
            break
    if complete:
        it = 1  # complete data: the one exact SVD below
    mean = filled.mean(0)
    centred = filled - mean
    if centred.size <= RANDOMISED_ABOVE:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        total = (s ** 2).sum()
    else:  # the leading modes of a large problem: a randomised SVD refined by more power iterations
        _, s, vt = _top_svd(centred, k, rng)
        total = float((centred ** 2).sum())
    vt = vt[:k]
    flip = np.sign(vt[np.arange(k), np.abs(vt).argmax(1)])
    vt = vt * np.where(flip == 0, 1.0, flip)[:, None]
    std = s[:k] / np.sqrt(n - ddof)
    explained = s[:k] ** 2 / total if total > 0 else np.zeros(k)
    return WeightedPCA(mean, vt * std[:, None], std, explained, it)


def mirror_map(vertices: np.ndarray, axis: int = 0, centre: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-right correspondence of a (nearly) symmetric mesh: for each vertex, the vertex nearest to its mirror
    image across the plane ``x[axis] = centre`` (default the midpoint of the extent along ``axis``), and that
    distance. ``(index (V,) int64, distance (V,) float64)``; vertices on the plane map to themselves."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"vertices: expected (V, 3), got shape {v.shape}")
    c = 0.5 * (v[:, axis].min() + v[:, axis].max()) if centre is None else float(centre)
    mirrored = v.copy()
    mirrored[:, axis] = 2 * c - mirrored[:, axis]
    dist, idx = cKDTree(v).query(mirrored)
    return idx.astype(np.int64), dist


def with_learned_albedo(model: MorphableModel, mean: np.ndarray, basis: np.ndarray, *, sh_mean: np.ndarray | None,
                        sh_cov: np.ndarray | None, provenance: dict[str, Any], name: str | None = None
                        ) -> MorphableModel:
    """A copy of ``model`` (CPU, float32) with the albedo ``mean (V, 3)`` and ``basis (K, V, 3)`` (coefficients in
    standard deviations), the illumination prior (``sh_mean (27,)``, ``sh_cov (27, 27)``: the full 27 SH
    coefficients in θ's [R9 | G9 | B9] order *with* the renderer's ambient on each DC term) and the build's
    ``provenance`` (JSON-serialisable: faces, licences, command). ``albedo_source`` becomes ``"learned"``."""
    mean = np.asarray(mean, np.float32)
    basis = np.asarray(basis, np.float32)
    v = model.n_vertices
    if mean.shape != (v, 3):
        raise ValueError(f"mean: expected ({v}, 3), got {mean.shape}")
    if basis.ndim != 3 or basis.shape[1:] != (v, 3):
        raise ValueError(f"basis: expected (K, {v}, 3), got {basis.shape}")
    json.dumps(provenance)  # must be serialisable (raises TypeError naming the object otherwise)
    b = {k: getattr(model, k).detach().cpu().numpy() for k in ("mean", "id_basis", "exp_basis", "triangles",
                                                                 "landmarks", "front_face", "skin")}
    return MorphableModel(b["mean"], b["id_basis"], b["exp_basis"], mean, basis, b["triangles"], b["landmarks"],
                          b["front_face"], b["skin"], units=model.units, name=name or model.name,
                          exp_names=model.exp_names, albedo_source="learned", exp_bounds=model.exp_bounds,
                          sh_prior=None if sh_mean is None else (sh_mean, sh_cov), provenance=provenance)
