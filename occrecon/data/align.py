"""5-point face alignment into the renderer's 224 × 224 framing (Deep3D's preprocessing recipe).

Deep3D (and the paper's pipeline) crops every training image from five points — the two eye centres, the nose tip
and the two mouth corners — by fitting a scale and a translation that take the points onto a standard 5-point
template, then resampling a 224 × 224 crop. In Deep3D the template is the 3D BFM landmarks and the factor 102 turns
model units into crop pixels (≈ focal 1015 px / camera distance 10). We have no BFM file, so the template here is
taken straight from our renderer: the five points of the default model's mean face rendered at θ = 0 with the
default camera (:data:`TEMPLATE_224`). An aligned photo and a render at θ ≈ 0 then share one framing, which is what
the encoder's zero-initialised head assumes.

Conventions (the project's, see ``occrecon.render.camera``): points are ``(x, y)`` pixel coordinates, x right,
y down, the centre of pixel (row i, column j) at ``(j + 0.5, i + 0.5)``. An affine ``M (2, 3)`` maps a point
``p`` of the source image to ``M[:, :2] @ p + M[:, 2]`` in the crop.

Like Deep3D, the default fit is scale + translation only (``rotate=False``): in-plane rotation (roll) stays in the
crop for the encoder to estimate. ``rotate=True`` fits a full similarity (scale, rotation, translation).
Both are closed-form least-squares fits (no SVD), and degenerate or non-finite points raise ``ValueError`` —
the reference code crashed in an SVD there.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = [
    "FIVE_POINT_NAMES", "TEMPLATE_224", "TEMPLATE_SIZE", "TEMPLATE_MODEL", "MIN_SPREAD_PX",
    "five_from_68", "template_from_model", "estimate_alignment", "transform_points", "invert_affine",
    "warp_affine", "warp_affine_tensor", "align_face", "align_faces",
]

#: Order of the five alignment points (image left first: "left eye" is the eye on the image's left).
FIVE_POINT_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")

#: iBUG-68 indices behind the five points: the six points of each eye (averaged), the nose tip, the mouth corners.
EYE_LEFT_68 = tuple(range(36, 42))
EYE_RIGHT_68 = tuple(range(42, 48))
NOSE_TIP_68 = 30
MOUTH_LEFT_68 = 48
MOUTH_RIGHT_68 = 54

#: Crop size the template is expressed in (the default camera: focal 1015 px, principal point at the centre).
TEMPLATE_SIZE = 224

#: Face model file the template was rendered from (in ``shared_dir()/assets/models``).
TEMPLATE_MODEL = "sfm_3448.npz"

#: The five points (``FIVE_POINT_NAMES`` order) of the mean SFM face (``sfm_3448.npz``) rendered at θ = 0 by
#: ``FaceRenderer(model)`` with its default camera (focal 1015 px, 224 × 224, camera 1 m away), in crop pixels
#: (pixel-centre convention). Recomputed by :func:`template_from_model`; tests check the numbers. The ICT
#: narrow-face model gives a similar template (eyes ~15 % further apart; every point within 8 px).
TEMPLATE_224 = np.array([
    [80.5142, 78.8048],
    [143.6638, 78.9313],
    [111.7072, 114.0575],
    [88.5510, 147.2852],
    [135.4004, 147.3156],
], dtype=np.float64)

#: Smallest root-mean-square spread (pixels) of the five image points accepted by :func:`estimate_alignment`.
MIN_SPREAD_PX = 1.0

_PADDINGS = ("zeros", "edge")


def five_from_68(points):
    """The five alignment points from iBUG-68 landmarks.

    Args:
        points: ``(..., 68, 2)`` numpy array or torch tensor, pixel coordinates.
    Returns:
        ``(..., 5, 2)`` of the same kind (float64 for numpy input, the tensor's dtype for torch): left eye centre
        (mean of points 36-41), right eye centre (mean of 42-47), nose tip (30), mouth corners (48, 54).
    Raises:
        ValueError: wrong shape, or any of the 15 points used is NaN/Inf (other points may be NaN, e.g. a
            model's missing jaw landmarks).
    """
    is_torch = isinstance(points, torch.Tensor)
    if not is_torch:
        points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or tuple(points.shape[-2:]) != (68, 2):
        raise ValueError(f"points must be (..., 68, 2), got shape {tuple(points.shape)}")
    if is_torch:
        five = torch.stack([points[..., EYE_LEFT_68, :].mean(-2), points[..., EYE_RIGHT_68, :].mean(-2),
                            points[..., NOSE_TIP_68, :], points[..., MOUTH_LEFT_68, :],
                            points[..., MOUTH_RIGHT_68, :]], -2)
        finite = bool(torch.isfinite(five).all())
    else:
        five = np.stack([points[..., EYE_LEFT_68, :].mean(-2), points[..., EYE_RIGHT_68, :].mean(-2),
                         points[..., NOSE_TIP_68, :], points[..., MOUTH_LEFT_68, :],
                         points[..., MOUTH_RIGHT_68, :]], -2)
        finite = bool(np.isfinite(five).all())
    if not finite:
        raise ValueError("points: an eye, nose-tip (30) or mouth-corner (48, 54) landmark is NaN or Inf")
    return five


def template_from_model(model, renderer=None) -> np.ndarray:
    """Recompute the 5-point template: the model's mean face rendered at θ = 0.

    Args:
        model: a ``MorphableModel`` with 68 landmarks (the eye, nose-tip and mouth-corner ones must exist).
        renderer: a ``FaceRenderer`` for ``model``; default ``FaceRenderer(model)`` (224², focal 1015 px).
    Returns:
        ``(5, 2)`` float64 pixel coordinates in the renderer's image.
    """
    from ..render import FaceRenderer

    renderer = renderer if renderer is not None else FaceRenderer(model)
    with torch.no_grad():
        lms = renderer(model.layout.zeros(1)).landmarks[0]
    return five_from_68(lms.double().cpu().numpy())


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _template(template, size: tuple[int, int]) -> np.ndarray:
    """The template scaled from its ``TEMPLATE_SIZE`` frame to an ``(h, w)`` crop (x by w/224, y by h/224)."""
    t = TEMPLATE_224 if template is None else np.asarray(template, dtype=np.float64)
    if t.shape != (5, 2) or not np.isfinite(t).all():
        raise ValueError(f"template must be a finite (5, 2) array, got shape {t.shape}")
    h, w = size
    return t * np.array([w / TEMPLATE_SIZE, h / TEMPLATE_SIZE])


def estimate_alignment(five, size=TEMPLATE_SIZE, rotate: bool = False, template=None) -> np.ndarray:
    """Least-squares fit of the image → crop transform that takes ``five`` onto the template.

    Minimises ``sum_k |M(five_k) - template_k|^2`` over ``M = [s I | t]`` (``rotate=False``, Deep3D's recipe) or
    over similarities ``M = [s R | t]`` (``rotate=True``), in closed form.

    Args:
        five: ``(5, 2)`` or batched ``(B, 5, 2)`` image points (``FIVE_POINT_NAMES`` order), pixels.
        size: crop size, int or ``(height, width)``; the template (given for 224²) is scaled to it.
        rotate: also fit in-plane rotation.
        template: ``(5, 2)`` points in a 224² crop; default :data:`TEMPLATE_224`.
    Returns:
        ``M`` float64, ``(2, 3)`` (or ``(B, 2, 3)``): crop point = ``M[:, :2] @ p + M[:, 2]``.
    Raises:
        ValueError: wrong shape; NaN/Inf points; points spread less than :data:`MIN_SPREAD_PX` (degenerate);
            with ``rotate=False``, points upside down / mirrored relative to the template (negative scale).
    """
    p = np.asarray(five.detach().cpu().numpy() if isinstance(five, torch.Tensor) else five, dtype=np.float64)
    if p.ndim not in (2, 3) or p.shape[-2:] != (5, 2):
        raise ValueError(f"five must be (5, 2) or (B, 5, 2), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("five contains NaN or Inf values (no landmarks?)")
    q = _template(template, _check_size(size))
    batched = p.ndim == 3
    p = p if batched else p[None]
    pm = p.mean(-2, keepdims=True)
    pc, qc = p - pm, q - q.mean(0)
    var = (pc ** 2).sum((-1, -2))
    spread = np.sqrt(var / 5)
    if (spread < MIN_SPREAD_PX).any():
        raise ValueError(f"five is degenerate: the points spread over {spread.min():.3g} px "
                         f"(< {MIN_SPREAD_PX} px); cannot fit an alignment")
    if rotate:
        # complex least squares q = a p + b: a = sum(conj(p~) q~) / sum|p~|^2, a = s (cos r + i sin r)
        pz = pc[..., 0] + 1j * pc[..., 1]
        qz = qc[:, 0] + 1j * qc[:, 1]
        a = (np.conj(pz) * qz).sum(-1) / var
        lin = np.stack([np.stack([a.real, -a.imag], -1), np.stack([a.imag, a.real], -1)], -2)
    else:
        s = (pc * qc).sum((-1, -2)) / var
        if (s <= 0).any():
            raise ValueError("five: the points are upside down or mirrored relative to the template "
                             "(negative scale); use rotate=True or check the point order")
        lin = s[:, None, None] * np.eye(2)
    t = q.mean(0) - (lin @ pm.transpose(0, 2, 1))[..., 0]
    m = np.concatenate([lin, t[..., None]], -1)
    return m if batched else m[0]


def transform_points(points, m):
    """Apply an affine ``m (..., 2, 3)`` to points ``(..., N, 2)`` (numpy or torch; batch dims broadcast)."""
    if isinstance(points, torch.Tensor):
        m = torch.as_tensor(m, dtype=points.dtype, device=points.device)
        if points.shape[-1] != 2 or tuple(m.shape[-2:]) != (2, 3):
            raise ValueError(f"points must be (..., N, 2) and m (..., 2, 3), got {tuple(points.shape)} "
                             f"and {tuple(m.shape)}")
        return points @ m[..., :2].transpose(-1, -2) + m[..., None, :, 2]
    points, m = np.asarray(points, dtype=np.float64), np.asarray(m, dtype=np.float64)
    if points.shape[-1] != 2 or m.shape[-2:] != (2, 3):
        raise ValueError(f"points must be (..., N, 2) and m (..., 2, 3), got {points.shape} and {m.shape}")
    return points @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]


def invert_affine(m):
    """Inverse of an affine ``m (..., 2, 3)`` (numpy float64 or torch). Raises ValueError if singular."""
    lib = torch if isinstance(m, torch.Tensor) else np
    if not isinstance(m, torch.Tensor):
        m = np.asarray(m, dtype=np.float64)
    if tuple(m.shape[-2:]) != (2, 3):
        raise ValueError(f"m must be (..., 2, 3), got shape {tuple(m.shape)}")
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    if not bool((lib.abs(det) > 1e-12).all()):
        raise ValueError("m is singular (zero determinant): cannot invert")
    inv = lib.stack([lib.stack([d, -b], -1), lib.stack([-c, a], -1)], -2) / det[..., None, None]
    t = -(inv @ m[..., :, 2:3])
    return lib.concatenate([inv, t], -1) if lib is np else torch.cat([inv, t], -1)


def _bilinear(img: np.ndarray, sx: np.ndarray, sy: np.ndarray, padding: str) -> np.ndarray:
    """Sample ``img (H, W, C) float32`` at continuous points ``(sx, sy)`` (pixel-centre convention)."""
    h, w = img.shape[:2]
    ax, ay = sx - 0.5, sy - 0.5
    x0, y0 = np.floor(ax).astype(np.int64), np.floor(ay).astype(np.int64)
    fx, fy = (ax - x0)[..., None].astype(np.float32), (ay - y0)[..., None].astype(np.float32)
    out = np.zeros(sx.shape + img.shape[2:], np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            xc, yc = np.clip(xi, 0, w - 1), np.clip(yi, 0, h - 1)
            v = img[yc, xc]
            if padding == "zeros":
                v = v * ((xi == xc) & (yi == yc))[..., None]
            out += wx * wy * v
    return out


def _prefilter(img: np.ndarray, m: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For a shrinking warp, cut the source region the crop needs and shrink it with PIL's antialiased bilinear
    resize, so the final bilinear warp scales by ~1. Returns the float32 region and the affine from it."""
    scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale >= 0.999:
        return img.astype(np.float32), m
    h, w = img.shape[:2]
    oh, ow = out_hw
    corners = transform_points(np.array([[0, 0], [ow, 0], [0, oh], [ow, oh]], np.float64), invert_affine(m))
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 2, x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 2, y0 + 1, h))
    rw, rh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    kx, ky = rw / (x1 - x0), rh / (y1 - y0)
    region = img[y0:y1, x0:x1].astype(np.float32)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(region[..., c]), mode="F")
                        .resize((rw, rh), Image.Resampling.BILINEAR)) for c in range(region.shape[2])]
    # region pixel r corresponds to source x = r / kx + x0
    to_src = np.array([[1 / kx, 0, x0], [0, 1 / ky, y0], [0, 0, 1]], np.float64)
    return np.stack(chans, -1), m @ to_src


