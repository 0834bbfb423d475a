"""Occluders, synthetic/real occlusion samples, the dataset folder and ``occrecon data synth``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from occrecon import assets
from occrecon.data.dataset import (DatasetError, FaceDataset, augment, image_relpath, mask_relpath, read_meta,
                                   split_ids)
from occrecon.data.generate import generate_dataset
from occrecon.data.ibug import IBUG_FLIP, flip_landmarks
from occrecon.data.occluders import (KINDS, PROCEDURAL_LICENCE, FaceFrame, OccluderLayer, OccluderLibrary, composite,
                                     draw_occluder,
                                     is_permissive, place_sprite)
from occrecon.data.synth import (SampleGenerator, SynthConfig, apply_occluders, labelled_region, random_theta,
                                 real_face_region,
                                 resolve_appearance)
from occrecon.fit.appearance import gamma_to_theta, theta_to_gamma
from occrecon.morphable import MorphableModel, with_learned_albedo
from occrecon.data.warp import similarity_matrix

pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not found")

S = 224


@pytest.fixture(scope="module")
def gen():
    return SampleGenerator(seed=3, config=SynthConfig(occluded_fraction=1.0))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "a"
    generate_dataset(root, 4, 3, seed=11, workers=1, progress=False)
    return root


def _frontal_landmarks(gen) -> np.ndarray:
    lay = gen.renderer.layout
    with torch.no_grad():
        return gen.renderer(torch.zeros(1, lay.size)).landmarks[0].numpy()


# ------------------------------------------------------------------------------------------------ iBUG flip

def test_flip_permutation_is_an_involution_with_the_midline_fixed():
    assert sorted(IBUG_FLIP) == list(range(68))
    np.testing.assert_array_equal(IBUG_FLIP[IBUG_FLIP], np.arange(68))
    fixed = {i for i in range(68) if IBUG_FLIP[i] == i}
    assert fixed == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}
    for a, b in [(0, 16), (17, 26), (21, 22), (31, 35), (36, 45), (39, 42), (40, 47), (48, 54), (55, 59),
                 (60, 64), (65, 67)]:
        assert IBUG_FLIP[a] == b and IBUG_FLIP[b] == a
    pts = np.random.default_rng(0).uniform(0, S, (68, 2))
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(pts, S), S), pts)


def test_flipped_render_landmarks_swap_symmetric_points(gen):
    # the mirror image of a face turned by +yaw is (nearly) the face turned by -yaw: flipped symmetric points
    # must land on their partners (SFM's mean face is symmetric up to ~1 px)
    r, lay = gen.renderer, gen.renderer.layout
    theta = torch.zeros(2, lay.size)
    theta[0, lay.slice("angle")] = torch.tensor([0.0, 0.3, 0.0])
    theta[1, lay.slice("angle")] = torch.tensor([0.0, -0.3, 0.0])
    with torch.no_grad():
        lms = r(theta).landmarks.numpy()
    flipped = flip_landmarks(lms[0], S)
    ok = np.isfinite(flipped[:, 0])
    err = np.hypot(*(flipped[ok] - lms[1][ok]).T)
    assert err.max() < 2.0, err.max()
    naive = lms[0].copy()  # mirrored without re-indexing: point 36 lands on the other eye
    naive[:, 0] = S - naive[:, 0]
    assert np.hypot(*(naive[36] - lms[1][36])) > 20


# ------------------------------------------------------------------------------------------------ geometry

def test_similarity_matrix_closed_form():
    m = similarity_matrix(2.0, math.pi / 2, (10.0, 20.0), (1.0, -1.0))
    # (11, 20) is 1 px right of the centre: a 90° counter-clockwise turn on screen (y down) sends it up, ×2
    np.testing.assert_allclose(m[:, :2] @ [11.0, 20.0] + m[:, 2], [10 + 1, 20 - 2 - 1], atol=1e-12)
    f = similarity_matrix(flip=True, width=S)
    np.testing.assert_allclose(f[:, :2] @ [3.5, 7.0] + f[:, 2], [S - 3.5, 7.0])
    with pytest.raises(ValueError, match="scale"):
        similarity_matrix(0.0)


def test_real_face_region_is_the_hull_of_jaw_and_raised_brows():
    lm = np.full((68, 2), np.nan)
    t = np.linspace(0, math.pi, 17)
    lm[0:17] = np.stack([112 - 60 * np.cos(t), 100 + 60 * np.sin(t)], -1)  # lower half circle, radius 60
    lm[17:27] = np.stack([np.linspace(52, 172, 10), np.full(10, 100.0)], -1)  # flat brow line through the ends
    lm[36:42] = [90, 110]
    lm[42:48] = [134, 110]
    region = real_face_region(lm, (S, S))
    height = 60.0  # chin (112, 160) to the brow centre (112, 100)
    raise_px = 0.12 * height
    hull_area = 0.5 * 16 * 60 * 60 * math.sin(math.pi / 16) + 120 * raise_px  # 16-gon half + raised band
    assert abs(region.sum() - hull_area) < 0.02 * hull_area
    assert region[int(100 - raise_px + 2), 112] == 1 and region[int(100 - raise_px - 2), 112] == 0
    assert region[155, 112] == 1 and region[165, 112] == 0
    with pytest.raises(ValueError, match="landmarks"):
        real_face_region(np.full((68, 2), np.nan), (S, S))


def test_labelled_region_is_the_face_region_and_the_occluders():
    region = np.zeros((6, 6), np.float32)
    region[1:4, 1:4] = 1
    alpha = np.zeros((6, 6), np.float32)
    alpha[3:6, 3:6] = 0.7  # overlaps the region at (3, 3), reaches outside it
    alpha[0, 5] = 0.49  # below the GT's 0.5 cut: not an occluder pixel
    known = labelled_region(region, alpha)
    expected = np.zeros((6, 6), np.float32)
    expected[1:4, 1:4] = 1
    expected[3:6, 3:6] = 1
    np.testing.assert_array_equal(known, expected)
    np.testing.assert_array_equal(labelled_region(region), region)  # a clean photo: the region only


# ------------------------------------------------------------------------------------------------ occluders

def test_licence_filter_keeps_only_permissive_files():
    full = OccluderLibrary()
    safe = OccluderLibrary(permissive_only=True)
    assert len(full) == 37 and len(safe) == 20  # the README's count: 20 of 37 are MIT / Apache-2.0
    assert {e.licence for e in safe.entries} == {"MIT", "Apache-2.0"}
    names = {e.file for e in safe.entries}
    assert "hair_blonde_strands_photo.png" not in names  # MIT repository, photo of unknown origin
    assert not any(e.file in names for e in full.entries if e.licence.startswith("NONE"))
    assert is_permissive("MIT") and is_permissive("Apache-2.0") and is_permissive("CC0")
    assert not is_permissive("NONE (no licence)") and not is_permissive("MIT repo / photo unknown")


def test_library_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        OccluderLibrary(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="README"):
        OccluderLibrary(tmp_path)
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "README.md").write_text("| file | category | style | size | repo | path | licence | alpha |\n"
                                        "| x.png | hand | photo | 4x4 | a/b | x.png | NONE (no licence) | src |\n")
    assert len(OccluderLibrary(tmp_path)) == 1
    with pytest.raises(ValueError, match="permissive"):
        OccluderLibrary(tmp_path, permissive_only=True)
    (tmp_path / "README.md").write_text("nothing here\n")
    with pytest.raises(ValueError, match="no occluder files"):
        OccluderLibrary(tmp_path)


def test_composite_is_the_over_operator_and_leaves_uncovered_pixels_alone():
    rng = np.random.default_rng(0)
    img = rng.random((8, 8, 3)).astype(np.float32)
    a = np.zeros((8, 8, 4), np.float32)
    a[2:5, 2:5] = [1.0, 0.0, 0.0, 1.0]
    a[5:7, 5:7] = [0.0, 1.0, 0.0, 0.3]
    b = np.zeros((8, 8, 4), np.float32)
    b[4:6, 4:6] = [0.0, 0.0, 1.0, 0.5]
    out, alpha = composite(img, [OccluderLayer(a, "a", "shape", "x"), OccluderLayer(b, "b", "shape", "x")])
    np.testing.assert_array_equal(out[0:2], img[0:2])
    np.testing.assert_allclose(out[3, 3], [1, 0, 0])
    np.testing.assert_allclose(out[6, 6], 0.3 * np.array([0, 1, 0]) + 0.7 * img[6, 6], rtol=1e-6)
    np.testing.assert_allclose(out[5, 5], 0.5 * np.array([0, 0, 1]) + 0.5 * (0.3 * np.array([0, 1, 0])
                                                                         + 0.7 * img[5, 5]), rtol=1e-6)
    np.testing.assert_allclose(alpha[5, 5], 1 - 0.7 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(alpha[4, 4], 1.0)
    assert alpha[0, 0] == 0


def test_gt_mask_is_region_minus_occluder_alpha():
    img = np.full((S, S, 3), 0.25, np.float32)
    region = np.zeros((S, S), np.float32)
    region[40:180, 50:170] = 1
    occ = np.zeros((S, S, 4), np.float32)
    occ[100:200, 20:90] = [0.9, 0.1, 0.1, 1.0]  # opaque, half on the face
    occ[20:60, 120:140] = [0.1, 0.1, 0.9, 0.4]  # translucent (alpha < 0.5): face stays visible
    img8, alpha, mask, records, occluded = apply_occluders(img, region, [OccluderLayer(occ, "o", "shape", "L")])
    expect = region.copy()
    expect[100:200, 20:90] = 0
    np.testing.assert_array_equal(mask, expect)
    untouched = occ[..., 3] == 0
    assert (img8[untouched] == 64).all()  # round(0.25 * 255)
    assert (img8[~untouched] != 64).any(axis=-1).all()
    assert occluded and records == [{"name": "o", "kind": "shape", "licence": "L"}]
    _, _, mask0, _, occ0 = apply_occluders(img, region, [])
    np.testing.assert_array_equal(mask0, region)
    assert not occ0


def test_place_sprite_puts_the_anchor_on_the_centre_and_keeps_alpha():
    sprite = np.zeros((40, 80, 4), np.float32)
    sprite[..., :3] = 0.8
    sprite[10:30, 20:60, 3] = 1.0  # an opaque 40 x 20 block centred in the sprite
    rgba = place_sprite(sprite, np.array([100.0, 120.0]), 160.0, 0.0, (S, S))
    ys, xs = np.nonzero(rgba[..., 3] > 0.5)
    assert abs(xs.mean() + 0.5 - 100) < 0.6 and abs(ys.mean() + 0.5 - 120) < 0.6
    assert abs((rgba[..., 3] > 0.5).sum() - 80 * 40) < 0.05 * 80 * 40  # scaled ×2
    np.testing.assert_allclose(rgba[rgba[..., 3] > 0.05][:, :3], 0.8, atol=1e-4)  # no dark fringe


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_covers_part_of_the_face(gen, kind):
    lms = _frontal_landmarks(gen)
    lib = gen.library
    cover = 0
    for i in range(4):
        layer = draw_occluder(kind, np.random.default_rng(i), lms, (S, S), lib, gen.sources)
        assert layer.rgba.shape == (S, S, 4) and layer.rgba.dtype == np.float32
        assert 0 <= layer.rgba.min() and layer.rgba.max() <= 1
        x0, y0 = np.nanmin(lms, 0).astype(int)
        x1, y1 = np.nanmax(lms, 0).astype(int)
        cover += (layer.rgba[y0:y1, x0:x1, 3] > 0.5).mean()
    assert cover > 0.01, kind


def test_face_frame_needs_eyes_nose_mouth_and_chin():
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = [80, 80], [140, 80]
    f = FaceFrame.from_landmarks(lm)
    assert f.scale == 60 and abs(f.angle) < 1e-12 and np.allclose(f.down, [0, 1])
    lm[30] = np.nan
    with pytest.raises(ValueError, match="landmarks"):
        FaceFrame.from_landmarks(lm)
    with pytest.raises(ValueError, match="kind"):
        draw_occluder("teapot", np.random.default_rng(0), np.zeros((68, 2)), (S, S))


# ------------------------------------------------------------------------------------------------ samples

def _euler(p, y, r):
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_synthetic_landmarks_are_the_pinhole_projections(gen):
    s = gen.synthetic(2)
    model, lay = gen.renderer.model, gen.renderer.layout
    th = s.theta.astype(np.float64)
    verts = (model.mean.double().numpy() + np.tensordot(th[lay.slice("id")], model.id_basis.double().numpy(), 1)
             + np.tensordot(th[lay.slice("exp")], model.exp_basis.double().numpy(), 1))
    idx = model.landmarks.numpy()
    cam = verts[np.clip(idx, 0, None)] @ _euler(*th[lay.slice("angle")]).T + th[lay.slice("trans")] + [0, 0, -1000]
    uv = np.stack([112 + 1015 * cam[:, 0] / -cam[:, 2], 112 - 1015 * cam[:, 1] / -cam[:, 2]], -1)
    valid = idx >= 0
    np.testing.assert_allclose(s.landmarks[valid], uv[valid], atol=2e-3)
    assert np.isnan(s.landmarks[~valid]).all() and (~valid).sum() == 18  # SFM: no jaw except the chin
    deg = np.degrees(th[lay.slice("angle")])
    assert abs(deg[0]) <= 15 and abs(deg[1]) <= 30 and abs(deg[2]) <= 15
    with torch.no_grad():
        phi = gen.renderer(torch.from_numpy(s.theta)[None]).region[0, 0].numpy()
    np.testing.assert_array_equal(s.region, phi)
    np.testing.assert_array_equal(s.mask, phi * (s.occluder_alpha < 0.5))


def test_samples_are_deterministic_and_order_independent(gen):
    a = gen.synthetic(5)
    other = SampleGenerator(seed=3, config=SynthConfig(occluded_fraction=1.0))
    other.synthetic(4)
    b = other.synthetic(5)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert a.occluders == b.occluders
    c = SampleGenerator(seed=4, config=SynthConfig(occluded_fraction=1.0)).synthetic(5)
    assert not np.array_equal(a.image, c.image)


def test_random_theta_ranges(gen):
    model = gen.renderer.model
    lay = model.layout
    th = np.stack([random_theta(np.random.default_rng(i), model) for i in range(200)])
    ang = np.degrees(th[:, lay.slice("angle")])
    assert np.abs(ang).max(0).tolist() <= [15, 30, 15] and np.abs(ang[:, 1]).max() > 20
    assert th.shape == (200, lay.size) and th.dtype == np.float32


# ------------------------------------------------------------------------------------------------ dataset

def test_dataset_roundtrip_matches_the_generator(dataset_dir):
    ds = FaceDataset(dataset_dir)
    assert len(ds) == 7
    meta = {r["id"]: r for r in read_meta(dataset_dir)}
    gen = SampleGenerator(seed=11)
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert ids == sorted(ids) == [f"real_{i:06d}" for i in range(3)] + [f"syn_{i:06d}" for i in range(4)]
    for i in (0, 4, 6):
        item = ds[i]
        kind, idx = item["id"].split("_")
        s = gen.synthetic(int(idx)) if kind == "syn" else gen.real(int(idx))
        assert item["image"].shape == (3, S, S) and item["mask"].shape == (1, S, S)
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), s.image / 255.0, atol=1e-7)
        np.testing.assert_array_equal(item["mask"][0].numpy(), s.mask)
        np.testing.assert_allclose(item["landmarks"].numpy(), s.landmarks, atol=1e-3)  # NaN where NaN
        assert bool(item["occluded"]) == s.occluded == meta[item["id"]]["occluded"]
    from occrecon.data.io import read_landmarks_csv  # data-io's reader of the authors' format: NaN rows = missing

    missing: list[str] = []
    table = read_landmarks_csv(dataset_dir / "landmarks.csv", missing=missing)
    assert sorted(missing) == [image_relpath(f"syn_{i:06d}") for i in range(4)]  # SFM: NaN jaw points
    for i in range(3):
        np.testing.assert_array_equal(table[image_relpath(f"real_{i:06d}")], ds[i]["landmarks"].numpy())
    theta = np.load(dataset_dir / "theta.npy")
    tids = json.loads((dataset_dir / "theta_ids.json").read_text())
    assert tids == [f"syn_{i:06d}" for i in range(4)] and theta.shape == (4, gen.renderer.layout.size)
    np.testing.assert_array_equal(theta[1], gen.synthetic(1).theta)
    assert "seed: 11" in (dataset_dir / "README.txt").read_text()


def test_dataset_is_byte_identical_for_any_worker_count_and_differs_by_seed(dataset_dir, tmp_path):
    b = tmp_path / "b"
    generate_dataset(b, 4, 3, seed=11, workers=2, progress=False)
    names = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for n in names:
        assert (dataset_dir / n).read_bytes() == (b / n).read_bytes(), n
    c = tmp_path / "c"
    generate_dataset(c, 1, 0, seed=12, workers=1, progress=False)
    assert (c / "images/syn_000000.png").read_bytes() != (dataset_dir / "images/syn_000000.png").read_bytes()
    with pytest.raises(ValueError, match="out"):
        generate_dataset(c, 1, 0, seed=12, progress=False)


def _dots(lms: np.ndarray) -> np.ndarray:
    img = np.zeros((S, S, 3), np.float32)
    for x, y in lms[np.isfinite(lms[:, 0])]:
        j, i = int(x), int(y)
        img[i - 1:i + 2, j - 1:j + 2] = 1.0
    return img


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_keeps_landmarks_on_the_image(gen, flip):
    lms = _frontal_landmarks(gen)
    lms = np.floor(lms) + 0.5  # on pixel centres: each dot is centred on its landmark
    img = _dots(lms)
    mask = np.zeros((S, S), np.float32)
    mask[60:160, 60:160] = 1
    m = similarity_matrix(1.08, math.radians(-9), (S / 2, S / 2), (7.0, -4.0), flip=flip, width=S)
    out, msk, new = augment(img, mask, lms, m, flip)
    ok = np.isfinite(new[:, 0])
    assert ok.sum() == 50
    gap = np.hypot(*(new[:, None] - new[None]).transpose(2, 0, 1))
    np.fill_diagonal(gap, np.inf)
    alone = ok & (np.nanmin(np.where(np.isnan(gap), np.inf, gap), 1) > 8)  # dots whose window holds no other dot
    assert alone.sum() >= 20
    for x, y in new[alone]:
        i, j = int(y), int(x)
        win = out[i - 3:i + 4, j - 3:j + 4, 0]
        yy, xx = np.mgrid[i - 3:i + 4, j - 3:j + 4]
        cx, cy = (win * (xx + 0.5)).sum() / win.sum(), (win * (yy + 0.5)).sum() / win.sum()
        assert math.hypot(cx - x, cy - y) < 0.35
    assert new[36, 0] < new[45, 0] and new[48, 0] < new[54, 0]  # left stays left after re-indexing
    assert set(np.unique(msk)) <= {0.0, 1.0} and abs(msk.sum() - 1.08 ** 2 * 1e4) < 0.03 * 1e4


def test_dataset_augmented_items(dataset_dir):
    torch.manual_seed(0)
    ds = FaceDataset(dataset_dir, augment=True)
    a = ds[5]
    torch.manual_seed(0)
    b = FaceDataset(dataset_dir, augment=True)[5]
    torch.testing.assert_close(a["image"], b["image"])
    plain = FaceDataset(dataset_dir)[5]
    assert not torch.equal(a["image"], plain["image"])
    assert set(torch.unique(a["mask"]).tolist()) <= {0.0, 1.0}


def test_dataset_cache_gives_the_same_items(dataset_dir, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dataset_dir, root)
    cached, plain = FaceDataset(root, augment=True, cache=True), FaceDataset(root, augment=True)
    for i in (1, 5, 1):
        torch.manual_seed(i)
        a = cached[i]
        torch.manual_seed(i)
        b = plain[i]
        for k in ("image", "mask", "landmarks"):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True)
    assert sorted(cached._cached) == [1, 5] and not plain._cached
    item = FaceDataset(root, cache=True)
    first = item[3]
    first["mask"].zero_()  # a consumer writing into an item does not reach the cache
    (root / image_relpath(cached.records[3]["id"])).unlink()  # served from memory from now on
    assert item[3]["mask"].sum() > 0
    with pytest.raises(FileNotFoundError, match="missing"):
        plain[3]


def test_split_holds_out_real_identities_whole(dataset_dir):
    train, held = split_ids(dataset_dir, held_out=0.5, seed=0)
    assert sorted(train + held) == sorted(r["id"] for r in read_meta(dataset_dir)) and not set(train) & set(held)
    ident = {r["id"]: r["identity"] for r in read_meta(dataset_dir)}
    assert not {ident[i] for i in train} & {ident[i] for i in held}
    assert any(i.startswith("real") for i in held) and sum(i.startswith("syn") for i in held) == 2
    assert len(FaceDataset(dataset_dir, ids=held)) == len(held)
    with pytest.raises(ValueError, match="held_out"):
        split_ids(dataset_dir, held_out=1.5)


def test_dataset_bad_inputs(dataset_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        FaceDataset(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (dataset_dir / "meta.jsonl").read_text().splitlines()
    (bad / "meta.jsonl").write_text("\n".join(lines[:2] + ["{not json"] + lines[3:]) + "\n")
    with pytest.raises(DatasetError, match=r"meta.jsonl:3"):
        FaceDataset(bad)
    (bad / "meta.jsonl").write_text("\n".join(lines) + "\n")
    csv = (dataset_dir / "landmarks.csv").read_text().splitlines()
    (bad / "landmarks.csv").write_text("\n".join(line for line in csv if "syn_000002" not in line) + "\n")
    with pytest.raises(DatasetError, match="syn_000002"):
        FaceDataset(bad)
    (bad / "landmarks.csv").write_text("\n".join(csv[:4] + [csv[4].rsplit(",", 3)[0]] + csv[5:]) + "\n")
    with pytest.raises(DatasetError, match=r"landmarks.csv:5: expected a path and 136 values, got 133"):
        FaceDataset(bad)
    (bad / "landmarks.csv").write_text("\n".join(csv) + "\n")
    (bad / "images").mkdir()
    (bad / "masks").mkdir()
    (bad / "images" / "real_000000.png").write_bytes(b"not a png")
    (bad / mask_relpath("real_000000")).write_bytes((dataset_dir / mask_relpath("real_000000")).read_bytes())
    with pytest.raises(DatasetError, match="real_000000.png"):
        FaceDataset(bad)[0]
    with pytest.raises(FileNotFoundError, match="real_000001"):
        FaceDataset(bad)[1]
    with pytest.raises(DatasetError, match="ids"):
        FaceDataset(dataset_dir, ids=["nope"])
    with pytest.raises(ValueError, match="occluded_fraction"):
        SampleGenerator(config=SynthConfig(occluded_fraction=2.0))
    with pytest.raises(FileNotFoundError, match="model_path"):
        SampleGenerator(model_path=tmp_path / "none.npz")
    with pytest.raises(ValueError, match="nothing to generate"):
        generate_dataset(tmp_path / "z", 0, 0)
    assert image_relpath("x") == "images/x.png" and mask_relpath("x") == "masks/x_visible_skin_mask.png"


def test_cli_writes_a_dataset(tmp_path, capsys):
    from occrecon.cli import main

    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--synthetic", "2", "--seed", "5", "--permissive-only",
                 "--occluded-fraction", "1", "--workers", "1"]) == 0
    assert "wrote 2 samples" in capsys.readouterr().out
    meta = read_meta(out)
    lic = {o["licence"] for r in meta for o in r["occluders"]}
    assert all(is_permissive(x) or x == PROCEDURAL_LICENCE for x in lic), lic
    assert main(["data", "synth", "--out", str(out), "--synthetic", "1"]) == 2  # exists: refused
    assert "already holds a dataset" in capsys.readouterr().err


def test_augment_matches_the_numpy_warp():
    from occrecon.data.align import transform_points, warp_affine

    rng = np.random.default_rng(5)
    img = rng.random((S, S, 3)).astype(np.float32)
    mask = np.zeros((S, S), np.float32)
    mask[50:170, 70:150] = 1
    lms = rng.uniform(40, 180, (68, 2)).astype(np.float32)
    for flip in (False, True):
        m = similarity_matrix(0.93, math.radians(7), (S / 2, S / 2), (-6.0, 9.0), flip=flip, width=S)
        out, msk, new = augment(img, mask, lms, m, flip)
        np.testing.assert_allclose(out, warp_affine(img, m, S, antialias=False), atol=1e-4)  # float32 grid
        want = warp_affine(mask, m, S, antialias=False)
        decided = np.abs(want - 0.5) > 1e-4
        np.testing.assert_array_equal(msk[decided], (want >= 0.5)[decided].astype(np.float32))
        np.testing.assert_allclose(new, (transform_points(lms, m)[IBUG_FLIP] if flip else transform_points(lms, m)),
                                   atol=1e-4)
    with pytest.raises(ValueError, match="mask"):
        augment(img, mask[:10], lms, m, False)


# ------------------------------------------------------------------------------------------------ appearance

def _tiny_model() -> MorphableModel:
    """12 vertices, 3 identity, 2 expression and 4 albedo modes (a generic prior: ``albedo_source`` 'model')."""
    rng = np.random.default_rng(7)
    v = 12
    return MorphableModel(rng.normal(size=(v, 3)) * 50, rng.normal(size=(3, v, 3)), rng.normal(size=(2, v, 3)),
                          rng.uniform(0.3, 0.7, (v, 3)), rng.normal(size=(4, v, 3)) * 0.05,
                          np.array([[0, 1, 2], [2, 3, 4]], np.int32), np.full(68, -1), units="mm", name="tiny")


def _light_prior(dc: float = 0.8, sd: float = 0.04, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A full-coefficient SH prior (ambient included): DC ``dc`` per channel, a frontal band-1 term, correlated
    coefficients of spread ~``sd``."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(0, 0.05, 27)
    mean[[0, 9, 18]] = dc
    mean[[2, 11, 20]] += 0.1
    a = rng.normal(size=(27, 27))
    return mean, sd ** 2 * (a @ a.T / 27 + 0.2 * np.eye(27))


def _learned(model, k: int = 5, prior: bool = True, dc: float = 0.8, sd: float = 0.04) -> MorphableModel:
    """``model`` with a learned albedo of ``k`` std-scaled modes and (``prior``) an illumination prior."""
    rng = np.random.default_rng(2)
    v = model.n_vertices
    sh_mean, sh_cov = _light_prior(dc, sd) if prior else (None, None)
    return with_learned_albedo(model, rng.uniform(0.35, 0.65, (v, 3)), rng.normal(0, 0.03, (k, v, 3)),
                               sh_mean=sh_mean, sh_cov=sh_cov, provenance={})


def _draws(model, n: int, config: SynthConfig | None = None, **kw) -> np.ndarray:
    return np.stack([random_theta(np.random.default_rng([5, i]), model, config, **kw) for i in range(n)])


def _assert_moments(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """Sample mean and covariance of ``x (n, d)`` within 5 standard errors of ``mean`` and ``cov`` (the standard
    error of a Gaussian sample covariance entry is sqrt((Σii Σjj + Σij²) / n))."""
    n = len(x)
    sd = np.sqrt(np.diag(cov))
    assert (np.abs(x.mean(0) - mean) < 5 * sd / np.sqrt(n)).all(), np.abs(x.mean(0) - mean) / (sd / np.sqrt(n))
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    err = np.abs(np.cov(x, rowvar=False) - cov) / se
    assert err.max() < 5, err.max()


#: θ of the tiny model drawn by random_theta before the appearance setting existed (seeds 0, 1, 2 with the default
#: config; seed 9 with tex_std 0.5, id_std 0.7 and distance 500): legacy must reproduce them.
LEGACY_THETA = {
    0: [
        0.1257302165031433, -0.13210485875606537, 0.6404226422309875, 0.7302044630050659, 0.0, 50.86797332763672,
        -0.762962818145752, -66.30000305175781, 24.346763610839844, -0.16982631385326385, 0.38032007217407227,
        0.02170904353260994, 0.01215347833931446, -0.1330389380455017, 0.22651633620262146, 0.18069404363632202,
        0.00564073771238327, -0.044609956443309784, -0.05530352145433426, -0.027463549748063087, 0.013211707584559917,
        -0.027283277362585068, -0.1330389380455017, 0.22651633620262146, 0.18069404363632202, 0.00564073771238327,
        -0.044609956443309784, -0.05530352145433426, -0.027463549748063087, 0.013211707584559917, -0.017686916515231133,
        -0.1330389380455017, 0.22651633620262146, 0.18069404363632202, 0.00564073771238327, -0.044609956443309784,
        -0.05530352145433426, -0.027463549748063087, 0.013211707584559917, 5.653401851654053, -3.332357168197632,
        -36.49034881591797
    ],
    1: [
        0.3455841839313507, 0.8216181397438049, 0.3304370641708374, 0.0, 0.6621620655059814, 10.880393028259277,
        -3.800356388092041, -11.155668258666992, 7.018048286437988, -0.02434844896197319, -0.38323062658309937,
        -0.05072992295026779, -0.04238656908273697, 0.2588127553462982, 0.3432580232620239, -0.5422325134277344,
        -0.11334079504013062, -0.01048632524907589, -0.025331424549221992, 0.012818579562008381, 0.013039316050708294,
        0.006418563425540924, 0.2588127553462982, 0.3432580232620239, -0.5422325134277344, -0.11334079504013062,
        -0.01048632524907589, -0.025331424549221992, 0.012818579562008381, 0.013039316050708294, -0.04057702794671059,
        0.2588127553462982, 0.3432580232620239, -0.5422325134277344, -0.11334079504013062, -0.01048632524907589,
        -0.025331424549221992, 0.012818579562008381, 0.013039316050708294, -11.524031639099121, 3.7046926021575928,
        27.668312072753906
    ],
    2: [
        0.18905338644981384, -0.5227484703063965, -0.41306355595588684, 0.5828484296798706, 0.0, 36.37798309326172,
        -3.958996295928955, -44.602256774902344, 19.405418395996094, 0.06973519176244736, 0.4894977807998657,
        0.09585251659154892, 0.025375191122293472, 0.06611420214176178, 0.27144739031791687, -0.20215150713920593,
        0.046990860253572464, 0.1234021708369255, -0.0983065515756607, -0.10376469045877457, -0.0902898833155632,
        0.04124600067734718, 0.06611420214176178, 0.27144739031791687, -0.20215150713920593, 0.046990860253572464,
        0.1234021708369255, -0.0983065515756607, -0.10376469045877457, -0.0902898833155632, 0.05775653198361397,
        0.06611420214176178, 0.27144739031791687, -0.20215150713920593, 0.046990860253572464, 0.1234021708369255,
        -0.0983065515756607, -0.10376469045877457, -0.0902898833155632, -8.942776679992676, 11.533490180969238,
        17.98114585876465
    ],
    'cfg': [
        -0.5619858503341675, 0.16999493539333344, -1.1594418287277222, 0.0, 0.0, 33.16178512573242, -9.19993782043457,
        -39.53990173339844, 20.187469482421875, 0.14902137219905853, -0.19309957325458527, 0.1075124740600586,
        0.043747276067733765, -0.30453407764434814, 0.34518349170684814, -0.018805166706442833, -0.023106815293431282,
        0.04865085706114769, -0.053482308983802795, 0.046056438237428665, -0.07027442753314972, -0.0023528486490249634,
        -0.30453407764434814, 0.34518349170684814, -0.018805166706442833, -0.023106815293431282, 0.04865085706114769,
        -0.053482308983802795, 0.046056438237428665, -0.07027442753314972, 0.047931522130966187, -0.30453407764434814,
        0.34518349170684814, -0.018805166706442833, -0.023106815293431282, 0.04865085706114769, -0.053482308983802795,
        0.046056438237428665, -0.07027442753314972, -1.9480267763137817, 1.5890841484069824, -1.1135051250457764
    ],
}


def test_legacy_theta_is_unchanged():
    model = _tiny_model()
    slices = [model.layout.slice(k) for k in ("id", "exp", "angle", "gamma", "trans")]
    cases = [(seed, SynthConfig(appearance=a), {}) for seed in (0, 1, 2) for a in ("legacy", "auto")]
    cases.append(("cfg", SynthConfig(tex_std=0.5, id_std=0.7, appearance="legacy"), {"distance": 500.0}))
    for key, cfg, kw in cases:
        th = random_theta(np.random.default_rng(9 if key == "cfg" else key), model, cfg, **kw)
        want = np.array(LEGACY_THETA[key], np.float32)
        assert th.dtype == np.float32 and th.shape == want.shape
        for s in slices:  # plain random draws: bit for bit
            np.testing.assert_array_equal(th[s], want[s])
        # the skin-tone shift goes through a pseudo-inverse (LAPACK): equal here, allowed its last bits elsewhere
        np.testing.assert_allclose(th[model.layout.slice("tex")], want[model.layout.slice("tex")], rtol=0, atol=1e-6)


def test_learned_light_draws_have_the_priors_mean_and_covariance():
    model = _learned(_tiny_model())
    mean, cov = model.sh_mean.double().numpy(), model.sh_cov.double().numpy()
    for ambient in (0.8, 0.5):
        th = _draws(model, 4000, ambient=ambient)
        light = th[:, model.layout.slice("gamma")].astype(np.float64)
        full = gamma_to_theta(theta_to_gamma(torch.from_numpy(light), ambient), 0.0).numpy()  # ambient back on DC
        np.testing.assert_allclose(full[:, [0, 9, 18]], light[:, [0, 9, 18]] + ambient, atol=1e-6)
        _assert_moments(full, mean, cov)
    # the default ambient is the renderer's, and the synthetic renderer uses the default
    from occrecon.render.face import DEFAULT_AMBIENT

    np.testing.assert_array_equal(_draws(model, 3), _draws(model, 3, ambient=DEFAULT_AMBIENT))


def test_learned_light_draws_have_a_positive_dc_term():
    model = _learned(_tiny_model(), dc=0.05, sd=0.1)  # a DC term that is often negative in the raw prior
    th = _draws(model, 500, ambient=0.8)
    dc = th[:, model.layout.slice("gamma")][:, [0, 9, 18]] + 0.8
    assert (dc > 0).all() and dc.min() < 0.02
    hopeless = _learned(_tiny_model(), dc=-1.0, sd=0.01)
    with pytest.raises(ValueError, match=r"^model tiny: its illumination prior \(sh_mean / sh_cov\) gave no light "
                                         r"with a positive DC term in every channel in 100 draws$"):
        random_theta(np.random.default_rng(0), hopeless)


def test_learned_albedo_draws_have_the_models_statistics():
    model = _learned(_tiny_model(), k=5)  # 5 modes: the layout follows the model, not 80
    lay = model.layout
    assert lay.size == 3 + 2 + 5 + 3 + 27 + 3
    basis = model.albedo_basis.double().numpy()
    for tex_std, want in ((None, 1.0), (0.5, 0.5)):
        tex = _draws(model, 4000, SynthConfig(tex_std=tex_std))[:, lay.slice("tex")].astype(np.float64)
        _assert_moments(tex, np.zeros(5), np.eye(5) * want ** 2)
        albedo = model.albedo_mean.double().numpy().reshape(-1) + tex @ basis.reshape(5, -1)  # (n, V·3)
        _assert_moments(albedo[:, :6], model.albedo_mean.double().numpy().reshape(-1)[:6],
                        want ** 2 * basis.reshape(5, -1)[:, :6].T @ basis.reshape(5, -1)[:, :6])
    # no global skin-tone shift: the legacy draw of the same model darkens the mean colour by ~17 % on average
    legacy = _draws(model, 400, SynthConfig(appearance="legacy"))[:, lay.slice("tex")].astype(np.float64)
    shift = (legacy @ basis.mean(1)).mean(0) / model.albedo_mean.double().numpy().mean(0)
    assert (shift < -0.1).all(), shift


def test_auto_picks_learned_only_for_a_learned_albedo_with_a_light_prior():
    generic, learned, no_prior = _tiny_model(), _learned(_tiny_model()), _learned(_tiny_model(), prior=False)
    assert [resolve_appearance(m) for m in (generic, learned, no_prior)] == ["legacy", "learned", "legacy"]
    assert resolve_appearance(learned, "legacy") == "legacy" and resolve_appearance(learned, "learned") == "learned"
    for model, used in ((generic, "legacy"), (learned, "learned"), (no_prior, "legacy")):
        np.testing.assert_array_equal(_draws(model, 3), _draws(model, 3, SynthConfig(appearance=used)))
    assert not np.array_equal(_draws(learned, 3), _draws(learned, 3, SynthConfig(appearance="legacy")))


def test_a_bad_appearance_is_one_clear_error(tmp_path, capsys):
    from occrecon.cli import main

    msg = "appearance: expected one of 'auto', 'learned', 'legacy', got 'pretty'"
    with pytest.raises(ValueError, match=f"^{msg}$"):
        SynthConfig(appearance="pretty").validate()
    with pytest.raises(ValueError, match=f"^{msg}$"):
        random_theta(np.random.default_rng(0), _tiny_model(), SynthConfig(appearance="pretty"))
    with pytest.raises(ValueError, match=f"^{msg}$"):
        generate_dataset(tmp_path / "api", 1, 0, appearance="pretty", progress=False)
    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--synthetic", "1", "--appearance", "pretty"]) == 2
    assert capsys.readouterr().err == f"occrecon data synth: error: {msg}\n"
    assert not out.exists() and not (tmp_path / "api").exists()


def test_learned_appearance_with_a_model_without_prior_names_the_model(tmp_path, capsys):
    from occrecon.cli import main

    with pytest.raises(ValueError, match=r"^appearance 'learned': model tiny has no illumination prior \(sh_mean / "
                                         r"sh_cov\) and no learned albedo \(albedo_source 'model'\)"):
        random_theta(np.random.default_rng(0), _tiny_model(), SynthConfig(appearance="learned"))
    with pytest.raises(ValueError, match=r"^appearance 'learned': model tiny has no illumination prior \(sh_mean / "
                                         r"sh_cov\); use"):
        random_theta(np.random.default_rng(0), _learned(_tiny_model(), prior=False), SynthConfig(appearance="learned"))
    out = tmp_path / "cli"
    sfm = assets.shared_dir() / "assets/models/sfm_3448.npz"
    assert main(["data", "synth", "--out", str(out), "--synthetic", "1", "--appearance", "learned"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"occrecon data synth: error: appearance 'learned': model {sfm} has no illumination prior")
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()


def test_synth_with_a_learned_model_end_to_end(ict, tmp_path, capsys):
    from occrecon.cli import main

    path = _learned(ict, k=6).save(tmp_path / "learned.npz")
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--synthetic", "2", "--seed", "3", "--model", str(path),
                 "--appearance", "learned", "--occluded-fraction", "0", "--workers", "1"]) == 0
    assert "wrote 2 samples" in capsys.readouterr().out
    assert "appearance: learned\n" in (out / "README.txt").read_text()
    theta = np.load(out / "theta.npy")
    gen = SampleGenerator(seed=3, config=SynthConfig(occluded_fraction=0.0), model_path=path, sources=[])
    lay = gen.renderer.layout
    assert gen.renderer.model.n_tex == 6 and theta.shape == (2, lay.size) == (2, ict.n_id + ict.n_exp + 6 + 33)
    for i in range(2):
        rng = np.random.default_rng([3, 0, i])  # (seed, SYNTHETIC_STREAM, index)
        np.testing.assert_array_equal(theta[i], random_theta(rng, gen.renderer.model, gen.config, gen.renderer.distance,
                                                             gen.renderer.ambient))
        s = gen.synthetic(i)
        face = s.image[s.region > 0].astype(np.float64) / 255
        assert 0.15 < face.mean() < 0.85 and (face >= 254 / 255).mean() < 0.05  # lit like a face, not blown out
    auto = generate_dataset(tmp_path / "auto", 1, 0, seed=3, model_path=path, progress=False)["root"]
    assert "appearance: learned (auto)\n" in (auto / "README.txt").read_text()
    np.testing.assert_array_equal(np.load(auto / "theta.npy")[0], theta[0])


@pytest.mark.skipif(assets.shared_dir(required=False) is None
                    or not (assets.shared_dir() / "assets/faces/train/meta.jsonl").is_file(),
                    reason="no real-face folder")
def test_data_synth_from_the_face_folder_writes_an_identity_disjoint_split(tmp_path):
    """--faces: training samples from licensed faces of the training identities only, held-out samples from the
    held-out identities (the evaluate-fit split), the split written into meta.jsonl and honoured by split_ids and
    the trainer's dataset, every sample's source recorded."""
    from occrecon.cli import main
    from occrecon.data.faces import identity_split, read_face_folder
    from occrecon.data.dataset import split_ids
    from occrecon.train.data import build_dataset

    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--real", "5", "--held-out-real", "3", "--faces",
                 "--workers", "1", "--seed", "3"]) == 0
    meta = read_meta(out)
    records = {r.id: r for r in read_face_folder(None)}
    train_recs, held_recs = identity_split(list(records.values()), 0.2, 0)
    train_idents = {f"face:{r.identity}" for r in train_recs}
    held_idents = {f"face:{r.identity}" for r in held_recs}
    train = [r for r in meta if r["split"] == "train"]
    held = [r for r in meta if r["split"] == "held_out"]
    assert len(train) == 5 and len(held) == 3
    for r in train:
        face = records[r["source"].split()[0]]
        assert r["identity"] in train_idents and face.image_rights == "licensed" and r["identity"] == f"face:{face.identity}"
    assert {r["identity"] for r in held} <= held_idents
    assert split_ids(out, 0.0, 0) == (sorted(r["id"] for r in train), sorted(r["id"] for r in held))
    assert len(build_dataset([str(out)], augment=False)) == 5  # held-out samples are never trained on
    readme = (out / "README.txt").read_text()
    assert "identity_split(held_out=0.2, seed=0)" in readme and "training face licences" in readme
    # deterministic: the same seed gives the same bytes
    again = tmp_path / "again"
    assert main(["data", "synth", "--out", str(again), "--real", "5", "--held-out-real", "3", "--faces",
                 "--workers", "1", "--seed", "3"]) == 0
    assert (again / "meta.jsonl").read_bytes() == (out / "meta.jsonl").read_bytes()
    assert (again / "images/real_000004.png").read_bytes() == (out / "images/real_000004.png").read_bytes()
    # every real sample says where its truth is known: the landmark face region and the occluder pixels
    from occrecon.data.dataset import FaceDataset, labelled_relpath
    from occrecon.data.synth import real_face_region

    ds = FaceDataset(out, ids=[r["id"] for r in meta])
    for i, r in enumerate(meta):
        known = np.asarray(Image.open(out / labelled_relpath(r["id"]))) > 127
        region = real_face_region(ds.landmarks[i], known.shape) > 0.5
        gt = ds[i]["mask"][0].numpy() > 0.5
        assert (known >= region).all() and (known >= gt).all()  # the region and the visible face are known
        if not r["occluded"]:
            assert (known == region).all()


def test_held_out_samples_need_a_face_folder(tmp_path):
    with pytest.raises(ValueError, match="n_held_out"):
        generate_dataset(tmp_path / "x", 0, 0, n_held_out=2)
