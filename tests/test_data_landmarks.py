"""occrecon.data.landmarks: dlib on the real dev faces, best-face choice, no face, optional FAN backend."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from occrecon.assets import dev_faces
from occrecon.data.landmarks import DlibDetector, FaceLandmarks, FanDetector, best_face, detect_landmarks


@pytest.fixture(scope="module")
def dlib_detector():
    return DlibDetector()


def load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_dlib_matches_the_reference_five_point_detections(dlib_detector):
    """five_from_68(dlib) vs the independent 5-point detections shipped with the dev faces."""
    per_image, normalised = [], []
    for img, det in dev_faces():
        face = dlib_detector(load(img))
        assert face is not None, img.name
        assert face.points.dtype == np.float32 and face.points.shape == (68, 2)
        ref = np.loadtxt(det)
        dist = np.linalg.norm(face.five() - ref, axis=1).mean()
        per_image.append(dist)
        normalised.append(dist / np.linalg.norm(ref[0] - ref[1]))  # by the inter-ocular distance
    assert len(per_image) >= 10
    assert np.median(per_image) < 5.0  # pixels
    assert max(normalised) < 0.1


def test_blank_image_gives_none(dlib_detector):
    assert dlib_detector(np.full((200, 240, 3), 128, np.uint8)) is None
    assert detect_landmarks(np.zeros((120, 120, 3), np.uint8), detector=dlib_detector) is None


def test_two_faces_side_by_side_gives_the_better_one(dlib_detector):
    (a_path, _), (b_path, _) = [f for f in dev_faces() if f[0].name in ("000033.jpg", "000037.jpg")]
    a, b = load(a_path), load(b_path)
    alone_a, alone_b = dlib_detector(a), dlib_detector(b)
    canvas = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1] + 40, 3), 255, np.uint8)
    canvas[:b.shape[0], :b.shape[1]] = b
    off = b.shape[1] + 40
    canvas[:a.shape[0], off:off + a.shape[1]] = a
    faces = dlib_detector.detect(canvas)
    assert len(faces) == 2 and faces[0].score >= faces[1].score
    best = dlib_detector(canvas)
    better, shift = (alone_a, off) if alone_a.score > alone_b.score else (alone_b, 0)
    assert best is faces[0] or np.array_equal(best.points, faces[0].points)
    np.testing.assert_allclose(best.points, better.points + [shift, 0], atol=1.0)


def test_best_face_tie_rules():
    pts = np.zeros((68, 2))
    small = FaceLandmarks(pts, (0, 0, 10, 10), 1.0)
    big = FaceLandmarks(pts, (0, 0, 20, 20), 1.0)
    strong = FaceLandmarks(pts, (0, 0, 5, 5), 1.5)
    assert best_face([small, big]) is big  # equal scores: the larger box
    assert best_face([small, big, strong]) is strong  # the score decides first
    twin = FaceLandmarks(pts, (5, 5, 15, 15), 1.0)
    assert best_face([small, twin]) is small  # all equal: the first listed
    assert best_face([]) is None
    with pytest.raises(ValueError, match="points"):
        FaceLandmarks(np.zeros((5, 2)), (0, 0, 1, 1), 1.0)
    with pytest.raises(ValueError, match="box"):
        FaceLandmarks(pts, (0, 0, 1), 1.0)


def test_bad_input(dlib_detector, tmp_path):
    with pytest.raises(ValueError, match="image must be"):
        dlib_detector(np.zeros((50, 50), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        detect_landmarks(np.zeros((50, 50, 3), np.float32), detector=dlib_detector)
    with pytest.raises(FileNotFoundError, match="predictor_path"):
        DlibDetector(tmp_path / "missing.dat")
    with pytest.raises(ValueError, match="upsample"):
        DlibDetector(upsample=-1)


def test_fan_missing_package_or_weights(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # import now fails, as when not installed
    with pytest.raises(ImportError, match="pip install face-alignment"):
        FanDetector()
    with pytest.raises(FileNotFoundError, match="weights_path"):
        FanDetector(weights_path=tmp_path / "nowhere")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        FanDetector(weights_path=tmp_path)


def test_fan_glue_with_a_stand_in_package(monkeypatch, tmp_path):
    """FAN's outputs (pixel indices, S3FD boxes with confidence) are converted and the best face kept; a local
    weights folder is used as torch-hub folder only while the network is built."""
    import torch.hub

    seen = {}

    class StandIn:
        def __init__(self, kind, device, face_detector):
            seen["hub"], seen["device"] = torch.hub.get_dir(), device

        def get_landmarks_from_image(self, image, return_bboxes, return_landmark_score):
            pts = [np.full((68, 2), 10.0), np.full((68, 2), 20.0)]
            boxes = [np.array([1, 2, 30, 40, 0.7]), np.array([5, 6, 50, 60, 0.9])]
            return pts, [None, None], boxes

    module = types.SimpleNamespace(LandmarksType=types.SimpleNamespace(TWO_D=2), FaceAlignment=StandIn)
    monkeypatch.setitem(sys.modules, "face_alignment", module)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "2DFAN4-x.zip").write_bytes(b"x")
    before = torch.hub.get_dir()
    fan = FanDetector(weights_path=tmp_path, device="cpu")
    assert seen == {"hub": str(tmp_path), "device": "cpu"} and torch.hub.get_dir() == before
    best = fan(np.zeros((64, 64, 3), np.uint8))
    np.testing.assert_allclose(best.points, 20.5)
    np.testing.assert_allclose(best.box, [5, 6, 50, 60])
    assert best.score == pytest.approx(0.9)