def warp_affine(image: np.ndarray, m, size, padding: str = "zeros", antialias: bool = True) -> np.ndarray:
    """Resample ``image`` into an ``size`` crop through the affine ``m`` (source → crop), bilinearly.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` uint8 or float array.
        m: ``(2, 3)`` affine, source pixel coordinates → crop pixel coordinates (pixel-centre convention).
        size: int or ``(height, width)`` of the crop.
        padding: ``"zeros"`` — outside the image is black (bilinear blend towards 0 at the border, as in
            ``torch.nn.functional.grid_sample(padding_mode="zeros")`` and Deep3D's PIL crop); ``"edge"`` — the
            nearest border pixel is repeated.
        antialias: when the warp shrinks the image (scale < 1), first shrink the needed region with PIL's
            antialiased bilinear resize (the crop is then not aliased; the mapping stays exact).
    Returns:
        the crop, ``(h, w, C)`` (or ``(h, w)``), same dtype as ``image`` (uint8 rounded and clipped).
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be a non-empty (H, W[, C]) numpy array, got {getattr(image, 'shape', type(image))}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ValueError(f"m must be a finite (2, 3) affine, got shape {m.shape}")
    oh, ow = _check_size(size)
    gray = image.ndim == 2
    src = image[..., None] if gray else image
    if antialias:
        src, m = _prefilter(src, m, (oh, ow))
    else:
        src = src.astype(np.float32)
    inv = invert_affine(m)
    u, v = np.meshgrid(np.arange(ow) + 0.5, np.arange(oh) + 0.5)
    sx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    sy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    out = _bilinear(src, sx, sy, padding)
    out = out[..., 0] if gray else out
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32)


def align_face(image: np.ndarray, five, size: int = TEMPLATE_SIZE, *, rotate: bool = False,
               padding: str = "zeros", template=None) -> tuple[np.ndarray, np.ndarray]:
    """Crop a face to the renderer's framing from its five points (Deep3D's recipe, our template).

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        five: ``(5, 2)`` points (``FIVE_POINT_NAMES`` order, pixel-centre convention); from 68 landmarks use
            :func:`five_from_68`.
        size: output side in pixels (the template is scaled by ``size / 224``).
        rotate: also undo in-plane rotation (default False: scale + translation, as Deep3D).
        padding: ``"zeros"`` (black outside the photo, Deep3D's behaviour) or ``"edge"``; see :func:`warp_affine`.
        template: ``(5, 2)`` template in a 224² crop; default :data:`TEMPLATE_224`.
    Returns:
        ``(crop, M)``: ``crop`` uint8 ``(size, size, 3)``; ``M`` float64 ``(2, 3)`` mapping photo pixel
        coordinates to crop pixel coordinates (map landmarks with :func:`transform_points`, back with
        :func:`invert_affine`).
    Raises:
        ValueError: ``image`` not uint8 (H, W, 3); bad ``five`` (see :func:`estimate_alignment`); bad ``size``
            or ``padding``.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 (H, W, 3) RGB array, got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    m = estimate_alignment(five, size, rotate=rotate, template=template)
    return warp_affine(image, m, size, padding=padding), m


def align_faces(images: torch.Tensor, five: torch.Tensor, size: int = TEMPLATE_SIZE, *, rotate: bool = False,
                padding: str = "zeros", template=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched torch :func:`align_face` with ``grid_sample`` (differentiable w.r.t. ``images``).

    No antialiasing: for strong shrinking (photo face much larger than the crop) blur first or use
    :func:`align_face`.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        five: ``(B, 5, 2)`` points in ``images``' pixel coordinates.
        size, rotate, padding, template: as :func:`align_face` (padding ``"edge"`` = grid_sample's "border").
    Returns:
        ``(crops (B, C, size, size), M (B, 2, 3))`` — ``M`` in ``images``' dtype and device.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    five_np = np.asarray(five.detach().cpu().numpy() if isinstance(five, torch.Tensor) else five)
    if five_np.shape != (images.shape[0], 5, 2):
        raise ValueError(f"five must be (B, 5, 2) = ({images.shape[0]}, 5, 2), got {five_np.shape}")
    oh, ow = _check_size(size)
    m = estimate_alignment(five_np, (oh, ow), rotate=rotate, template=template)
    return warp_affine_tensor(images, m, (oh, ow), padding=padding), torch.as_tensor(m, dtype=images.dtype,
                                                                                   device=images.device)


def warp_affine_tensor(images: torch.Tensor, m, size, padding: str = "zeros") -> torch.Tensor:
    """Torch :func:`warp_affine` without antialiasing: bilinear ``grid_sample`` (differentiable w.r.t. ``images``).

    Args:
        images: ``(B, C, H, W)`` float tensor.
        m: ``(2, 3)`` or ``(B, 2, 3)`` affine(s), source pixel coordinates → output pixel coordinates
            (pixel-centre convention), numpy or torch.
        size: int or ``(height, width)`` of the output.
        padding: ``"zeros"`` or ``"edge"`` (grid_sample's ``"border"``).
    Returns:
        ``(B, C, h, w)`` in ``images``' dtype and device. For shrinking by more than ~10 % blur first (or use
        :func:`warp_affine`, which prefilters).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    oh, ow = _check_size(size)
    inv = invert_affine(m if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64))
    inv = torch.as_tensor(inv, dtype=images.dtype, device=images.device)
    if inv.shape[-2:] != (2, 3) or inv.ndim not in (2, 3) or (inv.ndim == 3 and inv.shape[0] not in (1, len(images))):
        raise ValueError(f"m must be (2, 3) or ({len(images)}, 2, 3), got {tuple(inv.shape)}")
    h, w = images.shape[-2:]
    v, u = torch.meshgrid(torch.arange(oh, dtype=images.dtype, device=images.device) + 0.5,
                          torch.arange(ow, dtype=images.dtype, device=images.device) + 0.5, indexing="ij")
    src = transform_points(torch.stack([u, v], -1).reshape(1, -1, 2), inv)  # (B or 1, oh*ow, 2)
    grid = (src / src.new_tensor([w, h]) * 2 - 1).reshape(-1, oh, ow, 2).expand(len(images), -1, -1, -1)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", align_corners=False,
                                           padding_mode="zeros" if padding == "zeros" else "border")
