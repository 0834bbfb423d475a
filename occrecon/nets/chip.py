"""Differentiable face chips with dlib's ``get_face_chip`` geometry.

dlib (``get_face_chip_details``) fits a least-squares similarity from a mean-face template (landmarks 27–54 and
60–64 of the 68: nose, eyes, outer mouth and upper inner lip; eyebrows, jaw and lower lip ignored), placed in the
chip as ``size · (padding + t) / (1 + 2 padding)``, to the detected landmarks. From that similarity it keeps the
angle, the scale s and the image point c of the chip centre ``(size/2, size/2)``, builds the rectangle centred at
c with side ``size·s − 1`` and maps chip pixels 0 … size−1 linearly onto it (so the chip sits half a pixel off
the fitted similarity: pixel centres 0 … size−1 are centred on (size−1)/2, the rectangle on c = S(size/2)). dlib's pixel coordinates are
integer pixel centres; ours put the centre of pixel j at j + 0.5, so both ends are shifted by 0.5 here.
(For chips much smaller than the face dlib first downsamples with an image pyramid; we sample bilinearly.)
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ._checks import check_image

__all__ = ["chip_transform", "face_chip", "DLIB_CHIP_SIZE", "DLIB_CHIP_PADDING", "DLIB_TEMPLATE_INDICES",
           "dlib_template"]

#: dlib's face-recognition chip: 150 × 150 pixels, padding 0.25 (``dnn_face_recognition_ex.cpp``).
DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25

#: The 68-point indices dlib aligns on: 27–54 and 60–64.
DLIB_TEMPLATE_INDICES = tuple(range(27, 55)) + tuple(range(60, 65))

# dlib's mean face (dlib/image_transforms/interpolation.h, Boost licence), unit square, points 27-54 and 60-64.
_TEMPLATE_X = (
    0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373,
    0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516,
    0.79751, 0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104,
    0.290379, 0.428096, 0.490127, 0.552157, 0.689874)
_TEMPLATE_Y = (
    0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
    0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
    0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233,
    0.784792, 0.778746, 0.785343, 0.778746, 0.784792)


def dlib_template(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """dlib's template points in chip pixel coordinates of dlib (integer = pixel centre): ``(33, 2)``."""
    t = torch.tensor([_TEMPLATE_X, _TEMPLATE_Y], dtype=dtype).T
    return size * (padding + t) / (2 * padding + 1)


def _check_landmarks(landmarks: torch.Tensor) -> None:
    if not isinstance(landmarks, torch.Tensor):
        raise TypeError(f"landmarks: expected a torch.Tensor, got {type(landmarks).__name__}")
    if landmarks.dim() != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks: expected shape (B, 68, 2), got {tuple(landmarks.shape)}")
    if not landmarks.is_floating_point():
        raise TypeError(f"landmarks: expected a floating dtype, got {landmarks.dtype}")


def chip_transform(landmarks: torch.Tensor, size: int = DLIB_CHIP_SIZE,
                   padding: float = DLIB_CHIP_PADDING) -> torch.Tensor:
    """The affine map from chip to image pixel coordinates that dlib's ``get_face_chip`` uses.

    Args:
        landmarks: ``(B, 68, 2)`` float, image pixel coordinates (centre of pixel (i, j) at (j + 0.5, i + 0.5)).
        size: chip side in pixels (> 1).
        padding: dlib's padding around the template (≥ 0).

    Returns:
        ``A (B, 2, 3)`` (landmarks' dtype): image point = ``A @ [u, v, 1]`` for a chip point (u, v), both in
        our convention (chip pixel (r, c) centre at (c + 0.5, r + 0.5)). Differentiable w.r.t. landmarks.
    """
    _check_landmarks(landmarks)
    if int(size) != size or size < 2:
        raise ValueError(f"size: expected an integer >= 2, got {size}")
    if padding < 0:
        raise ValueError(f"padding: expected >= 0, got {padding}")
    src = dlib_template(int(size), float(padding), landmarks.dtype).to(landmarks.device)  # (N, 2) dlib chip coords
    dst = landmarks[:, DLIB_TEMPLATE_INDICES, :] - 0.5  # dlib image coords
    # least-squares similarity dst ≈ [[a, -b], [b, a]] src + t (closed form after centring)
    sm, dm = src.mean(0), dst.mean(1, keepdim=True)
    s0 = src - sm
    d0 = dst - dm
    norm = (s0 ** 2).sum()
    a = (s0[None, :, 0] * d0[..., 0] + s0[None, :, 1] * d0[..., 1]).sum(1) / norm
    b = (s0[None, :, 0] * d0[..., 1] - s0[None, :, 1] * d0[..., 0]).sum(1) / norm
    scale = torch.sqrt(a * a + b * b)
    cos, sin = a / scale, b / scale
    half = torch.full_like(a, size / 2.0)
    # image point of the chip centre (size/2, size/2) under the fitted similarity
    cx = a * (half - sm[0]) - b * (half - sm[1]) + dm[:, 0, 0]
    cy = b * (half - sm[0]) + a * (half - sm[1]) + dm[:, 0, 1]
    # chip pixel u in 0..size-1 -> c + R k (u - (size-1)/2), k = (size*scale - 1)/(size - 1)
    k = (size * scale - 1.0) / (size - 1.0)
    m00, m01, m10, m11 = k * cos, -k * sin, k * sin, k * cos
    mid = (size - 1) / 2.0
    # our chip coordinate u' = u + 0.5, our image coordinate = dlib + 0.5
    tx = cx - (m00 + m01) * (mid + 0.5) + 0.5
    ty = cy - (m10 + m11) * (mid + 0.5) + 0.5
    return torch.stack([torch.stack([m00, m01, tx], -1), torch.stack([m10, m11, ty], -1)], 1)


def face_chip(images: torch.Tensor, landmarks: torch.Tensor, size: int = DLIB_CHIP_SIZE,
              padding: float = DLIB_CHIP_PADDING) -> torch.Tensor:
    """Cut dlib-aligned face chips, differentiably (bilinear ``grid_sample``, zeros outside the image).

    Args:
        images: ``(B, C, H, W)`` float (any value range; usually RGB in [0, 1]).
        landmarks: ``(B, 68, 2)`` float, image pixel coordinates (pixel centres at j + 0.5).
        size, padding: as :func:`chip_transform`.

    Returns:
        ``(B, C, size, size)`` chips, differentiable w.r.t. images and landmarks.
    """
    check_image(images, "images", channels=None)
    _check_landmarks(landmarks)
    if landmarks.shape[0] != images.shape[0]:
        raise ValueError(f"landmarks: batch {landmarks.shape[0]} differs from images batch {images.shape[0]}")
    A = chip_transform(landmarks.to(images.dtype), size, padding)
    h, w = images.shape[-2:]
    c = torch.arange(int(size), dtype=images.dtype, device=images.device) + 0.5
    v, u = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # (S*S, 3)
    img_pts = torch.einsum("bij,nj->bni", A, pts)  # (B, S*S, 2) our image coords
    grid = torch.stack([2 * img_pts[..., 0] / w - 1, 2 * img_pts[..., 1] / h - 1], -1)
    grid = grid.reshape(images.shape[0], int(size), int(size), 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
