"""Photo → aligned face: the one path every command takes (reconstruct, ``data landmarks``, ``data synth``, the
fitting engine and its evaluation).

``prepare_face(image, size)`` finds the face and its 68 landmarks, aligns the face into the renderer's ``size``²
framing (Deep3D's 5-point recipe, :func:`occrecon.data.align.align_face`) and returns the crop, the landmarks in
crop pixels and the photo → crop transform. Where the points come from, in order of preference:

1. ``landmarks``: 68 points given by the caller (e.g. a landmark CSV), in photo pixels;
2. ``five``: 5 points given by the caller (e.g. a detections file); the 68 landmarks are then detected on the
   aligned crop (``redetect=True``, as the training data of ``data synth`` do) or left out;
3. otherwise the detector (dlib's HOG + 68-point predictor by default) on the photo; several faces: the best
   (:func:`prepare_faces` aligns every one of them).

Failures raise :class:`FaceNotFound` / :class:`AlignmentError` (both ``ValueError``) with the reason, so callers
report every photo they could not use and never skip one silently.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import TEMPLATE_SIZE, align_face, five_from_68, transform_points

__all__ = ["PreparedFace", "FaceNotFound", "AlignmentError", "prepare_face", "prepare_faces", "prepare_photo", "as_photo"]


class FaceNotFound(ValueError):
    """No face (or no landmarks) was found where one was needed."""


class AlignmentError(ValueError):
    """The points found cannot define an alignment (degenerate, mirrored, non-finite). ``points`` holds the
    detected 68 photo landmarks when a detector found them (else None)."""

    def __init__(self, message: str, points: np.ndarray | None = None):
        super().__init__(message)
        self.points = points


@dataclass(frozen=True)
class PreparedFace:
    """An aligned face.

    Attributes:
        crop: ``(size, size, 3)`` uint8 RGB.
        landmarks: ``(68, 2)`` float32 landmarks in crop pixels (pixel centres at +0.5), or None when only five
            points were known and no re-detection was asked for (or it found none).
        transform: ``(2, 3)`` float64 affine, photo pixel coordinates → crop pixel coordinates.
        five: ``(5, 2)`` float64 photo points the alignment used.
        source: where the landmarks came from: ``"given"``, ``"5-point file"`` (+ ``" + dlib on crop"``), or the
            detector's name.
        score: the detector's confidence of the face, None for given points.
        photo_landmarks: ``(68, 2)`` float32 landmarks in photo pixels when they were given or detected on the
            photo (None for 5-point input).
    """

    crop: np.ndarray
    landmarks: np.ndarray | None
    transform: np.ndarray
    five: np.ndarray
    source: str
    score: float | None = None
    photo_landmarks: np.ndarray | None = None


def _detector_name(detector) -> str:
    return type(detector).__name__.replace("Detector", "").lower() or "detector"


def prepare_face(image: np.ndarray, size: int = TEMPLATE_SIZE, *, landmarks: np.ndarray | None = None,
                 five: np.ndarray | None = None, detector=None, redetect: bool = True) -> PreparedFace:
    """Align one face of a photo (see the module docstring for where the points come from).

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        size: side of the aligned crop in pixels.
        landmarks: optional ``(68, 2)`` photo points (the 15 used for the 5 alignment points must be finite).
        five: optional ``(5, 2)`` photo points (eye centres, nose tip, mouth corners).
        detector: a landmark detector (``occrecon.data.landmarks.DlibDetector`` or anything callable
            ``image -> FaceLandmarks | None``); default: one shared dlib detector, built on first use.
        redetect: with ``five``, detect the 68 landmarks on the aligned crop.

    Returns:
        :class:`PreparedFace`.

    Raises:
        FaceNotFound: the detector found no face in the photo.
        AlignmentError: the points cannot define an alignment.
        ValueError: ``image`` is not a uint8 RGB array, or a point array has the wrong shape.
    """
    from .landmarks import _check_image, detect_landmarks  # noqa: PLC0415  (dlib is imported lazily)

    image = _check_image(image)
    score = None
    if landmarks is not None:
        pts = np.asarray(landmarks, np.float64)
        if pts.shape != (68, 2):
            raise ValueError(f"landmarks: expected shape (68, 2), got {pts.shape}")
        try:
            five_pts = five_from_68(pts)
        except ValueError as e:
            raise AlignmentError(str(e), pts) from None
        source = "given"
    elif five is not None:
        five_pts = np.asarray(five, np.float64)
        if five_pts.shape != (5, 2):
            raise ValueError(f"five: expected shape (5, 2), got {five_pts.shape}")
        pts, source = None, "5-point file"
    else:
        face = detect_landmarks(image, detector)
        if face is None:
            raise FaceNotFound("no face found")
        pts, score = face.points.astype(np.float64), face.score
        five_pts = face.five()
        source = _detector_name(detector) if detector is not None else "dlib"
    try:
        crop, m = align_face(image, five_pts, size)
    except ValueError as e:
        raise AlignmentError(f"alignment failed: {e}", pts) from None
    if pts is not None:
        crop_lm = transform_points(pts, m).astype(np.float32)
    elif redetect:
        found = detect_landmarks(crop, detector)
        crop_lm = None if found is None else found.points.astype(np.float32)
        source += " + " + (_detector_name(detector) if detector is not None else "dlib") + " on crop"
        if found is None:
            source += " (none found)"
    else:
        crop_lm = None
    photo_lm = None if pts is None else pts.astype(np.float32)
    return PreparedFace(crop, crop_lm, m, five_pts, source, score, photo_lm)


def prepare_faces(image: np.ndarray, size: int = TEMPLATE_SIZE, *, detector=None
                  ) -> tuple[list[PreparedFace], list[AlignmentError]]:
    """Every face the detector finds in a photo, each aligned as :func:`prepare_face` aligns the best one.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        size: side of the aligned crops.
        detector: as :func:`prepare_face` (its ``detect(image)`` gives all faces, best first).

    Returns:
        ``(faces, failures)``: the aligned faces, best first (highest detector score), and one
        :class:`AlignmentError` per detected face whose points cannot define an alignment (its ``points`` set).

    Raises:
        FaceNotFound: no face in the photo.
        ValueError: ``image`` is not a uint8 RGB array.
    """
    from .landmarks import _check_image, _default_detector  # noqa: PLC0415  (dlib is imported lazily)

    image = _check_image(image)
    det = detector if detector is not None else _default_detector()
    if hasattr(det, "detect"):
        found = det.detect(image)
    else:  # a plain callable image -> FaceLandmarks | None
        one = det(image)
        found = [] if one is None else [one]
    if not found:
        raise FaceNotFound("no face found")
    source = _detector_name(detector) if detector is not None else "dlib"
    faces, failures = [], []
    for face in found:  # each detection aligned as given points are (prepare_face), then labelled as detected
        try:
            prepared = prepare_face(image, size, landmarks=face.points)
        except AlignmentError as e:
            failures.append(e)
            continue
        faces.append(dataclasses.replace(prepared, source=source, score=face.score))
    return faces, failures


def prepare_photo(path: str | Path, size: int = TEMPLATE_SIZE, *, five_file: str | Path | None = None,
                  detector=None, redetect: bool = True) -> PreparedFace:
    """:func:`prepare_face` on a photo file (read with :func:`occrecon.data.io.read_image`), with the 5 points
    from ``five_file`` when it exists (:func:`occrecon.data.io.read_five_points`), else the detector.

    Raises: :class:`occrecon.data.io.ImageReadError` for an unreadable photo, and as :func:`prepare_face`.
    """
    from .io import read_five_points, read_image  # noqa: PLC0415

    image = read_image(path)
    five = read_five_points(five_file) if five_file is not None and Path(five_file).exists() else None
    return prepare_face(image, size, five=five, detector=detector, redetect=redetect)


def as_photo(photo, name: str = "photo") -> np.ndarray:
    """A photo given in memory as ``uint8 (H, W, 3)`` RGB (the form every function of this module takes).

    Accepted: a numpy array ``(H, W, 3)``, ``(H, W, 4)`` (alpha dropped) or ``(H, W)`` (grey); a torch tensor in
    the same forms, or channels first ``(C, H, W)`` with C = 1, 3 or 4 (torch's convention, taken whenever the first
    dimension is 1, 3 or 4); uint8 0-255 or float in [0, 1]; a PIL image (any mode; converted to RGB); a path (read with
    :func:`occrecon.data.io.read_image`). Anything else: TypeError / ValueError naming ``name``.
    """
    if isinstance(photo, (str, Path)):
        from .io import read_image  # noqa: PLC0415

        return read_image(photo)
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError:  # pragma: no cover  (pillow is a dependency of the face pipeline)
        Image = None
    if Image is not None and isinstance(photo, Image.Image):
        return np.ascontiguousarray(np.asarray(photo.convert("RGB")))
    try:
        import torch  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(photo, torch.Tensor):
        t = photo.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)  # torch's (C, H, W) -> (H, W, C)
        photo = t.numpy()
    if not isinstance(photo, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, torch tensor, PIL image or path, got {type(photo).__name__}")
    a = photo
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB image, got shape {photo.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name}: expected uint8 or float pixels, got {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: integer pixels must be uint8 (0-255), got {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or Inf values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: float pixels must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] (uint8 for 0-255)")
    return np.ascontiguousarray(np.round(a * 255.0).astype(np.uint8))
