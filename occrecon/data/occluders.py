"""Occluders with exact alpha: the shared RGBA cut-out library plus procedural occluders drawn in numpy/PIL.

Every occluder is an :class:`OccluderLayer`: a full-canvas straight-alpha RGBA float image ``(H, W, 4)`` in [0, 1]
placed relative to the 68 iBUG landmarks (pixel-centre convention, see ``occrecon.data.warp``) with random
scale / rotation / offset and colour / illumination variation. :func:`composite` pastes layers over an image and
returns the exact combined occluder alpha ``A = 1 − Π(1 − a_i)``.

Kinds (:data:`KINDS`): ``sunglasses`` and ``glasses`` (frames from the eye landmarks; glasses lenses stay mostly
transparent, so they do not count as occlusion), ``mask`` (surgical-style, over nose, mouth and chin), ``scarf``
(from the chin down), ``hand`` (library hand cut-outs), ``hair`` (bundles of cubic Bézier strands), ``microphone``
(drawn head and handle), ``shape`` (random polygons / ellipses with noise, stripe or checker textures),
``image_cutout`` (a random polygon cut from another image) and ``cutout`` (any library cut-out, placed by its
category: eyewear on the eyes, masks over the mouth, hats on the forehead, others anywhere on the face).

Licence filter: the library README lists each file's licence; :func:`is_permissive` accepts MIT, Apache-2.0,
BSD, CC0 and public domain, and rejects "NONE", unknown photo copyright ("MIT repo / photo unknown": the repository
is MIT but the photo's origin is not stated) and anything else. Shipped checkpoints must be trained with
``OccluderLibrary(permissive_only=True)`` (20 of the 37 files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from .. import assets
from .align import warp_affine
from .warp import similarity_matrix

__all__ = ["ImageSource", "CutoutInfo", "OccluderLayer", "OccluderLibrary", "FaceFrame", "KINDS", "PERMISSIVE_LICENCES",
           "is_permissive", "composite", "random_occluder", "random_occluders", "place_sprite", "vary_colour",
           "draw_occluder"]

#: Licence strings (lower case) accepted by ``permissive_only``.
PERMISSIVE_LICENCES = ("mit", "apache-2.0", "apache 2.0", "bsd-2-clause", "bsd-3-clause", "cc0", "cc0-1.0",
                       "public domain")

#: Relative sampling weight of each occluder kind.
KINDS = {"sunglasses": 1.0, "glasses": 0.6, "mask": 1.0, "scarf": 0.7, "hand": 1.0, "hair": 0.8,
         "microphone": 0.5, "shape": 1.0, "image_cutout": 0.8, "cutout": 1.5}

#: Supersampling factor of the procedural drawings (anti-aliased alpha edges).
SUPERSAMPLE = 2

PROCEDURAL_LICENCE = "procedural (occrecon, no third-party content)"

_HAIR_COLOURS = np.array([[0.05, 0.04, 0.03], [0.23, 0.14, 0.08], [0.45, 0.30, 0.16], [0.80, 0.66, 0.42],
                          [0.55, 0.22, 0.10], [0.62, 0.62, 0.60]], np.float32)


class ImageSource(NamedTuple):
    """An image for backgrounds and ``image_cutout`` occluders: ``name``, ``image uint8 (h, w, 3)``, ``licence``."""
    name: str
    image: np.ndarray
    licence: str


def is_permissive(licence: str) -> bool:
    """True when ``licence`` (a README licence cell) is one of :data:`PERMISSIVE_LICENCES`, exactly."""
    return licence.strip().lower() in PERMISSIVE_LICENCES


@dataclass(frozen=True)
class CutoutInfo:
    """One library file: ``file`` name, ``category`` (README), ``style``, ``licence`` text and ``path``."""
    file: str
    category: str
    style: str
    licence: str
    path: Path

    @property
    def permissive(self) -> bool:
        return is_permissive(self.licence)


@dataclass
class OccluderLayer:
    """A placed occluder: ``rgba (H, W, 4) float32`` straight alpha in [0, 1]; ``name`` (e.g.
    ``"cutout:glasses_noto.png"`` or ``"hair"``), ``kind`` (a :data:`KINDS` key) and ``licence``."""
    rgba: np.ndarray
    name: str
    kind: str
    licence: str


class OccluderLibrary:
    """The RGBA cut-outs of ``root`` (default: ``shared/assets/occluders``), described by its README table.

    Args:
        root: folder with ``README.md`` and the PNG files.
        permissive_only: keep only files whose licence passes :func:`is_permissive`.

    Raises FileNotFoundError (naming ``root``) when the folder or README is missing, ValueError when no file is left.
    Images are loaded on first use as ``(h, w, 4) float32`` straight RGBA in [0, 1] and cached.
    """

    def __init__(self, root: str | Path | None = None, permissive_only: bool = False):
        root = Path(root) if root is not None else assets.shared_dir() / "assets" / "occluders"
        if not root.is_dir():
            raise FileNotFoundError(f"root: occluder folder {root} does not exist")
        readme = root / "README.md"
        if not readme.is_file():
            raise FileNotFoundError(f"root: {root} has no README.md with the per-file licence table")
        entries = []
        for line in readme.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 7 and cells[0].lower().endswith(".png") and (root / cells[0]).is_file():
                entries.append(CutoutInfo(cells[0], cells[1], cells[2], cells[6], root / cells[0]))
        if permissive_only:
            entries = [e for e in entries if e.permissive]
        if not entries:
            raise ValueError(f"root: no occluder files{' with a permissive licence' if permissive_only else ''} "
                             f"listed in {readme}")
        self.root = root
        self.permissive_only = bool(permissive_only)
        self.entries: list[CutoutInfo] = sorted(entries, key=lambda e: e.file)
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def categories(self) -> list[str]:
        return sorted({e.category for e in self.entries})

    def by_category(self, *categories: str) -> list[CutoutInfo]:
        return [e for e in self.entries if e.category in categories]

    def premultiplied(self, info: CutoutInfo) -> np.ndarray:
        """``(h, w, 4) float32`` RGBA with colour multiplied by alpha (cached), for :func:`place_sprite`."""
        key = "premultiplied:" + info.file
        if key not in self._cache:
            rgba = self.image(info)
            self._cache[key] = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
        return self._cache[key]

    def image(self, info: CutoutInfo) -> np.ndarray:
        """``(h, w, 4) float32`` straight RGBA in [0, 1] of one entry."""
        if info.file not in self._cache:
            with Image.open(info.path) as im:
                self._cache[info.file] = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return self._cache[info.file]


@dataclass(frozen=True)
class FaceFrame:
    """Anchor points of a face from its 68 landmarks (pixels): eye centres, nose tip (30), mouth centre (48/54),
    chin (8), brow centre (17–26), the eye distance ``scale``, the roll ``angle`` (radians, our similarity
    convention) and the unit vectors ``right`` / ``down`` of the face. Only landmarks that every supported model
    has are used (SFM has no jaw contour apart from the chin)."""
    eye_l: np.ndarray
    eye_r: np.ndarray
    nose: np.ndarray
    mouth: np.ndarray
    chin: np.ndarray
    brow: np.ndarray
    scale: float
    angle: float
    right: np.ndarray
    down: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceFrame:
        lm = np.asarray(landmarks, np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
        need = [8, 30, 48, 54] + list(range(17, 27)) + list(range(36, 48))
        if not np.isfinite(lm[need]).all():
            raise ValueError("landmarks: the eyes, brows, nose tip (30), mouth corners (48, 54) and chin (8) "
                             "must be finite to place occluders")
        eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
        d = eye_r - eye_l
        scale = float(np.hypot(*d))
        if scale < 1.0:
            raise ValueError(f"landmarks: eye distance {scale:.2f} px is too small")
        right = d / scale
        down = np.array([-right[1], right[0]])
        return cls(eye_l, eye_r, lm[30], (lm[48] + lm[54]) / 2, lm[8], lm[17:27].mean(0), scale,
                   math.atan2(-d[1], d[0]), right, down)

    @property
    def eyes(self) -> np.ndarray:
        return (self.eye_l + self.eye_r) / 2

    def point(self, origin: np.ndarray, u: float, v: float) -> np.ndarray:
        """``origin + scale · (u · right + v · down)``."""
        return origin + self.scale * (u * self.right + v * self.down)

    def local(self, p: np.ndarray, origin: np.ndarray) -> tuple[float, float]:
        """Face-frame coordinates (units of ``scale``) of ``p`` relative to ``origin``."""
        q = (np.asarray(p) - origin) / self.scale
        return float(q @ self.right), float(q @ self.down)


# ---------------------------------------------------------------------------------------------------- textures

def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """``(H, W) float32`` value noise in [0, 1]: a ``cells``-sized random grid upsampled bilinearly."""
    grid = torch.from_numpy(rng.random((1, 1, cells, cells)).astype(np.float32))
    return torch.nn.functional.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.random(3).astype(np.float32) * 0.9 + 0.05


def _texture(rng: np.random.Generator, size: tuple[int, int], base: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3) float32`` texture: solid, noise, stripes or checker, in one or two random colours."""
    h, w = size
    c1 = _random_colour(rng) if base is None else np.asarray(base, np.float32)
    c2 = _random_colour(rng)
    kind = rng.choice(["solid", "noise", "stripes", "checker"])
    if kind == "solid":
        t = np.zeros((h, w), np.float32)
    elif kind == "noise":
        t = _smooth_noise(rng, size, int(rng.integers(3, 24)))
    else:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, math.pi)
        period = rng.uniform(4, 24)
        proj = (xs * math.cos(a) + ys * math.sin(a)) / period
        if kind == "stripes":
            t = (np.sin(2 * math.pi * proj) > rng.uniform(-0.5, 0.5)).astype(np.float32)
        else:
            proj2 = (-xs * math.sin(a) + ys * math.cos(a)) / period
            t = ((np.floor(proj) + np.floor(proj2)) % 2).astype(np.float32)
    tex = c1 * (1 - t[..., None]) + c2 * t[..., None]
    grain = (_smooth_noise(rng, size, 48) - 0.5) * rng.uniform(0.0, 0.15)
    return np.clip(tex + grain[..., None], 0, 1).astype(np.float32)


