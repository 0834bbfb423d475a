"""Perspective pinhole camera: Euler-angle pose, clip-space coordinates for ``rasterize``, pixel projection.

Conventions (documented once, used everywhere):

* Camera space is OpenGL's: the camera sits at the origin, looks down -z, x to the right, y up. A face model whose
  front looks along +z faces the camera once translated to ``z = -distance``.
* Pose: ``v_cam = R(angles) @ v + t`` with ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` and ``angles = (pitch, yaw, roll)``
  in radians (Deep3D's ``compute_rotation`` order).
* Pixels: column ``u`` to the right and row ``v`` DOWN from the top-left corner, pixel centres at half-integers
  (``u = 0.5`` is the centre of column 0). ``u = cx + f x / (-z)``, ``v = cy - f y / (-z)``.
* Clip space matches the rasterizer (row 0 of ``rast`` is the BOTTOM image row): a point projected to pixel (u, v) is
  rasterized in column ``floor(u)`` and ``rast`` row ``H - 1 - floor(v)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["euler_rotation", "PerspectiveCamera", "default_camera", "REFERENCE_FOCAL", "REFERENCE_SIZE"]

#: Default framing: Deep3D's focal length of 1015 px for a 224 x 224 crop; other crop sizes scale it.
REFERENCE_FOCAL = 1015.0
REFERENCE_SIZE = 224


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` from ``(..., 3)`` angles (pitch about x, yaw about y, roll about z), radians:
    ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``. Differentiable."""
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must be (..., 3) = (pitch, yaw, roll), got shape {tuple(angles.shape)}")
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


@dataclass
class PerspectiveCamera:
    """Pinhole camera for an ``image_size = (H, W)`` image.

    Args:
        focal: focal length in pixels (Deep3D / FOCUS: 1015 for a 224 x 224 aligned face).
        image_size: ``(H, W)``.
        principal_point: ``(cx, cy)`` in pixels; default: the image centre ``(W / 2, H / 2)``.
        near, far: clipping planes (positive distances, model units) for the clip-space z.
    """

    focal: float = 1015.0
    image_size: tuple[int, int] = (224, 224)
    principal_point: tuple[float, float] | None = None
    near: float = 0.01
    far: float = 1.0e4

    def __post_init__(self):
        h, w = (int(v) for v in self.image_size)
        if h < 1 or w < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not self.focal > 0:
            raise ValueError(f"focal must be positive, got {self.focal}")
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        self.image_size = (h, w)
        if self.principal_point is None:
            self.principal_point = (w / 2.0, h / 2.0)

    def transform(self, vertices: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """Model to camera space: ``(B, V, 3)`` with ``(B, 3)`` angles and ``(B, 3)`` translations."""
        rot = euler_rotation(angles)
        return vertices @ rot.transpose(-1, -2) + translation.unsqueeze(-2)

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-space points ``(..., 3)`` to clip space ``(..., 4)`` for :func:`occrecon.render.rasterize`."""
        h, w = self.image_size
        cx, cy = self.principal_point
        x, y, z = points.unbind(-1)
        wc = -z
        xc = (2 * self.focal / w) * x + (2 * cx / w - 1) * wc
        yc = (2 * self.focal / h) * y + (1 - 2 * cy / h) * wc
        n, f = self.near, self.far
        zc = -(f + n) / (f - n) * z - 2 * f * n / (f - n)
        return torch.stack([xc, yc, zc, wc], -1)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-space points ``(..., 3)`` to pixel coordinates ``(..., 2)`` = (u right, v down)."""
        cx, cy = self.principal_point
        x, y, z = points.unbind(-1)
        d = -z
        return torch.stack([cx + self.focal * x / d, cy - self.focal * y / d], -1)


def default_camera(image_size: int, focal: float | None = None) -> PerspectiveCamera:
    """The training framing for a square crop: focal ``REFERENCE_FOCAL · image_size / REFERENCE_SIZE`` px (1015 at
    224), principal point at the centre."""
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
    if focal is None:
        focal = REFERENCE_FOCAL * image_size / REFERENCE_SIZE
    return PerspectiveCamera(focal=float(focal), image_size=(image_size, image_size))
