"""Mesh files: ASCII OBJ and PLY with per-vertex colours, and an OBJ reader (polygons fan-triangulated)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["write_obj", "write_ply", "read_obj"]


def _prepare(vertices, faces, colors):
    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else vertices, np.float64)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, torch.Tensor) else faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices: expected shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and f.dtype.kind not in "iu"):
        raise ValueError(f"faces: expected integer shape (F, 3), got {f.shape} {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"faces: indices must lie in [0, {v.shape[0]})")
    c = None
    if colors is not None:
        c = np.asarray(colors.detach().cpu() if isinstance(colors, torch.Tensor) else colors, np.float64)
        if c.shape != v.shape:
            raise ValueError(f"colors: expected shape {v.shape} (RGB in [0, 1]), got {c.shape}")
        c = np.clip(c, 0.0, 1.0)
    return v, f.astype(np.int64), c


def write_obj(path: str | Path, vertices, faces, colors=None) -> Path:
    """Write an ASCII OBJ. ``vertices (V, 3)``, ``faces (F, 3)`` 0-based, ``colors (V, 3)`` RGB in [0, 1]
    (clamped) written as the common ``v x y z r g b`` extension (MeshLab, Blender, trimesh read it)."""
    v, f, c = _prepare(vertices, faces, colors)
    path = Path(path)
    with open(path, "w") as fh:
        if c is None:
            fh.writelines(f"v {a:.9g} {b:.9g} {d:.9g}\n" for a, b, d in v)
        else:
            fh.writelines(f"v {p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {q[0]:.6g} {q[1]:.6g} {q[2]:.6g}\n"
                          for p, q in zip(v, c))
        fh.writelines(f"f {a + 1} {b + 1} {d + 1}\n" for a, b, d in f)
    return path


def write_ply(path: str | Path, vertices, faces, colors=None) -> Path:
    """Write an ASCII PLY: float x, y, z, optional uchar red/green/blue (round(255·colour)), and
    ``vertex_indices`` triangles (0-based)."""
    v, f, c = _prepare(vertices, faces, colors)
    path = Path(path)
    header = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x", "property float y",
              "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "w") as fh:
        fh.write("\n".join(header) + "\n")
        if c is None:
            fh.writelines(f"{a:.9g} {b:.9g} {d:.9g}\n" for a, b, d in v)
        else:
            q = np.rint(c * 255).astype(np.int64)
            fh.writelines(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {r[0]} {r[1]} {r[2]}\n" for p, r in zip(v, q))
        fh.writelines(f"3 {a} {b} {d}\n" for a, b, d in f)
    return path


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V, 3) float64, triangles (F, 3) int64 0-based)`` from an OBJ's ``v`` and ``f`` lines.

    Face tokens may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``; negative (relative) indices are resolved;
    polygons with n > 3 corners are fan-triangulated ``(0, k, k+1)``. Extra ``v`` columns (colours) are ignored.
    """
    verts: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith("v "):
                parts = line.split()
                if len(parts) < 4:
                    raise ValueError(f"{path}:{n}: a 'v' line needs 3 coordinates")
                verts.append([float(t) for t in parts[1:4]])
            elif line.startswith("f "):
                idx = []
                for tok in line.split()[1:]:
                    i = int(tok.split("/")[0])
                    idx.append(i - 1 if i > 0 else len(verts) + i)
                if len(idx) < 3:
                    raise ValueError(f"{path}:{n}: a face needs at least 3 vertices")
                tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
    v = np.asarray(verts, np.float64).reshape(-1, 3)
    t = np.asarray(tris, np.int64).reshape(-1, 3)
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"{path}: face indices out of range [1, {len(v)}]")
    return v, t