def vary_colour(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, hue: float = 0.05) -> np.ndarray:
    """Colour and illumination variation of an occluder ``rgb (H, W, 3)`` with ``alpha (H, W)``: brightness ×
    U(0.7, 1.3), contrast U(0.75, 1.25) about the alpha-weighted mean, a hue rotation of up to ``hue`` turns (about
    the grey axis) and a soft linear shading gradient (up to ±35 % across the occluder). Returns float32 in [0, 1]."""
    rows, cols = np.nonzero(alpha.any(1))[0], np.nonzero(alpha.any(0))[0]
    result = np.asarray(rgb, np.float32).copy()
    if rows.size == 0:
        return result
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # work on the occluder's bounding box only
    a_box, c = alpha[box], result[box]
    mean = (c * a_box[..., None]).sum((0, 1)) / float(a_box.sum())
    out = (c - mean) * rng.uniform(0.75, 1.25) + mean
    out = out * rng.uniform(0.7, 1.3)
    theta = rng.uniform(-hue, hue) * 2 * math.pi
    k = np.ones(3) / math.sqrt(3)  # Rodrigues rotation about the grey axis
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx
    out = out @ rot.T.astype(np.float32)
    ys, xs = np.nonzero(a_box > 0)
    a = rng.uniform(0, 2 * math.pi)
    proj = (np.arange(a_box.shape[1])[None, :] - xs.mean()) * math.cos(a) + \
        (np.arange(a_box.shape[0])[:, None] - ys.mean()) * math.sin(a)
    extent = max(float(np.abs(proj[ys, xs]).max()), 1.0)
    out = out * (1 + rng.uniform(0, 0.35) * proj / extent)[..., None]
    result[box] = np.clip(out, 0, 1)
    return result


