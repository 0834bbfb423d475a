"""``occrecon data landmarks``: two real faces, a blank image and a corrupt file in a temporary folder."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from occrecon.assets import dev_faces
from occrecon.cli import main
from occrecon.data.align import TEMPLATE_224, five_from_68, invert_affine, transform_points
from occrecon.data.io import read_landmarks_csv
from occrecon.data.landmarks import DlibDetector


def test_landmarks_command_reports_every_problem(tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    faces = dev_faces()
    shutil.copy(faces[0][0], src / "a.jpg")
    shutil.copy(faces[4][0], src / "sub" / "b.jpg")
    Image.fromarray(np.full((160, 200, 3), 90, np.uint8)).save(src / "blank.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image, not considered")
    out, aligned = tmp_path / "lm.csv", tmp_path / "aligned"

    assert main(["data", "landmarks", str(src), "--out", str(out), "--aligned-out", str(aligned)]) == 0
    printed = capsys.readouterr().out
    assert "no face: blank.png" in printed and "unreadable: broken.jpg" in printed
    assert "2 of 4 images with landmarks" in printed
    report = (tmp_path / "lm.csv.report.txt").read_text().splitlines()
    assert [line.split("\t")[:2] for line in report] == [["no_face", "blank.png"], ["unreadable", "broken.jpg"]]

    got = read_landmarks_csv(out)
    assert list(got) == ["a.jpg", "sub/b.jpg"]
    det = DlibDetector()
    for rel in got:  # the same as running the detector directly
        direct = det(np.asarray(Image.open(src / rel).convert("RGB")))
        np.testing.assert_array_equal(got[rel], direct.points)

    crops = read_landmarks_csv(aligned / "landmarks.csv")
    assert list(crops) == ["a.png", "sub/b.png"]
    m = {r.split(",")[0]: np.array(r.split(",")[1:], float).reshape(2, 3)
         for r in (aligned / "transforms.csv").read_text().splitlines()}
    for rel, crop_rel in zip(got, crops):
        crop = np.asarray(Image.open(aligned / crop_rel))
        assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
        np.testing.assert_allclose(crops[crop_rel], transform_points(got[rel], m[crop_rel]), atol=1e-3)
        np.testing.assert_allclose(transform_points(crops[crop_rel], invert_affine(m[crop_rel])), got[rel],
                                   atol=1e-3)
        # least-squares fit with a free translation: the aligned five points' centroid is the template's
        five = five_from_68(crops[crop_rel])
        np.testing.assert_allclose(five.mean(0), TEMPLATE_224.mean(0), atol=1e-3)
        assert np.linalg.norm(five - TEMPLATE_224, axis=1).max() < 20.0  # and near it (head pose varies)


def test_landmarks_command_bad_folder(tmp_path, capsys):
    assert main(["data", "landmarks", str(tmp_path / "absent"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "landmarks", str(tmp_path), "--out", str(tmp_path / "x.csv"), "--backend", "nope"])
