"""occrecon.data.io: unusual and broken image files, landmark CSVs, masks — all generated in tmp_path."""
from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from occrecon.data.io import (ImageReadError, LandmarkFileError, mask_path, read_image, read_landmarks_csv,
                              read_mask, write_landmarks_csv, write_mask)


def png_bytes(width: int, height: int, depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand from its chunks (independent of PIL's writer)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def rgb_pattern(h=6, w=8) -> np.ndarray:
    return ((np.arange(h * w * 3).reshape(h, w, 3) * 7) % 256).astype(np.uint8)


def test_rgb_png_round_trip(tmp_path):
    a = rgb_pattern()
    Image.fromarray(a).save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    assert got.dtype == np.uint8 and got.shape == (6, 8, 3)
    np.testing.assert_array_equal(got, a)


def test_grayscale_and_palette(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.repeat(g[..., None], 3, 2))
    pal = Image.new("P", (3, 2))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 1, 0])
    pal.save(tmp_path / "p.png")
    want = np.array([[[10, 20, 30], [200, 100, 50], [10, 20, 30]], [[200, 100, 50], [200, 100, 50], [10, 20, 30]]])
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), want)


def test_rgba_alpha_dropped_or_composited(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [100, 40, 20, 128]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    np.testing.assert_array_equal(read_image(tmp_path / "t.png"), rgba[..., :3])
    over_white = read_image(tmp_path / "t.png", background=(255, 255, 255))
    a = 128 / 255  # hand-computed: c * a + 255 * (1 - a)
    want = [[[200, 100, 50], [255, 255, 255], [round(100 * a + 255 * (1 - a)), round(40 * a + 255 * (1 - a)),
                                                 round(20 * a + 255 * (1 - a))]]]
    np.testing.assert_array_equal(over_white, want)
    with pytest.raises(ValueError, match="background"):
        read_image(tmp_path / "t.png", background=(0, 0))


def test_16_bit_grey_and_rgb_are_scaled_to_8_bit(tmp_path):
    grey = np.array([[0, 257, 32896, 65535]], ">u2")
    (tmp_path / "g16.png").write_bytes(png_bytes(4, 1, 16, 0, b"\x00" + grey.tobytes()))
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[0, :, 0], [0, 1, 128, 255])
    rgb = np.array([[[0, 30000, 65535], [2570, 51400, 1000]]], ">u2")
    (tmp_path / "c16.png").write_bytes(png_bytes(2, 1, 16, 2, b"\x00" + rgb.tobytes()))
    got = read_image(tmp_path / "c16.png").astype(int)
    assert np.abs(got - rgb.astype(float) / 257).max() <= 1.0


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = 255  # white top-left corner in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "r.png", exif=exif)
    got = read_image(tmp_path / "r.png")
    np.testing.assert_array_equal(got, np.rot90(a, k=-1))  # clockwise: the corner goes to the top right
    assert got.shape == (6, 4, 3) and (got[0, -1] == 255).all()


def test_huge_images_refused_before_decoding(tmp_path):
    # a header claiming 100000 x 100000 pixels with a one-row body: a decompression bomb in disguise
    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000, 8, 0, b"\x00" * 10))
    with pytest.raises(ImageReadError, match=r"bomb\.png.*max_pixels"):
        read_image(tmp_path / "bomb.png")
    # 64 MP: over our default 50 MP, under PIL's own limit — refused from the header, nothing decoded
    (tmp_path / "big.png").write_bytes(png_bytes(8000, 8000, 8, 0, b"\x00" * 10))
    with pytest.raises(ImageReadError, match=r"big\.png: 8000 x 8000 = 64\.0 MP exceeds max_pixels = 50 MP"):
        read_image(tmp_path / "big.png")
    Image.fromarray(rgb_pattern(20, 20)).save(tmp_path / "small.png")
    with pytest.raises(ImageReadError, match=r"small\.png: 20 x 20"):
        read_image(tmp_path / "small.png", max_pixels=399)
    assert read_image(tmp_path / "small.png", max_pixels=400).shape == (20, 20, 3)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(tmp_path / "small.png", max_pixels=0)