# --------------------------------------------------------------------------------------------------- drawing

class _Canvas:
    """A supersampled 8-bit alpha canvas; draw in output pixel coordinates, ``alpha()`` box-filters it down."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.im = Image.new("L", (size[1] * SUPERSAMPLE, size[0] * SUPERSAMPLE), 0)
        self.draw = ImageDraw.Draw(self.im)

    @staticmethod
    def _pts(points) -> list[tuple[float, float]]:
        return [(float(x) * SUPERSAMPLE, float(y) * SUPERSAMPLE) for x, y in np.asarray(points).reshape(-1, 2)]

    def polygon(self, points, value: int = 255) -> None:
        self.draw.polygon(self._pts(points), fill=value)

    def line(self, points, width: float, value: int = 255) -> None:
        self.draw.line(self._pts(points), fill=value, width=max(1, int(round(width * SUPERSAMPLE))), joint="curve")

    def ellipse(self, centre, radius: float, value: int = 255) -> None:
        (x, y), r = self._pts(centre)[0], radius * SUPERSAMPLE
        self.draw.ellipse([x - r, y - r, x + r, y + r], fill=value)

    def alpha(self) -> np.ndarray:
        small = self.im.resize((self.size[1], self.size[0]), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32) / 255.0


def _superellipse(frame: FaceFrame, centre: np.ndarray, rx: float, ry: float, n: float, k: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    u = rx * np.sign(c) * np.abs(c) ** (2 / n)
    v = ry * np.sign(s) * np.abs(s) ** (2 / n)
    return np.stack([frame.point(centre, a, b) for a, b in zip(u, v)])


def _bezier(p: np.ndarray, k: int = 24) -> np.ndarray:
    t = np.linspace(0, 1, k)[:, None]
    return ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3])


def _layer(rgb: np.ndarray, alpha: np.ndarray, name: str, kind: str, licence: str = PROCEDURAL_LICENCE):
    return OccluderLayer(np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32), name, kind, licence)


def _eyewear(rng, frame: FaceFrame, size, sun: bool) -> OccluderLayer:
    rx = rng.uniform(0.42, 0.55)
    ry = rx * rng.uniform(0.55, 0.9)
    n = rng.uniform(2.0, 4.5)
    lift = rng.uniform(-0.05, 0.1)
    width = rng.uniform(0.05, 0.12) * frame.scale
    lenses, frames = _Canvas(size), _Canvas(size)
    for eye, sgn in ((frame.eye_l, -1), (frame.eye_r, 1)):
        c = frame.point(eye, sgn * rng.uniform(0.0, 0.05), -lift)
        outline = _superellipse(frame, c, rx, ry, n)
        lenses.polygon(outline)
        frames.line(np.vstack([outline, outline[:1]]), width)
        frames.line([frame.point(c, sgn * rx, -ry * 0.5), frame.point(c, sgn * (rx + 0.45), -ry * 0.7)], width)
    frames.line([frame.point(frame.eyes, -0.5 + rx, -lift - 0.1), frame.point(frame.eyes, 0.0, -lift - 0.18),
                 frame.point(frame.eyes, 0.5 - rx, -lift - 0.1)], width * 0.8)
    a_frame, a_lens = frames.alpha(), lenses.alpha()
    frame_col = _random_colour(rng) * rng.uniform(0.2, 1.0)
    if sun:
        lens_col = np.array([0.05, 0.05, 0.06], np.float32) + _random_colour(rng) * rng.uniform(0, 0.3)
        lens_a = rng.uniform(0.85, 1.0)
    else:
        lens_col = np.array([0.85, 0.9, 0.95], np.float32)
        lens_a = rng.uniform(0.0, 0.2)
    grad = _smooth_noise(rng, size, 3)[..., None] * 0.3
    rgb = a_frame[..., None] * frame_col + (1 - a_frame[..., None]) * np.clip(lens_col + grad - 0.15, 0, 1)
    alpha = a_frame + (1 - a_frame) * a_lens * lens_a
    rgb = vary_colour(rgb, alpha, rng, hue=0.02)
    return _layer(rgb, alpha, "sunglasses" if sun else "glasses", "sunglasses" if sun else "glasses")


def _mask(rng, frame: FaceFrame, size) -> OccluderLayer:
    top = frame.local(frame.nose, frame.nose)[1] - rng.uniform(0.25, 0.55)
    bottom = frame.local(frame.chin, frame.nose)[1] + rng.uniform(0.05, 0.3)
    half = rng.uniform(0.95, 1.15)
    o = frame.nose
    pts = [(-half, top + 0.25), (-0.4, top + 0.05), (0.0, top), (0.4, top + 0.05), (half, top + 0.25),
           (half * 1.02, (top + bottom) / 2), (half * 0.75, bottom - 0.2), (0.35, bottom), (0.0, bottom + 0.03),
           (-0.35, bottom), (-half * 0.75, bottom - 0.2), (-half * 1.02, (top + bottom) / 2)]
    poly = np.stack([frame.point(o, u, v) for u, v in pts])
    c = _Canvas(size)
    c.polygon(poly)
    straps = _Canvas(size)
    for s in (-1, 1):
        straps.line([frame.point(o, s * half, top + 0.3), frame.point(o, s * (half + 0.6), top - 0.1)],
                    0.04 * frame.scale)
        straps.line([frame.point(o, s * half, bottom - 0.35), frame.point(o, s * (half + 0.6), bottom - 0.2)],
                    0.04 * frame.scale)
    palette = np.array([[0.55, 0.75, 0.9], [0.95, 0.95, 0.95], [0.1, 0.1, 0.12], [0.3, 0.45, 0.8]], np.float32)
    base = palette[rng.integers(len(palette))] if rng.random() < 0.7 else _random_colour(rng)
    tex = _texture(rng, size, base) if rng.random() < 0.3 else np.broadcast_to(base, size + (3,)).copy()
    # pleats: darker bands across the mask
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    v = ((xs - o[0]) * frame.down[0] + (ys - o[1]) * frame.down[1]) / frame.scale
    tex *= (1 - 0.15 * (np.sin((v - top) * rng.uniform(8, 14)) > 0.7))[..., None]
    a_mask, a_strap = c.alpha(), straps.alpha()
    alpha = np.maximum(a_mask, a_strap)
    rgb = vary_colour(tex, alpha, rng, hue=0.05)
    return _layer(rgb, alpha, "mask", "mask")


def _scarf(rng, frame: FaceFrame, size) -> OccluderLayer:
    o = frame.nose
    top = rng.uniform(-0.1, frame.local(frame.chin, o)[1] - 0.3)
    half = rng.uniform(1.4, 2.2)
    wave = rng.uniform(0.0, 0.15)
    k = 16
    us = np.linspace(-half, half, k)
    edge = [(u, top + wave * math.sin(3 * u + rng.uniform(0, 6)) + 0.12 * u * u) for u in us]
    poly = np.stack([frame.point(o, u, v) for u, v in edge + [(half, 12.0), (-half, 12.0)]])
    c = _Canvas(size)
    c.polygon(poly)
    alpha = c.alpha()
    rgb = vary_colour(_texture(rng, size), alpha, rng, hue=0.1)
    return _layer(rgb, alpha, "scarf", "scarf")


def _hair(rng, frame: FaceFrame, size) -> OccluderLayer:
    c = _Canvas(size)
    o = frame.brow
    side = rng.uniform(-1.2, 1.2)
    start_v = rng.uniform(-1.2, -0.4)
    end_v = rng.uniform(0.2, 2.2)
    drift = rng.uniform(-0.8, 0.8)
    n = int(rng.integers(20, 70))
    spread = rng.uniform(0.1, 0.35)
    base = np.array([[side, start_v], [side + drift * 0.3, start_v + (end_v - start_v) / 3],
                     [side + drift * 0.8, start_v + 2 * (end_v - start_v) / 3], [side + drift, end_v]])
    for _ in range(n):
        jitter = rng.normal(0, 0.05, size=(4, 2))
        jitter[:, 0] += rng.normal(0, spread) * np.array([0.6, 0.8, 1.0, 1.2])  # strands fan out downwards
        jitter[3, 1] += rng.normal(0, 0.2)
        p = np.stack([frame.point(o, u, v) for u, v in base + jitter])
        c.line(_bezier(p), rng.uniform(0.6, 1.8), int(rng.integers(170, 256)))
    alpha = c.alpha()
    col = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
    rgb = np.clip(col + (_smooth_noise(rng, size, 40)[..., None] - 0.5) * 0.2, 0, 1)
    rgb = vary_colour(rgb, alpha, rng, hue=0.02)
    return _layer(rgb, alpha, "hair", "hair")


def _microphone(rng, frame: FaceFrame, size) -> OccluderLayer:
    head = frame.point(frame.mouth, rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.6))
    r = rng.uniform(0.3, 0.5) * frame.scale
    a = rng.uniform(-0.7, 0.7)  # handle direction, radians from "down"
    d = math.cos(a) * frame.down + math.sin(a) * frame.right
    n = np.array([-d[1], d[0]])
    length = rng.uniform(2.0, 4.0) * frame.scale
    w0, w1 = 0.45 * r, 0.3 * r
    handle = np.stack([head + n * w0, head + n * w1 + d * length, head - n * w1 + d * length, head - n * w0])
    ch, cb = _Canvas(size), _Canvas(size)
    ch.ellipse(head, r)
    cb.polygon(handle)
    a_head, a_body = ch.alpha(), cb.alpha()
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    pitch = max(r / 4, 1.5)
    grid = ((np.mod(xs - head[0], pitch) < 0.8) | (np.mod(ys - head[1], pitch) < 0.8)).astype(np.float32)
    metal = np.clip(0.75 - 0.4 * np.hypot(xs - head[0] + r / 3, ys - head[1] + r / 3) / r - 0.2 * grid, 0, 1)
    head_rgb = metal[..., None] * np.array([1.0, 1.0, 1.02], np.float32)
    body_rgb = np.broadcast_to(_random_colour(rng) * 0.3, size + (3,))
    rgb = a_head[..., None] * head_rgb + (1 - a_head[..., None]) * body_rgb
    alpha = a_head + (1 - a_head) * a_body
    rgb = vary_colour(rgb, alpha, rng, hue=0.02)
    return _layer(rgb, alpha, "microphone", "microphone")


def _random_polygon(rng, centre: np.ndarray, radius: float) -> np.ndarray:
    k = int(rng.integers(5, 11))
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    rad = radius * rng.uniform(0.5, 1.0, k)
    return centre + np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)


def _shape(rng, frame: FaceFrame, size) -> OccluderLayer:
    centre = frame.point(frame.nose, rng.uniform(-0.9, 0.9), rng.uniform(-1.2, 0.9))
    radius = rng.uniform(0.5, 1.4) * frame.scale
    c = _Canvas(size)
    if rng.random() < 0.5:
        c.polygon(_random_polygon(rng, centre, radius))
    else:
        c.polygon(_superellipse(frame, centre, radius / frame.scale, radius / frame.scale * rng.uniform(0.4, 1.0),
                                2.0))
    alpha = c.alpha()
    rgb = vary_colour(_texture(rng, size), alpha, rng, hue=0.2)
    return _layer(rgb, alpha, "shape", "shape")


def _image_cutout(rng, frame: FaceFrame, size, sources: list[ImageSource]) -> OccluderLayer | None:
    if not sources:
        return None
    name, src, licence = sources[int(rng.integers(len(sources)))]
    radius = rng.uniform(0.5, 1.4) * frame.scale
    centre = frame.point(frame.nose, rng.uniform(-0.9, 0.9), rng.uniform(-1.2, 0.9))
    sh, sw = src.shape[:2]
    crop = rng.uniform(0.1, 0.5) * min(sh, sw)
    sx, sy = rng.uniform(crop, sw - crop), rng.uniform(crop, sh - crop)
    m = similarity_matrix(radius / crop, rng.uniform(-math.pi, math.pi), (sx, sy),
                          (centre[0] - sx, centre[1] - sy))
    box = centre + radius * np.array([[-1.0, -1.0], [1.0, 1.0]])
    rgb = np.clip(_warp_into(src.astype(np.float32) / 255.0, m, size, box), 0, 1)
    c = _Canvas(size)
    c.polygon(_random_polygon(rng, centre, radius))
    alpha = c.alpha()
    rgb = vary_colour(rgb, alpha, rng, hue=0.05)
    return _layer(rgb, alpha, f"image_cutout:{name}", "image_cutout", licence)


def _warp_into(src: np.ndarray, m: np.ndarray, size: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """``align.warp_affine`` (antialiased when shrinking) of ``src (h, w, C)`` onto a zero ``(H, W, C)`` canvas,
    computed only inside the bounding box of the destination ``points (N, 2)`` (the rest stays 0)."""
    h, w = size
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + 1, [w, h])
    out = np.zeros((h, w, src.shape[2]), np.float32)
    if x1 > x0 and y1 > y0:
        m = np.array(m, np.float64)
        m[:, 2] -= (x0, y0)
        out[y0:y1, x0:x1] = warp_affine(src, m, (int(y1 - y0), int(x1 - x0)))
    return out


def place_sprite(sprite: np.ndarray, centre: np.ndarray, width: float, angle: float, size: tuple[int, int],
                 anchor: tuple[float, float] = (0.5, 0.5), flip: bool = False,
                 premultiplied: bool = False) -> np.ndarray:
    """Warp a straight-alpha RGBA sprite ``(h, w, 4)`` onto an ``(H, W, 4)`` canvas: the sprite point at
    fractional ``anchor`` (x, y of its width/height) lands on ``centre`` (pixels), the sprite is ``width`` pixels
    wide, rotated by ``angle`` (radians, counter-clockwise on screen) and optionally mirrored. Resampling is done
    on premultiplied colour (no dark fringes) with ``align.warp_affine`` (antialiased when shrinking); pass
    ``premultiplied=True`` when ``sprite`` already is (e.g. ``OccluderLibrary.premultiplied``)."""
    if sprite.ndim != 3 or sprite.shape[2] != 4:
        raise ValueError(f"sprite must be (h, w, 4) RGBA, got {sprite.shape}")
    pre = sprite if premultiplied else np.concatenate([sprite[..., :3] * sprite[..., 3:], sprite[..., 3:]], -1)
    h, w = pre.shape[:2]
    ax, ay = anchor[0] * w, anchor[1] * h
    m = similarity_matrix(width / w, angle, (ax, ay), (centre[0] - ax, centre[1] - ay), flip=flip, width=w)
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ m[:, :2].T + m[:, 2]
    out = _warp_into(pre, m, size, corners)
    a = np.clip(out[..., 3:], 0, 1)
    rgb = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(rgb, 0, 1), a], -1).astype(np.float32)


def _cutout(rng, frame: FaceFrame, size, library: OccluderLibrary, categories: tuple[str, ...] = ()):
    entries = library.by_category(*categories) if categories else library.entries
    if not entries:
        return None
    info = entries[int(rng.integers(len(entries)))]
    cat = info.category
    anchor, flip = (0.5, 0.5), bool(rng.random() < 0.5)
    angle = frame.angle + rng.normal(0, 0.05)
    if cat in ("eyeglasses", "sunglasses"):
        centre = frame.point(frame.eyes, rng.normal(0, 0.05), rng.normal(-0.05, 0.05))
        width = rng.uniform(2.0, 2.4) * frame.scale
    elif cat.startswith("face_mask"):
        centre = frame.point(frame.nose, rng.normal(0, 0.05), frame.local(frame.chin, frame.nose)[1] * 0.45)
        width = rng.uniform(2.0, 2.5) * frame.scale
        flip = flip and not info.file.endswith("_side.png")
    elif cat == "scarf":
        centre = frame.point(frame.chin, rng.normal(0, 0.2), rng.uniform(0.3, 1.0))
        width = rng.uniform(2.4, 3.4) * frame.scale
        anchor = (0.5, 0.3)
    elif cat == "hat":
        centre = frame.point(frame.brow, rng.normal(0, 0.1), rng.uniform(-0.3, 0.25))
        width = rng.uniform(2.4, 3.2) * frame.scale
        anchor = (0.5, 0.9)
    else:  # hand, cup, phone, microphone, hair: anywhere on the face
        centre = frame.point(frame.nose, rng.uniform(-0.9, 0.9), rng.uniform(-1.0, 1.3))
        width = rng.uniform(1.0, 2.2) * frame.scale
        angle = frame.angle + rng.uniform(-0.8, 0.8)
    rgba = place_sprite(library.premultiplied(info), centre, width, angle, size, anchor, flip, premultiplied=True)
    hue = 0.02 if cat in ("hand", "hair") else 0.08
    rgb = vary_colour(rgba[..., :3], rgba[..., 3], rng, hue=hue)
    return OccluderLayer(np.concatenate([rgb, rgba[..., 3:]], -1), f"cutout:{info.file}",
                         "hand" if categories == ("hand",) else "cutout", info.licence)


def draw_occluder(kind: str, rng: np.random.Generator, landmarks: np.ndarray, size: tuple[int, int],
                  library: OccluderLibrary | None = None,
                  sources: list[ImageSource] | None = None) -> OccluderLayer | None:
    """One occluder of ``kind`` (a :data:`KINDS` key) for a face with ``landmarks (68, 2)`` on an ``(H, W)``
    canvas. Returns None when the kind needs a resource that is absent (no library / no hand cut-out / no
    source image)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    frame = FaceFrame.from_landmarks(landmarks)
    size = (int(size[0]), int(size[1]))
    if kind in ("sunglasses", "glasses"):
        return _eyewear(rng, frame, size, kind == "sunglasses")
    if kind == "mask":
        return _mask(rng, frame, size)
    if kind == "scarf":
        return _scarf(rng, frame, size)
    if kind == "hair":
        return _hair(rng, frame, size)
    if kind == "microphone":
        return _microphone(rng, frame, size)
    if kind == "shape":
        return _shape(rng, frame, size)
    if kind == "image_cutout":
        return _image_cutout(rng, frame, size, sources or [])
    if library is None:
        return None
    return _cutout(rng, frame, size, library, ("hand",) if kind == "hand" else ())


