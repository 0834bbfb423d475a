"""Scenes shared by the benchmark suites: the ICT face mesh and a UV sphere, in clip space."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occrecon import assets
from occrecon.render.meshes import perspective_clip, uv_sphere


def _sphere(triangles: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(4, int(round(math.sqrt(triangles / 2))))
    v, t = uv_sphere(n + 1, n)
    return perspective_clip(v), t


def _ict_face() -> tuple[torch.Tensor, torch.Tensor]:
    """The ICT-FaceKit mean face (9,409 vertices, 18,460 triangles) filling most of the frame."""
    shared = assets.shared_dir(required=False)
    if shared is None:
        pytest.skip("shared assets (ICT face model) not present")
    d = np.load(shared / "assets" / "models" / "ict_face.npz")
    v = torch.tensor(d["mean"], dtype=torch.float32)
    v = (v - v.mean(0)) / (v.max(0).values - v.min(0).values).max() * 2
    return perspective_clip(v, focal=2.5), torch.tensor(d["tris"].astype(np.int32))


@pytest.fixture(scope="session")
def mesh_scenes():
    """name -> function(triangles) -> (pos (V, 4), tri (F, 3) int32)."""
    return {"ict_face": lambda n: _ict_face(), "sphere": _sphere}
