"""``occrecon reconstruct``: photos → aligned crops → Reconstructor → overlay PNG, OBJ, JSON; failures reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import occrecon.nets as nets
from occrecon import assets
from occrecon.api import Reconstructor, default_camera
from occrecon.cli import main
from occrecon.data.align import align_face, invert_affine, transform_points, warp_affine
from occrecon.data.io import read_image
from occrecon.morphable import load_model
from occrecon.morphable.export import read_obj
from occrecon.data.io import read_five_points
from occrecon.cli.reconstruct import collect_images, reconstruct_photos
from occrecon.render import FaceRenderer

SIZE = 64
pytestmark = pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")




@pytest.fixture(scope="module")
def model():
    return load_model(assets.shared_dir() / "assets" / "models" / "sfm_3448.npz")


@pytest.fixture
def photos(tmp_path):
    """Two dev faces with their 5-point files, a blank image (no face) and a corrupt file."""
    folder, points = tmp_path / "photos", tmp_path / "points"
    folder.mkdir()
    points.mkdir()
    for img, pts in assets.dev_faces()[:2]:
        (folder / img.name).write_bytes(img.read_bytes())
        (points / f"{img.stem}.txt").write_text(pts.read_text())
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(folder / "blank.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder, points


def test_reconstruct_photos_writes_consistent_outputs(model, photos, tmp_path, constant_logit_unet):
    folder, points = photos
    logit = 0.8
    encoder = nets.Encoder(model.layout, arch="compact")  # zero head: θ = 0, the mean face
    rec = Reconstructor(model, encoder, constant_logit_unet(logit), FaceRenderer(model, camera=default_camera(SIZE)))
    paths = collect_images([folder])
    assert [p.name for p in paths] == sorted(p.name for p in folder.iterdir())
    report = reconstruct_photos(paths, rec, tmp_path / "out", points_dir=points, batch_size=1)

    assert sorted(r["landmarks_from"] for r in report.results) == ["5-point file", "5-point file"]
    reasons = dict(report.failures)
    assert reasons[str(folder / "blank.png")] == "no face found"
    assert reasons[str(folder / "corrupt.jpg")].startswith("unreadable")
    with torch.no_grad():
        zero = rec.renderer(model.layout.zeros(1))  # θ = 0: the independent reference of every output
    sig = 1 / (1 + np.exp(-logit))
    for r in report.results:
        stem = r["image"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        photo = read_image(r["image"])
        h, w = photo.shape[:2]
        crop, m = align_face(photo, read_five_points(points / f"{stem}.txt"), SIZE)
        np.testing.assert_allclose(np.array(r["crop_transform"]), m)
        inv = invert_affine(m)
        row = np.asarray(Image.open(tmp_path / "out" / f"{stem}_overlay.png"))
        assert row.shape == (h, 3 * w, 3)  # at the photo's resolution
        assert np.array_equal(row[:, :w], photo)  # the left panel is the photo
        # constant logit: M = Φ·σ(logit) everywhere, so the occluded share of Φ is 1 − σ(logit)
        assert r["occlusion_fraction"] == pytest.approx(1 - sig, abs=1e-5)
        assert r["occluded"] is True
        phi_photo = warp_affine(zero.region[0, 0].numpy(), inv, (h, w), antialias=False)
        mask_png = np.asarray(Image.open(tmp_path / "out" / f"{stem}_mask.png")).astype(float) / 255
        assert mask_png.shape == (h, w) and np.abs(mask_png - sig * phi_photo).max() <= 1 / 255 + 1e-6
        rgba = np.asarray(Image.open(tmp_path / "out" / f"{stem}_render.png")).astype(float) / 255
        assert rgba.shape == (h, w, 4) and np.abs(rgba[..., 3] - phi_photo).max() <= 1 / 255 + 1e-6
        assert {k: len(v) for k, v in r["theta"].items()} == dict(model.layout.entries)
        assert not any(any(v) for v in r["theta"].values())  # θ = 0
        # fitted landmarks: the renderer's crop landmarks mapped back into the photo
        lm = transform_points(zero.landmarks[0].double().numpy(), inv)
        fitted = np.array([[np.nan if v is None else v for v in p] for p in r["landmarks_fitted"]])
        np.testing.assert_allclose(fitted, lm, atol=1e-3)
        # posed mesh in photo space: x, H - y over the photo at the projected vertices
        v, f = read_obj(tmp_path / "out" / f"{stem}.obj")[:2]
        proj = transform_points(rec.renderer.camera.project(zero.vertices[0].double()).numpy(), inv)
        np.testing.assert_allclose(v[:, 0], proj[:, 0], atol=1e-3)
        np.testing.assert_allclose(v[:, 1], h - proj[:, 1], atol=1e-3)
        assert len(f) == len(model.triangles)
        pv = read_obj(tmp_path / "out" / f"{stem}.obj")[0]
        assert (tmp_path / "out" / f"{stem}.ply").read_text().startswith("ply") and pv.shape == v.shape
        assert json.loads((tmp_path / "out" / f"{stem}.json").read_text())["image"] == r["image"]
    # camera space: the renderer's posed vertices
    report = reconstruct_photos(paths[:1], rec, tmp_path / "cam", points_dir=points, mesh_space="camera")
    stem = report.results[0]["stem"]
    v = read_obj(tmp_path / "cam" / f"{stem}.obj")[0]
    np.testing.assert_allclose(v, zero.vertices[0].numpy(), atol=1e-4)


def test_reconstruct_cli_with_a_checkpoint(model, photos, tmp_path, capsys):
    folder, points = photos
    encoder = nets.Encoder(model.layout, arch="compact")
    unet = nets.UNet.compact()
    ckpt = {"format": "occrecon-checkpoint-v1", "stage": "em", "iteration": 0, "config": {},
            "nets": {"model_path": "shared:assets/models/sfm_3448.npz", "encoder_arch": "compact", "unet": "compact",
                     "image_size": SIZE, "layout": [list(e) for e in model.layout.entries],
                     "encoder_scales": dict(encoder.scales)},
            "encoder": encoder.state_dict(), "unet": unet.state_dict(), "optimizers": {}, "schedulers": {},
            "rng": {}, "metrics": {}}
    torch.save(ckpt, tmp_path / "em.pt")
    rc = main(["reconstruct", str(folder), "--checkpoint", str(tmp_path / "em.pt"), "--out", str(tmp_path / "cli"),
               "--points-dir", str(points)])
    out = capsys.readouterr().out
    assert rc == 1  # some photos failed: exit status 1 (documented in occrecon.cli)
    assert "2 reconstructed, 2 not" in out and "NOT RECONSTRUCTED" in out and "no face found" in out
    assert len(list((tmp_path / "cli").glob("*_overlay.png"))) == 2


def test_bad_arguments(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="images"):
        collect_images([tmp_path / "missing"])
    (tmp_path / "p.txt").write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="expected 5 lines"):
        read_five_points(tmp_path / "p.txt")
    rec = Reconstructor(model, nets.Encoder(model.layout, arch="compact"), None,
                        FaceRenderer(model, camera=default_camera(SIZE)))
    with pytest.raises(ValueError, match="batch_size"):
        reconstruct_photos([], rec, tmp_path, batch_size=0)


def test_checkpoint_export_is_inference_only_and_equivalent(model, tmp_path, capsys):
    from occrecon.api import export_checkpoint

    encoder = nets.Encoder(model.layout, arch="compact")
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 1e-3)
    unet = nets.UNet.compact()
    opt = torch.optim.Adam(list(encoder.parameters()) + list(unet.parameters()))
    loss = sum(p.square().sum() for p in unet.parameters())
    loss.backward()
    opt.step()  # a real optimiser state (Adam moments) to be dropped
    ckpt = {"format": "occrecon-checkpoint-v1", "stage": "em", "iteration": 7, "config": {"seed": 0},
            "nets": {"model_path": "shared:assets/models/sfm_3448.npz", "encoder_arch": "compact", "unet": "compact",
                     "image_size": SIZE, "layout": [list(e) for e in model.layout.entries],
                     "encoder_scales": dict(encoder.scales)},
            "encoder": encoder.state_dict(), "unet": unet.state_dict(), "optimizers": {"all": opt.state_dict()},
            "schedulers": {}, "rng": {"torch": torch.get_rng_state()}, "metrics": {"loss": 1.0}}
    torch.save(ckpt, tmp_path / "train.pt")
    assert main(["checkpoint", "export", str(tmp_path / "train.pt"), str(tmp_path / "slim.pt")]) == 0
    assert "inference only" in capsys.readouterr().out
    slim = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert slim["optimizers"] == {} and slim["rng"] == {} and slim["iteration"] == 7
    assert (tmp_path / "slim.pt").stat().st_size < 0.6 * (tmp_path / "train.pt").stat().st_size
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    a = Reconstructor.from_checkpoint(tmp_path / "train.pt")(images)
    b = Reconstructor.from_checkpoint(tmp_path / "slim.pt")(images)
    for x, y in zip(a[:5], b[:5]):
        assert torch.equal(x.nan_to_num(), y.nan_to_num())
    with pytest.raises(ValueError, match="format"):
        torch.save({"format": "other"}, tmp_path / "bad.pt")
        export_checkpoint(tmp_path / "bad.pt", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_reconstruct_cli_fitting_without_a_checkpoint(photos, tmp_path, capsys):
    folder, points = photos
    model = assets.shared_dir() / "assets" / "models" / "ict_narrowface.npz"
    rc = main(["reconstruct", str(folder), "--model", str(model), "--size", "96", "--out", str(tmp_path / "fit"),
               "--points-dir", str(points)])
    out = capsys.readouterr().out
    assert rc == 1 and "fitting only" in out and "2 reconstructed, 2 not" in out
    for meta in (json.loads(p.read_text()) for p in (tmp_path / "fit").glob("*.json")):
        assert meta["landmarks_from"] == "5-point file + dlib on crop"
        assert meta["fit"]["diverged"] is False and meta["fit"]["landmark_error_px"] < 5.0
        assert any(abs(v) > 0 for v in meta["theta"]["angle"] + meta["theta"]["id"])  # fitted, not the mean face


def test_reconstruct_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jpg" in err
    if not torch.cuda.is_available():
        assert main(["reconstruct", str(tmp_path), "--device", "cuda"]) == 2
        assert "--device cuda" in capsys.readouterr().err


def test_reconstruct_cli_every_face_of_a_two_face_photo(tmp_path, capsys):
    """Two people side by side in one photo (no 5-point file): each is found, aligned and reconstructed, with its
    own outputs; the crop transforms place them in the left and the right half of the photo."""
    from occrecon.data.io import read_image
    from occrecon.data.prepare import prepare_faces

    (a, _), (b, _) = assets.dev_faces()[:2]
    ia, ib = read_image(a), read_image(b)
    h = min(ia.shape[0], ib.shape[0])
    photo = np.concatenate([ia[:h], ib[:h]], axis=1)
    folder = tmp_path / "two"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "pair.png")
    faces, bad = prepare_faces(photo, 96)
    assert len(faces) == 2 and not bad
    model = assets.shared_dir() / "assets" / "models" / "ict_narrowface.npz"
    rc = main(["reconstruct", str(folder), "--model", str(model), "--size", "96", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "2 reconstructed, 0 not" in out and "pair.png #1" in out
    metas = sorted((json.loads(p.read_text()) for p in (tmp_path / "out").glob("pair_face*.json")),
                   key=lambda m: m["face"])
    assert [m["face"] for m in metas] == [0, 1] and all(m["faces_in_photo"] == 2 for m in metas)
    centres = []
    for m in metas:
        t = np.asarray(m["crop_transform"])  # photo -> crop; the crop centre back in the photo
        centres.append(np.linalg.solve(t[:, :2], np.array([48.0, 48.0]) - t[:, 2])[0])
    split = ia.shape[1]
    assert sorted(c < split for c in centres) == [False, True]  # one face in each half
    assert (tmp_path / "out" / "pair_face0_overlay.png").is_file() and (tmp_path / "out" / "pair_face1.obj").is_file()
