"""Small geometry helpers for tests, benchmarks and examples: a UV sphere and an OpenGL perspective projection."""
from __future__ import annotations

import math

import torch

__all__ = ["uv_sphere", "perspective_clip"]


def uv_sphere(n_lat: int, n_lon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit sphere with ``2 * n_lon * (n_lat - 1)`` triangles, counter-clockwise seen from outside.

    Returns ``(V, 3)`` float32 vertices and ``(F, 3)`` int32 triangles.
    """
    if n_lat < 2 or n_lon < 3:
        raise ValueError(f"uv_sphere needs n_lat >= 2 and n_lon >= 3, got {n_lat}, {n_lon}")
    th = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(th, ph, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    v = torch.cat([torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), ring,
                   torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)])
    j = torch.arange(n_lon)
    jn = (j + 1) % n_lon
    tris = [torch.stack([torch.zeros_like(j), 1 + jn, 1 + j], -1)]
    for i in range(n_lat - 2):
        a, b = 1 + i * n_lon + j, 1 + i * n_lon + jn
        tris += [torch.stack([a, b, b + n_lon], -1), torch.stack([a, b + n_lon, a + n_lon], -1)]
    base, last = 1 + (n_lat - 2) * n_lon, v.shape[0] - 1
    tris.append(torch.stack([base + j, base + jn, torch.full_like(j, last)], -1))
    return v.float(), torch.cat(tris).to(torch.int32)


def perspective_clip(vertices: torch.Tensor, distance: float = 3.0, focal: float = 2.0, near: float = 0.1,
                     far: float = 100.0) -> torch.Tensor:
    """OpenGL clip coordinates ``(..., 4)`` of points ``(..., 3)`` seen by a camera on the +z axis at ``distance``.

    ``focal`` is the focal length in NDC units (2 = a 53-degree field of view); the camera looks down -z.
    """
    x, y, z = vertices.unbind(-1)
    z = z - distance
    return torch.stack([focal * x, focal * y, -(far + near) / (far - near) * z - 2 * far * near / (far - near), -z],
                       -1)
