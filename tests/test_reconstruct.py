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
from occrecon.data.align import align_face
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
    for r in report.results:
        stem = r["image"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        crop, m = align_face(read_image(r["image"]), read_five_points(points / f"{stem}.txt"), SIZE)
        np.testing.assert_allclose(np.array(r["crop_transform"]), m)
        row = np.asarray(Image.open(tmp_path / "out" / f"{stem}_overlay.png"))
        assert row.shape == (SIZE, 3 * SIZE, 3)
        assert np.abs(row[:, :SIZE].astype(int) - crop).max() <= 1  # the left panel is the aligned crop
        # constant logit: M = Φ·σ(logit) everywhere, so the occluded share of Φ is 1 − σ(logit)
        assert r["occlusion_fraction"] == pytest.approx(1 - 1 / (1 + np.exp(-logit)), abs=1e-5)
        assert r["occluded"] is True
        assert {k: len(v) for k, v in r["theta"].items()} == dict(model.layout.entries)
        assert not any(any(v) for v in r["theta"].values())  # θ = 0
        v, f = read_obj(tmp_path / "out" / f"{stem}.obj")[:2]
        np.testing.assert_allclose(v, model.mean.reshape(-1, 3).numpy(), rtol=0, atol=1e-4)  # mean shape
        assert len(f) == len(model.triangles)
        assert json.loads((tmp_path / "out" / f"{stem}.json").read_text())["image"] == r["image"]


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
