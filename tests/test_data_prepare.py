"""occrecon.data.prepare (the one photo → aligned face path) and occrecon.data.faces (the real-face folder and its
identity split)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from occrecon import assets
from occrecon.data.align import align_face, five_from_68, transform_points
from occrecon.data.faces import (HELD_OUT, SPLIT_SEED, FaceRecord, identity_split, licence_filter,
                                 read_face_folder)
from occrecon.data.io import read_five_points, read_image, write_landmarks_csv
from occrecon.data.landmarks import DlibDetector
from occrecon.data.prepare import AlignmentError, FaceNotFound, prepare_face, prepare_photo

pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")


@pytest.fixture(scope="module")
def detector():
    return DlibDetector()


@pytest.fixture(scope="module")
def photo():
    img, det = assets.dev_faces()[0]
    return read_image(img), read_five_points(det), img, det


def test_detected_face_is_aligned_and_its_landmarks_mapped(photo, detector):
    image = photo[0]
    face = prepare_face(image, 128, detector=detector)
    direct = detector(image)
    np.testing.assert_array_equal(face.photo_landmarks, direct.points)
    crop, m = align_face(image, direct.five(), 128)
    np.testing.assert_array_equal(face.crop, crop)
    np.testing.assert_allclose(face.transform, m)
    np.testing.assert_allclose(face.landmarks, transform_points(direct.points, m), rtol=0, atol=1e-4)
    assert face.source == "dlib"
    assert face.score == pytest.approx(direct.score)


def test_given_landmarks_and_five_points(photo, detector):
    image, five = photo[0], photo[1]
    pts = detector(image).points
    given = prepare_face(image, 96, landmarks=pts)
    assert given.source == "given" and given.score is None
    np.testing.assert_allclose(given.five, five_from_68(pts))
    by_five = prepare_face(image, 96, five=five, detector=detector)
    assert by_five.source == "5-point file + dlib on crop" and by_five.landmarks.shape == (68, 2)
    assert by_five.photo_landmarks is None
    np.testing.assert_allclose(by_five.transform, align_face(image, five, 96)[1])
    quiet = prepare_face(image, 96, five=five, redetect=False)
    assert quiet.landmarks is None and quiet.source == "5-point file"


def test_prepare_photo_uses_the_five_point_file(photo, detector):
    _, five, img, det = photo
    face = prepare_photo(img, 64, five_file=det, detector=detector)
    np.testing.assert_allclose(face.five, five)
    assert face.crop.shape == (64, 64, 3)


def test_failures_are_typed_and_named(detector):
    with pytest.raises(FaceNotFound, match="no face"):
        prepare_face(np.full((120, 160, 3), 128, np.uint8), 64, detector=detector)
    with pytest.raises(AlignmentError, match="degenerate"):
        prepare_face(np.zeros((50, 50, 3), np.uint8), 64, five=np.zeros((5, 2)), redetect=False)
    bad = np.full((68, 2), np.nan)
    with pytest.raises(AlignmentError, match="NaN"):
        prepare_face(np.zeros((50, 50, 3), np.uint8), 64, landmarks=bad)
    with pytest.raises(ValueError, match="landmarks"):
        prepare_face(np.zeros((50, 50, 3), np.uint8), 64, landmarks=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="image"):
        prepare_face(np.zeros((50, 50), np.uint8), 64, five=np.zeros((5, 2)))


def test_detector_fallback_thresholds():
    with pytest.raises(ValueError, match="fallback_thresholds"):
        DlibDetector(fallback_thresholds=(0.5,))
    det = DlibDetector(fallback_thresholds=(-0.5,))
    assert det(np.full((120, 160, 3), 128, np.uint8)) is None  # a blank image has no face at any threshold


# ---------------------------------------------------------------------------------------------- faces folder
def _fake_folder(tmp_path, n=30):
    root = tmp_path / "faces"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lms, lines = {}, []
    for i in range(n):
        fid = f"{i + 1:05d}"
        lms[f"images/{fid}.jpg"] = rng.random((68, 2)).astype(np.float32) * 100
        lines.append(json.dumps({"id": fid, "identity": i // 3, "licence_class": "permissive" if i % 2 else "unknown",
                                 "image_rights": "licensed" if i % 5 == 0 else "third-party-or-unclear",
                                 "flags": ["possibly_occluded"] if i == 7 else []}))
    write_landmarks_csv(root / "landmarks.csv", lms)
    (root / "meta.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_read_face_folder_and_licence_filters(tmp_path):
    recs = read_face_folder(_fake_folder(tmp_path))
    assert [r.id for r in recs] == [f"{i + 1:05d}" for i in range(30)]
    assert recs[7].flags == ("possibly_occluded",) and recs[4].identity == 1
    assert recs[0].landmarks.shape == (68, 2) and recs[0].path.name == "00001.jpg"
    assert len(licence_filter(recs, "licensed")) == 6 and len(licence_filter(recs, "permissive")) == 15
    assert len(licence_filter(recs, "all")) == 30
    with pytest.raises(ValueError, match="licence"):
        licence_filter(recs, "open")


def test_identity_split_never_splits_an_identity(tmp_path):
    recs = read_face_folder(_fake_folder(tmp_path))
    train, held = identity_split(recs, 0.2, 0)
    assert len({r.identity for r in held}) == 2  # round(0.2 · 10 identities)
    assert not ({r.identity for r in train} & {r.identity for r in held})
    assert len(train) + len(held) == 30
    again = identity_split(list(reversed(recs)), 0.2, 0)[1]
    assert {r.id for r in again} == {r.id for r in held}  # the split depends on the identities, not the order
    assert {r.id for r in identity_split(recs, 0.2, 1)[1]} != {r.id for r in held}
    with pytest.raises(ValueError, match="held_out"):
        identity_split(recs, 1.0)


def test_malformed_folder(tmp_path):
    root = _fake_folder(tmp_path, 3)
    (root / "meta.jsonl").write_text('{"id": "00001", "identity": 0}\nnot json\n')
    with pytest.raises(ValueError, match="meta.jsonl:2"):
        read_face_folder(root)
    (root / "meta.jsonl").write_text('{"id": "00009", "identity": 0}\n')
    with pytest.raises(ValueError, match="no landmarks"):
        read_face_folder(root)
    with pytest.raises(FileNotFoundError, match="meta.jsonl"):
        read_face_folder(tmp_path / "nowhere")


def test_the_shared_folder_split():
    root = assets.shared_dir() / "assets" / "faces" / "train"
    if not (root / "meta.jsonl").is_file():
        pytest.skip("no real-face folder")
    recs = read_face_folder(root)
    train, held = identity_split(recs, HELD_OUT, SPLIT_SEED)
    assert len(recs) == 2747 and len(held) == 541  # the project's held-out set: 419 of 2,093 identities
    assert len({r.identity for r in held}) == 419
    assert isinstance(held[0], FaceRecord)


def test_as_photo_accepts_every_in_memory_form():
    import torch
    from PIL import Image

    from occrecon.data.prepare import as_photo

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    assert as_photo(rgb) is not rgb and np.array_equal(as_photo(rgb), rgb)
    np.testing.assert_array_equal(as_photo(rgb.astype(np.float32) / 255), rgb)  # float in [0, 1]
    np.testing.assert_array_equal(as_photo(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)  # (3, H, W) uint8
    np.testing.assert_array_equal(as_photo(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255), rgb)
    np.testing.assert_array_equal(as_photo(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(as_photo(np.concatenate([rgb, rgb[..., :1]], -1)), rgb)  # alpha dropped
    grey = rgb[..., 0]
    np.testing.assert_array_equal(as_photo(grey), np.repeat(grey[..., None], 3, -1))
    with pytest.raises(ValueError, match="photo: float pixels must lie in"):
        as_photo(rgb.astype(np.float32))
    with pytest.raises(TypeError, match="photo: integer pixels must be uint8"):
        as_photo(rgb.astype(np.int32))
    with pytest.raises(ValueError, match="img: expected an"):
        as_photo(np.zeros((4, 4, 5), np.uint8), "img")
    with pytest.raises(TypeError, match="photo: expected a numpy array"):
        as_photo([[1, 2]])
