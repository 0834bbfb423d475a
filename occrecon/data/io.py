"""Reading photos robustly; the authors' landmark CSV files and ``<name>_visible_skin_mask.png`` masks.

``read_image`` always returns ``uint8 (H, W, 3)`` RGB, row 0 = top, or raises :class:`ImageReadError` naming the
file. What it does with unusual files:

* grayscale (``L``, ``1``) → the value repeated in R, G, B; palette (``P``) → its colours; CMYK/YCbCr/LAB → RGB;
* 16-bit (``I;16*``) and 32-bit integer (``I``) images → scaled from 0-65535 to 0-255 (``round(v / 257)``,
  clipped); 32-bit float (``F``) → taken as 0-1, times 255 (clipped);
* alpha (RGBA, LA, PA, palette transparency) → **dropped** by default (the stored colour is kept); pass
  ``background=(r, g, b)`` to composite over that colour instead;
* the EXIF orientation tag is applied (the array is what a viewer shows);
* multi-frame files (GIF, TIFF) → the first frame;
* more than ``max_pixels`` pixels (default 50 MP) → :class:`ImageReadError` before any pixel is decoded (the
  size comes from the header, so decompression bombs never reach memory); nothing is downscaled silently;
* missing, corrupt, truncated or non-image files → :class:`ImageReadError`.

Landmark CSV (the authors' format): one row per image, ``relative_path,x1,y1,x2,y2,...,x68,y68``, no header
(a first row starting with ``relative_path`` is accepted and skipped), coordinates in raw-image pixels.
"""
from __future__ import annotations

import codecs
import csv
import io as _io
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "read_five_points",
    "ImageReadError", "LandmarkFileError", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "MASK_SUFFIX", "N_LANDMARKS",
    "read_image", "read_landmarks_csv", "write_landmarks_csv", "mask_path", "read_mask", "write_mask",
]

#: Default pixel limit of :func:`read_image` (50 megapixels).
DEFAULT_MAX_PIXELS = 50_000_000

#: File name endings treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

#: Mask file name ending: ``<image stem>_visible_skin_mask.png`` (1 = visible skin).
MASK_SUFFIX = "_visible_skin_mask.png"

#: Landmarks per CSV row.
N_LANDMARKS = 68


class ImageReadError(OSError):
    """An image file could not be read; the message names the file and the reason."""


class LandmarkFileError(ValueError):
    """A landmark CSV row is malformed; the message names the file and line."""


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open and decode ``path`` (first frame), refusing more than ``max_pixels`` pixels before decoding."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    im = None
    try:
        with warnings.catch_warnings():
            # our own max_pixels check replaces PIL's warning; PIL's hard error (2x its limit) is still caught
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        w, h = im.size
        if w * h > max_pixels:
            raise ImageReadError(f"{path}: {w} x {h} = {w * h / 1e6:.1f} MP exceeds max_pixels = "
                                 f"{max_pixels / 1e6:g} MP; downscale it first or pass a larger max_pixels")
        im.load()
    except BaseException as e:
        if im is not None:
            im.close()
        if isinstance(e, ImageReadError) or not isinstance(e, Exception):
            raise
        if isinstance(e, Image.DecompressionBombError):
            raise ImageReadError(f"{path}: image too large, exceeds max_pixels = {max_pixels / 1e6:g} MP "
                                 f"and PIL's decompression-bomb limit ({e})") from e
        # PIL raises OSError, SyntaxError, ValueError, EOFError, struct.error ... on bad files
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    return im


def _to_rgb(im: Image.Image, background: tuple[int, int, int] | None) -> np.ndarray:
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a * 255.0 if im.mode == "F" else a / 257.0  # 16-bit range -> 8 bits
        grey = np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if not has_alpha:
        return np.asarray(im.convert("RGB"))
    rgba = np.asarray(im.convert("RGBA"))
    if background is None:
        return np.ascontiguousarray(rgba[..., :3])
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    out = rgba[..., :3] * alpha + np.asarray(background, np.float64) * (1 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS,
               background: tuple[int, int, int] | None = None) -> np.ndarray:
    """Read a photo as ``uint8 (H, W, 3)`` RGB (see the module docstring for every conversion).

    Args:
        path: image file.
        max_pixels: refuse images with more pixels than this (checked from the header, before decoding).
        background: ``(r, g, b)`` 0-255 to composite transparent images over; None drops alpha.
    Raises:
        ImageReadError: missing, corrupt, truncated, non-image or too large file (the message names it).
        ValueError: bad ``max_pixels`` or ``background``.
    """
    if int(max_pixels) != max_pixels or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if background is not None and (len(background) != 3 or not all(0 <= v <= 255 for v in background)):
        raise ValueError(f"background must be (r, g, b) in 0-255 or None, got {background!r}")
    path = Path(path)
    opened = im = _open_checked(path, int(max_pixels))
    try:
        try:
            im = ImageOps.exif_transpose(opened)
        except Exception as e:  # a broken EXIF block should not make the pixels unreadable
            warnings.warn(f"{path}: EXIF orientation ignored ({type(e).__name__}: {e})", stacklevel=2)
        return np.ascontiguousarray(_to_rgb(im, background))
    except Exception as e:
        raise ImageReadError(f"{path}: cannot convert to RGB ({type(e).__name__}: {e})") from e
    finally:
        opened.close()


