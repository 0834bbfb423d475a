"""A generic albedo prior for models that have none (ICT, SFM): mean skin colour + low-frequency Laplacian modes.

This is **not** a learned albedo statistic: it only says "skin-coloured, smoothly varying over the surface".
Basis: the eigenvectors φ_j of the mesh's **uniform (graph) Laplacian** with the smallest eigenvalues, from the
generalised problem ``L φ = λ D φ`` (L = D − A, A the vertex adjacency of the triangles, D its degrees), so φ_0
is constant on a connected mesh and higher j vary faster. The uniform Laplacian is used (not cotangent) because
it depends on the topology only (one cache entry per mesh, unaffected by the shape coefficients) and is robust
to the slivers of scanned meshes. Component k (k = 0..K−1) modulates colour channel ``k % 3`` with
``φ_{k // 3}``, normalised to unit root-mean-square over vertices, scaled by ``0.1 / sqrt(1 + k // 3)``: a
coefficient of 1 is a ±0.1 (RGB, [0, 1]) variation for the constant mode, smaller for finer ones, so
coefficients are roughly standard-normal and the usual ‖θ_tex‖² prior applies.

Determinism: each eigenvector's sign is fixed so that its first entry (in vertex order) whose magnitude is at
least half the largest is positive (robust to rounding, unlike "the largest entry" on symmetric meshes); ARPACK
starts from a fixed vector. Within a repeated eigenvalue (symmetric meshes) the basis is whatever the solver
returns for that start vector: deterministic for a given scipy build, not canonical. Bases are cached on disk as ``.npz`` keyed by a SHA-256 of
(V, triangles) and K.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["MEAN_SKIN_ALBEDO", "mesh_hash", "uniform_laplacian", "laplacian_eigenvectors", "laplacian_albedo",
           "default_cache_dir"]

#: Mean skin albedo, linear RGB in [0, 1]: a generic light-to-medium skin tone (an assumption, not a statistic).
MEAN_SKIN_ALBEDO = (0.70, 0.52, 0.44)
#: Amplitude (RGB, [0, 1]) of the constant mode per unit coefficient; mode j is scaled by 1/sqrt(1 + j).
MODE_SCALE = 0.1
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$OCCRECON_CACHE`` if set, else ``~/.cache/occrecon``."""
    env = os.environ.get("OCCRECON_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "occrecon"


def mesh_hash(n_vertices: int, triangles: np.ndarray) -> str:
    """SHA-256 (hex) of the vertex count and the int32 triangle array: the key of the cached basis."""
    h = hashlib.sha256()
    h.update(np.int64(n_vertices).tobytes())
    h.update(np.ascontiguousarray(triangles, dtype=np.int32).tobytes())
    return h.hexdigest()


def uniform_laplacian(n_vertices: int, triangles: np.ndarray):
    """``(L, D)`` as scipy CSR matrices: A[i, j] = 1 for every mesh edge, D = diag(degree), L = D − A."""
    import scipy.sparse as sp

    tri = np.asarray(triangles, dtype=np.int64)
    i = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2]])
    j = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0]])
    a = sp.coo_matrix((np.ones(2 * i.size), (np.concatenate([i, j]), np.concatenate([j, i]))),
                      shape=(n_vertices, n_vertices)).tocsr()
    a.data[:] = 1.0  # duplicate edges (two triangles per edge) count once
    deg = np.asarray(a.sum(axis=1)).ravel()
    if np.any(deg == 0):
        deg = np.where(deg == 0, 1.0, deg)  # isolated vertices: their own constant mode
    d = sp.diags(deg).tocsr()
    return (d - a).tocsr(), d


def laplacian_eigenvectors(n_vertices: int, triangles: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` smallest generalised eigenpairs of ``L φ = λ D φ``: ``(eigenvalues (m,), phi (V, m))``,
    each φ scaled to unit RMS, signs fixed (see the module doc), ascending λ."""
    if not 1 <= m <= n_vertices:
        raise ValueError(f"m: need 1 <= m <= V = {n_vertices}, got {m}")
    L, D = uniform_laplacian(n_vertices, triangles)
    if n_vertices <= 2000 or m >= n_vertices - 1:
        import scipy.linalg

        lam, phi = scipy.linalg.eigh(L.toarray(), D.toarray(), subset_by_index=[0, m - 1])
    else:
        import scipy.sparse.linalg as spla

        v0 = np.cos(np.arange(n_vertices) * 0.7071) + 1.5
        lam, phi = spla.eigsh(L, k=m, M=D, sigma=-1e-3, which="LM", v0=v0, tol=1e-10)
        order = np.argsort(lam, kind="stable")
        lam, phi = lam[order], phi[:, order]
    phi = phi / np.sqrt(np.mean(phi ** 2, axis=0, keepdims=True))
    big = np.abs(phi) >= 0.5 * np.abs(phi).max(axis=0, keepdims=True)
    pick = np.argmax(big, axis=0)  # first vertex whose |φ| is at least half the largest
    phi = phi * np.sign(phi[pick, np.arange(m)])[None, :]
    return lam, phi


def laplacian_albedo(n_vertices: int, triangles: np.ndarray, k: int = 80,
                     cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generic albedo prior: ``(albedo_mean (V, 3), albedo_basis (k, V, 3))`` float32 (see the module doc).

    Args:
        n_vertices, triangles: the mesh (``(F, 3)`` 0-based).
        k: number of albedo components (≥ 0; ``ceil(k / 3)`` eigenvectors are computed).
        cache_dir: folder for the cached basis; None = ``default_cache_dir()``.
    """
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    mean = np.tile(np.asarray(MEAN_SKIN_ALBEDO, np.float32), (n_vertices, 1))
    if k == 0:
        return mean, np.zeros((0, n_vertices, 3), np.float32)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file = cache / f"albedo_laplacian_v{_CACHE_VERSION}_{mesh_hash(n_vertices, triangles)[:24]}_K{k}.npz"
    if file.is_file():
        try:
            with np.load(file, allow_pickle=False) as d:
                basis = d["albedo_basis"]
        except Exception:  # noqa: BLE001  (a damaged cache file is rebuilt, never an error)
            basis = None
        if basis is not None and basis.shape == (k, n_vertices, 3) and np.isfinite(basis).all():
            return mean, basis
    m = -(-k // 3)
    _, phi = laplacian_eigenvectors(n_vertices, triangles, m)
    basis = np.zeros((k, n_vertices, 3), np.float32)
    for c in range(k):
        j = c // 3
        basis[c, :, c % 3] = MODE_SCALE / np.sqrt(1.0 + j) * phi[:, j]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, albedo_basis=basis)
    os.replace(tmp, file)
    return mean, basis
