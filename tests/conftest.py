"""Shared test helpers: a small synthetic face-like mesh."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def grid_face(n: int = 9):
    """An n×n grid over [-1, 1]² bulging towards +z (a face-like cap), CCW triangles seen from +z, and 68
    landmarks on grid points laid out like iBUG's (jaw ends at x = ±0.75, chin at y = −0.75, brows at y = 0.5).

    Returns ``(vertices (n², 3) float64, triangles (2(n−1)², 3) int64, quads (list of 4-tuples), landmarks (68,))``.
    """
    xs = np.linspace(-1.0, 1.0, n)
    x, y = np.meshgrid(xs, xs)  # row r = y index
    z = 1.0 - 0.5 * (x ** 2 + y ** 2)
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    quads = [(idx[r, c], idx[r, c + 1], idx[r + 1, c + 1], idx[r + 1, c]) for r in range(n - 1) for c in range(n - 1)]
    tris = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int64)

    def at(px, py):
        return int(np.argmin((verts[:, 0] - px) ** 2 + (verts[:, 1] - py) ** 2))

    lm = np.full(68, at(0.0, 0.0), np.int64)
    lm[0], lm[16], lm[8] = at(-0.75, 0.0), at(0.75, 0.0), at(0.0, -0.75)
    lm[17:27] = [at(px, 0.5) for px in np.linspace(-0.6, 0.6, 10)]
    return verts, tris, quads, lm


@pytest.fixture
def grid():
    return grid_face()


@pytest.fixture
def make_grid():
    """The ``grid_face`` function itself, for other sizes."""
    return grid_face


class ConstantLogitUNet(torch.nn.Module):
    """A stand-in segmentation net whose logit is one constant: M = Φ·σ(logit), a closed-form mask."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(float(logit)))

    def forward(self, target, render):
        return self.logit.expand(target.shape[0], 1, *target.shape[2:])


@pytest.fixture
def constant_logit_unet():
    return ConstantLogitUNet


@pytest.fixture(scope="session")
def ict():
    """The ICT-FaceKit narrow-face model (shared assets; skipped without them). Do not modify it in place."""
    from occrecon import assets
    from occrecon.morphable import load_model

    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets not present")
    return load_model(shared / "assets" / "models" / "ict_narrowface.npz")


def _quad_stack(n: int = 4, seed: int = 0, dtype=torch.float64, batch: int = 1):
    """n random, overlapping, tilted quads in front of an OpenGL perspective camera (clip w = view depth):
    ``(pos [batch, 4n, 4], tri [2n, 3] int32)``; the second image (batch 2) is the first mirrored upside down."""
    from occrecon.render.meshes import perspective_clip

    g = torch.Generator().manual_seed(seed)
    quads = []
    for _ in range(n):
        c = torch.rand(2, generator=g, dtype=dtype) * 1.2 - 0.6
        s = 0.4 + 0.5 * torch.rand(1, generator=g, dtype=dtype)
        z0 = torch.rand(1, generator=g, dtype=dtype) * 1.6 - 0.8
        tilt = (torch.rand(2, generator=g, dtype=dtype) - 0.5) * 0.8
        corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=dtype) * s + c
        quads.append(torch.cat([corners, (z0 + (corners - c) @ tilt)[:, None]], 1))
    pos = perspective_clip(torch.cat(quads), distance=3.0)
    flip = pos * torch.tensor([1, -1, 1, 1], dtype=dtype)
    tri = torch.tensor([[4 * k, 4 * k + 1, 4 * k + 2] for k in range(n)] + [[4 * k, 4 * k + 2, 4 * k + 3]
                                                                          for k in range(n)], dtype=torch.int32)
    return torch.stack([pos, flip][:batch]), tri


@pytest.fixture
def quad_stack():
    """The ``_quad_stack`` function (random overlapping quads seen in perspective), for depth-order tests."""
    return _quad_stack