def random_occluder(rng: np.random.Generator, landmarks: np.ndarray, size: tuple[int, int],
                    library: OccluderLibrary | None = None, sources: list[ImageSource] | None = None,
                    kinds: dict[str, float] | None = None) -> OccluderLayer:
    """One random occluder; kinds drawn with the weights ``kinds`` (default :data:`KINDS`), redrawn while a kind
    cannot be made (missing resource)."""
    weights = dict(KINDS if kinds is None else kinds)
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"kinds must map kind names to non-negative weights with a positive sum, got {weights}")
    for _ in range(len(weights)):
        names = sorted(k for k, w in weights.items() if w > 0)
        p = np.array([weights[k] for k in names], np.float64)
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]
        layer = draw_occluder(kind, rng, landmarks, size, library, sources)
        if layer is not None:
            return layer
        weights[kind] = 0.0
        if sum(weights.values()) <= 0:
            break
    raise ValueError("kinds: none of the requested occluder kinds can be drawn with the given library/sources")


def random_occluders(rng: np.random.Generator, landmarks: np.ndarray, size: tuple[int, int], n: int,
                     library: OccluderLibrary | None = None, sources: list[ImageSource] | None = None,
                     kinds: dict[str, float] | None = None) -> list[OccluderLayer]:
    """``n`` random occluders (see :func:`random_occluder`)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [random_occluder(rng, landmarks, size, library, sources, kinds) for _ in range(n)]


def composite(image: np.ndarray, layers: list[OccluderLayer]) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``layers`` in order over ``image (H, W, 3) float`` in [0, 1] ("over" operator).

    Returns ``(image (H, W, 3) float32, alpha (H, W) float32)`` with the combined occluder alpha
    ``A = 1 − Π(1 − a_i)``; pixels where every layer's alpha is 0 are returned unchanged."""
    img = np.asarray(image, np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {img.shape}")
    out = img.copy()
    keep = np.ones(img.shape[:2], np.float32)
    for layer in layers:
        if layer.rgba.shape != img.shape[:2] + (4,):
            raise ValueError(f"layers: {layer.name} has shape {layer.rgba.shape}, expected {img.shape[:2] + (4,)}")
        a = layer.rgba[..., 3:]
        out = np.where(a > 0, a * layer.rgba[..., :3] + (1 - a) * out, out)
        keep *= 1 - a[..., 0]
    return out, 1 - keep