def _atomic_write(path: Path, write: Callable[[_io.BufferedWriter], None]) -> Path:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


#: Longest line of a landmark CSV (a row of 68 points takes about 2 KB); a longer one is not a landmark row.
MAX_LINE_BYTES = 1 << 20
#: Longest field: a relative path (PATH_MAX) or a number.
MAX_FIELD_CHARS = 4096


def _parse_row(row: list[str]) -> tuple[str, np.ndarray | None, str]:
    """``(relative_path, points or None, reason)`` of one CSV row."""
    name = row[0].strip() if row else ""
    if not name:
        return name, None, "empty relative_path"
    if len(row) != 1 + 2 * N_LANDMARKS:
        return name, None, f"expected {1 + 2 * N_LANDMARKS} fields (path + 68 x, y), got {len(row)}"
    try:
        vals = np.array([float(v) for v in row[1:]], np.float64)
    except ValueError:
        bad = next(v for v in row[1:] if not _is_float(v))
        return name, None, f"not a number: {bad!r}"
    if not np.isfinite(vals).all():
        return name, None, "NaN or Inf coordinates (missing landmarks)"
    with np.errstate(over="ignore"):
        pts = vals.astype(np.float32)
    if not np.isfinite(pts).all():
        bad = row[1 + int(np.argmin(np.isfinite(pts)))].strip()
        return name, None, f"coordinate {bad} overflows float32 (|x| > {float(np.finfo(np.float32).max):.4g})"
    return name, pts.reshape(N_LANDMARKS, 2), ""


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _text_lines(f, path: Path):
    r"""The lines of the binary file ``f`` as UTF-8 text (a byte-order mark at the start dropped; ``\n``, ``\r\n``
    and ``\r`` endings kept for the csv module); LandmarkFileError naming the file and line for binary content, bytes
    that are not UTF-8 (e.g. a Latin-1 file) and an overlong line."""
    lineno = 0
    while chunk := f.readline(MAX_LINE_BYTES + 1):
        for raw in chunk.splitlines(keepends=True):  # also splits at a lone \r (old Mac files)
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise LandmarkFileError(f"{path}:{lineno}: a line longer than {MAX_LINE_BYTES} bytes: not a landmark "
                                        f"CSV")
            nul = raw.find(b"\0")
            if nul >= 0:
                raise LandmarkFileError(f"{path}:{lineno}: binary content (a NUL byte at column {nul + 1}): not a "
                                        f"landmark CSV")
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LandmarkFileError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                        f"{e.start + 1}); save the file as UTF-8") from None