def test_corrupt_truncated_missing_files(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image")
    Image.fromarray(rgb_pattern(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible
    Image.fromarray(noise).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name in ("notes.jpg", "cut.jpg", "cut.png", "absent.png"):
        with pytest.raises(ImageReadError, match=name.replace(".", r"\.")):
            read_image(tmp_path / name)


def points(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((68, 2)) * 300).astype(np.float32)


def test_landmark_csv_round_trip_exact(tmp_path):
    lms = {"a/1.jpg": points(0), "b 2.png": points(1), "comma,name.png": points(2)}
    write_landmarks_csv(tmp_path / "lm.csv", lms)
    first = (tmp_path / "lm.csv").read_text().splitlines()[0].split(",")
    assert first[0] == "a/1.jpg" and float(first[1]) == lms["a/1.jpg"][0, 0] and len(first) == 137
    got = read_landmarks_csv(tmp_path / "lm.csv")
    assert list(got) == list(lms)
    for k in lms:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], lms[k])
    write_landmarks_csv(tmp_path / "h.csv", lms, header=True)
    assert (tmp_path / "h.csv").read_text().startswith("relative_path,x1,y1,x2,y2,")
    assert list(read_landmarks_csv(tmp_path / "h.csv")) == list(lms)


def test_hand_written_csv_values(tmp_path):
    row = "img.jpg," + ",".join(f"{i}.5" for i in range(136))
    (tmp_path / "m.csv").write_text(row + "\n\n")
    got = read_landmarks_csv(tmp_path / "m.csv")["img.jpg"]
    assert got[0].tolist() == [0.5, 1.5] and got[67].tolist() == [134.5, 135.5]


def test_bad_csv_rows_raise_with_line_or_go_to_missing(tmp_path):
    good = "ok.jpg," + ",".join(["1"] * 136)
    bad_rows = {
        "short.jpg," + ",".join(["1"] * 135): "expected 137 fields",
        "nan.jpg," + ",".join(["nan"] + ["1"] * 135): "NaN",
        "word.jpg," + ",".join(["x"] + ["1"] * 135): "not a number",
        "only_path.jpg": "expected 137 fields",
    }
    for bad, reason in bad_rows.items():
        (tmp_path / "b.csv").write_text(good + "\n" + bad + "\n")
        with pytest.raises(LandmarkFileError, match=rf"b\.csv:2: {reason}"):
            read_landmarks_csv(tmp_path / "b.csv")
    (tmp_path / "all.csv").write_text("\n".join([good, *bad_rows, "," + ",".join(["1"] * 136)]) + "\n")
    missing: list[str] = []
    got = read_landmarks_csv(tmp_path / "all.csv", missing=missing)
    assert list(got) == ["ok.jpg"]
    assert missing == ["short.jpg", "nan.jpg", "word.jpg", "only_path.jpg", "<line 6>"]
    (tmp_path / "dup.csv").write_text(good + "\n" + good + "\n")
    with pytest.raises(LandmarkFileError, match=r"dup\.csv:2: 'ok\.jpg' already listed on line 1"):
        read_landmarks_csv(tmp_path / "dup.csv", missing=[])
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        read_landmarks_csv(tmp_path / "nothing.csv")


def test_csv_content_that_is_not_landmark_text_names_file_and_line(tmp_path):
    good = ("ok.jpg," + ",".join(["1"] * 136) + "\n").encode()
    cases = {
        "latin1": ("caf\u00e9.jpg," + ",".join(["1"] * 136) + "\n").encode("latin-1"),  # was UnicodeDecodeError
        "binary": b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # was csv.Error: line contains NUL
        "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "huge_field": ("x" * 200_000 + ",1\n").encode(),  # was csv.Error: field larger than field limit
        "long_path": ("p" * 5000 + "," + ",".join(["1"] * 136) + "\n").encode(),
        "long_line": b"1," * (1 << 20),
    }
    reasons = {"latin1": r"2: not UTF-8 text \(byte 0xe9 at column 4\); save the file as UTF-8",
               "binary": r"2: binary content \(a NUL byte at column 1\)",
               "png": r"2: not UTF-8 text \(byte 0x89 at column 1\)",
               "huge_field": r"2: not a landmark CSV row \(field larger than field limit",
               "long_path": r"2: a field of 5000 characters \(at most 4096\)",
               "long_line": r"2: a line longer than 1048576 bytes"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(good + content)
        for missing in (None, []):  # never a row to skip: the file is not what it should be
            with pytest.raises(LandmarkFileError, match=re.escape(str(path)) + ":" + reasons[name]):
                read_landmarks_csv(path, missing=missing)


def test_csv_overflowing_coordinates_and_a_byte_order_mark(tmp_path):
    row = ",".join(["1"] * 60 + ["1e39"] + ["1"] * 75)
    (tmp_path / "big.csv").write_text("ok.jpg," + ",".join(["1"] * 136) + "\nbig.jpg," + row + "\n")
    with pytest.raises(LandmarkFileError, match=r"big\.csv:2: coordinate 1e39 overflows float32"):
        read_landmarks_csv(tmp_path / "big.csv")  # was read as inf
    missing: list[str] = []
    assert list(read_landmarks_csv(tmp_path / "big.csv", missing=missing)) == ["ok.jpg"] and missing == ["big.jpg"]
    lms = {"a.jpg": points(0)}
    write_landmarks_csv(tmp_path / "lm.csv", lms, header=True)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "lm.csv").read_bytes())  # as Excel saves it
    got = read_landmarks_csv(tmp_path / "bom.csv")  # the BOM was part of the header's first field
    assert list(got) == ["a.jpg"]
    np.testing.assert_array_equal(got["a.jpg"], lms["a.jpg"])
    write_landmarks_csv(tmp_path / "plain.csv", lms)
    (tmp_path / "bom2.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes())
    assert list(read_landmarks_csv(tmp_path / "bom2.csv")) == ["a.jpg"]  # was '\ufeffa.jpg'
    (tmp_path / "mac.csv").write_bytes((tmp_path / "plain.csv").read_bytes().replace(b"\n", b"\r") * 1)
    assert list(read_landmarks_csv(tmp_path / "mac.csv")) == ["a.jpg"]


def test_write_csv_rejects_bad_points(tmp_path):
    bad = points(0)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"landmarks\['x.jpg'\] contains NaN"):
        write_landmarks_csv(tmp_path / "w.csv", {"x.jpg": bad})
    with pytest.raises(ValueError, match=r"landmarks\['y.jpg'\] must be \(68, 2\)"):
        write_landmarks_csv(tmp_path / "w.csv", {"y.jpg": np.zeros((5, 2))})
    assert not (tmp_path / "w.csv").exists()  # nothing half-written