def read_landmarks_csv(path: str | Path, missing: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read an authors'-format landmark file.

    Args:
        path: the CSV file (UTF-8, a byte-order mark allowed; rows ``relative_path,x1,y1,...,x68,y68``; blank
            lines ignored; an optional header row starting with ``relative_path``).
        missing: None (default) → a malformed row (wrong field count, non-numbers, NaN/Inf, a coordinate beyond
            float32's range, empty path) raises :class:`LandmarkFileError` naming the file and line. A list → such
            rows are skipped and their ``relative_path`` (or ``"<line N>"`` when empty) appended to it instead.
    Returns:
        ``{relative_path: (68, 2) float32}`` in file order.
    Raises:
        FileNotFoundError: no such file. LandmarkFileError: a malformed row (see ``missing``); always, naming the
            file and line: a relative_path listed twice, content that is not UTF-8 text (binary, Latin-1), a line
            longer than :data:`MAX_LINE_BYTES` or a field longer than :data:`MAX_FIELD_CHARS`, broken CSV quoting.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such landmark file")
    out: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:
        reader = csv.reader(_text_lines(f, path))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # e.g. a field beyond the csv module's limit
                raise LandmarkFileError(f"{path}:{reader.line_num}: not a landmark CSV row ({e})") from None
            lineno = reader.line_num
            if not row or all(not v.strip() for v in row):
                continue
            long = next((v for v in row if len(v) > MAX_FIELD_CHARS), None)
            if long is not None:
                raise LandmarkFileError(f"{path}:{lineno}: a field of {len(long)} characters (at most "
                                        f"{MAX_FIELD_CHARS}): not a landmark CSV row")
            if lineno == 1 and row[0].strip().lower() == "relative_path":
                continue
            name, pts, reason = _parse_row(row)
            if name in first_line:
                raise LandmarkFileError(f"{path}:{lineno}: {name!r} already listed on line {first_line[name]}")
            if pts is None:
                if missing is None:
                    raise LandmarkFileError(f"{path}:{lineno}: {reason}")
                missing.append(name or f"<line {lineno}>")
                continue
            first_line[name] = lineno
            out[name] = pts
    return out


def _fmt(v: np.floating) -> str:
    return np.format_float_positional(v, unique=True, trim="-")


def write_landmarks_csv(path: str | Path, landmarks: Mapping[str, np.ndarray], header: bool = False) -> Path:
    """Write ``{relative_path: (68, 2) points}`` as an authors'-format CSV (atomically: temp file + rename).

    Numbers are written in the shortest form that reads back to the same value of the array's dtype (float32
    points round-trip exactly through :func:`read_landmarks_csv`). ``header=True`` adds a
    ``relative_path,x1,y1,...`` first row (the authors' files have none).

    Raises:
        ValueError: a value that is not finite ``(68, 2)`` numbers, or an empty key (message names the key).
    """
    rows = []
    for name, pts in landmarks.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"landmarks: keys must be non-empty relative paths, got {name!r}")
        a = np.asarray(pts)
        if a.shape != (N_LANDMARKS, 2) or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"landmarks[{name!r}] must be (68, 2) numbers, got {a.dtype} {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"landmarks[{name!r}] contains NaN or Inf")
        a = a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)
        rows.append([name] + [_fmt(v) for v in a.reshape(-1)])
    text = _io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    if header:
        w.writerow(["relative_path"] + [f"{c}{i}" for i in range(1, N_LANDMARKS + 1) for c in "xy"])
    w.writerows(rows)
    return _atomic_write(Path(path), lambda f: f.write(text.getvalue().encode("utf-8")))


def mask_path(image_path: str | Path, mask_dir: str | Path | None = None) -> Path:
    """``<stem>_visible_skin_mask.png`` of an image: beside it, or in ``mask_dir`` (the dataset's ``masks/``)."""
    image_path = Path(image_path)
    folder = Path(mask_dir) if mask_dir is not None else image_path.parent
    return folder / (image_path.stem + MASK_SUFFIX)


def read_mask(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a mask as float32 ``(H, W)`` in {0, 1}.

    Masks stored as 0/255 and as 0/1 are both read: the grey value (channel mean, after :func:`read_image`'s
    conversions; alpha dropped) counts as 1 from 128 up — or, when no pixel exceeds 1 (a 0/1 mask), from 1 up.
    Raises ImageReadError like :func:`read_image`.
    """
    grey = read_image(path, max_pixels=max_pixels).astype(np.float32).mean(-1)
    threshold = 0.5 if grey.max() <= 1 else 127.5
    return (grey >= threshold).astype(np.float32)


def write_mask(path: str | Path, mask) -> Path:
    """Write a mask as an 8-bit grey PNG with values 0 and 255 (atomically).

    Args:
        path: output file (normally :func:`mask_path` of the image).
        mask: ``(H, W)`` or ``(1, H, W)`` bool or numbers in [0, 1] (numpy or torch); values ≥ 0.5 become 255.
    Raises:
        ValueError: wrong shape, NaN, or values outside [0, 1] (message names ``mask``).
    """
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask must be (H, W) or (1, H, W), got shape {np.shape(mask)}")
    if m.dtype != np.bool_:
        if not np.issubdtype(m.dtype, np.number):
            raise ValueError(f"mask must be bool or numeric, got {m.dtype}")
        m = m.astype(np.float64)
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise ValueError("mask values must be finite and in [0, 1] (bool, or probabilities)")
        m = m >= 0.5
    img = Image.fromarray(np.where(m, 255, 0).astype(np.uint8), mode="L")
    return _atomic_write(Path(path), lambda f: img.save(f, format="PNG"))


def read_five_points(path: str | Path) -> np.ndarray:
    """A 5-point detection file (``detections5/<name>.txt`` of the development faces): five lines ``x y`` — left eye,
    right eye, nose tip, left and right mouth corner — in image pixels. Returns ``(5, 2)`` float64.

    Raises:
        ValueError: not 5 rows of 2 finite numbers (the message names the file).
    """
    try:
        pts = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not a 5-point file ({e})") from None
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ValueError(f"{path}: expected 5 lines of 'x y' with finite values (eyes, nose, mouth corners), "
                         f"got shape {pts.shape}")
    return pts