def test_masks(tmp_path):
    assert mask_path("/data/images/000123.png") == type(mask_path("x"))("/data/images/000123_visible_skin_mask.png")
    assert mask_path("images/a.jpg", "masks").as_posix() == "masks/a_visible_skin_mask.png"
    soft = np.array([[0.0, 0.49, 0.5, 1.0], [0.2, 0.8, 1.0, 0.0]])
    p = write_mask(tmp_path / "m" / "a_visible_skin_mask.png", soft)
    stored = np.asarray(Image.open(p))
    np.testing.assert_array_equal(stored, [[0, 0, 255, 255], [0, 255, 255, 0]])
    got = read_mask(p)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (soft >= 0.5).astype(np.float32))
    write_mask(tmp_path / "t.png", torch.tensor(soft).unsqueeze(0) > 0.5)  # (1, H, W) bool tensor
    np.testing.assert_array_equal(read_mask(tmp_path / "t.png"), soft > 0.5)
    # an RGB mask written by another tool: grey level >= 128 counts as visible
    Image.fromarray(np.array([[[127] * 3, [128] * 3]], np.uint8)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), [[0, 1]])
    Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8)).save(tmp_path / "01.png")  # stored as 0/1
    np.testing.assert_array_equal(read_mask(tmp_path / "01.png"), [[0, 1, 1, 0]])
    for bad, msg in ((soft * 2, r"\[0, 1\]"), (np.full((2, 2), np.nan), "finite"), (np.zeros((2, 2, 2)), "shape")):
        with pytest.raises(ValueError, match=msg):
            write_mask(tmp_path / "bad.png", bad)


def test_float_tiff_and_cmyk(tmp_path):
    f = np.array([[0.0, 0.5, 1.0, 2.0]], np.float32)  # float images are taken as 0-1 (clipped)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0, :, 1], [0, 128, 255, 255])
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "c.tif")  # no black, full magenta + yellow = red
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif"), np.broadcast_to([255, 0, 0], (3, 4, 3)))
