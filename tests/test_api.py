"""occrecon.api: Reconstructor outputs, occlusion fraction, checkpoint round trip and bad checkpoints, and the
``occrecon evaluate`` command end to end on a tiny dataset folder."""
from __future__ import annotations

import json
import math
import random
import re
import struct
import types
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import occrecon.nets
from occrecon import assets
from occrecon.api import (CHECKPOINT_FORMAT, Reconstructor, ReconOutput, UntrustedCheckpointError, check_device,
                          default_camera, read_checkpoint)
from occrecon.assets import shared_dir
from occrecon.cli import main
from occrecon.morphable import load_model
from occrecon.render import FaceRenderer

SIZE = 64  # crop size of the tiny test checkpoints (the camera framing scales with it)
MODEL_REL = "assets/models/sfm_3448.npz"


@pytest.fixture(scope="module")
def model():
    return load_model(shared_dir() / MODEL_REL)


@pytest.fixture
def nets():
    return occrecon.nets


def _trained_looking(module: torch.nn.Module, seed: int, std: float, batch: tuple) -> torch.nn.Module:
    """Perturb every parameter and update BatchNorm statistics, so that a lost tensor would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
        module.train()
        module(*batch)
    return module.eval()


def _images(n: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _tiny_nets(nets, model):
    x = _images(2, 1)
    enc = _trained_looking(nets.Encoder(model.layout, arch="compact"), 0, 1e-3, (x,))  # default output scales
    unet = _trained_looking(nets.UNet.compact(), 1, 0.05, (x, x.flip(0)))
    return enc, unet


def _write_checkpoint(path, model_path, enc_net, unet_net, layout, **changes):
    """A checkpoint dict in the contract's format, with top-level keys (or ``nets_<key>``) replaced by ``changes``."""
    ckpt = {"format": CHECKPOINT_FORMAT, "stage": "em", "iteration": 3, "config": {"seed": 0},
            "nets": {"model_path": str(model_path), "encoder_arch": "compact",
                     "unet": None if unet_net is None else "compact", "image_size": SIZE,
                     "layout": [[n, s] for n, s in layout.entries], "encoder_scales": dict(enc_net.scales)},
            "encoder": enc_net.state_dict(), "unet": None if unet_net is None else unet_net.state_dict(),
            "optimizers": {}, "schedulers": {},
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": None},
            "metrics": {"loss": 1.5}}
    for key, value in changes.items():
        if key.startswith("nets_"):
            ckpt["nets"][key[5:]] = value
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


class _ZeroEncoder(torch.nn.Module):
    """θ = 0: the mean face, frontal, centred (always rendered)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, image):
        return image.new_zeros(image.shape[0], self.size)




def _renderer(model):
    return FaceRenderer(model, camera=default_camera(SIZE))


def test_outputs_follow_the_contract(nets, model):
    enc, unet = _tiny_nets(nets, model)
    renderer = _renderer(model)
    rec = Reconstructor(model, enc, unet, renderer)
    x = _images(2, 5)
    out = rec(x)
    with torch.no_grad():
        theta = enc(x)
        r = renderer(theta)
        mask = r.region * torch.sigmoid(unet(x, r.image))
    assert torch.equal(out.theta, theta) and torch.equal(out.image, r.image) and torch.equal(out.region, r.region)
    assert torch.equal(out.mask, mask)
    assert torch.equal(out.landmarks.isnan(), r.landmarks.isnan())
    assert out.mask.shape == (2, 1, SIZE, SIZE) and out.landmarks.shape == (2, 68, 2)
    assert float(out.region.sum()) > 100  # the face is rendered
    assert not out.theta.requires_grad and not out.mask.requires_grad


def test_eval_mode_and_training_flag_restored(nets, model):
    enc, unet = _tiny_nets(nets, model)
    rec = Reconstructor(model, enc, unet, _renderer(model))
    rec.train()
    x = _images(2, 6)
    a, b = rec(x), rec(x)
    assert torch.equal(a.mask, b.mask)  # dropout off, BatchNorm statistics frozen
    assert rec.training and rec.unet.training


def test_images_of_any_float_dtype_are_computed_in_the_nets_dtype(nets, model):
    """bfloat16 or float64 crops (an autocast pipeline, a double fit) give the float32 result of the same values."""
    enc, unet = _tiny_nets(nets, model)
    rec = Reconstructor(model, enc, unet, _renderer(model))
    assert rec.dtype == torch.float32
    x = _images(2, 9)
    for dtype in (torch.bfloat16, torch.float64):
        got, want = rec(x.to(dtype)), rec(x.to(dtype).float())
        for name in ("theta", "image", "region", "mask"):
            assert getattr(got, name).dtype == torch.float32 and torch.equal(getattr(got, name), getattr(want, name))


def test_occlusion_fraction_closed_form():
    region = torch.zeros(3, 1, 4, 4)
    region[0, 0, :2] = 1.0  # 8 pixels
    region[1] = 1.0
    mask = region.clone()
    mask[0, 0, 0, :3] = 0.0  # 3 of 8 rejected
    mask[0, 0, 1, 0] = 0.5  # half a pixel more
    mask[1] *= 0.25
    out = ReconOutput(torch.zeros(3, 1), torch.zeros(3, 3, 4, 4), region, mask, torch.zeros(3, 68, 2))
    frac = out.occlusion_fraction
    assert float(frac[0]) == pytest.approx(3.5 / 8)
    assert float(frac[1]) == pytest.approx(0.75)
    assert math.isnan(float(frac[2]))  # nothing rendered


def test_no_unet_mask_is_region_and_is_occluded(model, constant_logit_unet):
    size = model.layout.size
    x = _images(2, 7)
    plain = Reconstructor(model, _ZeroEncoder(size), None, _renderer(model))
    out = plain(x)
    assert torch.equal(out.mask, out.region)
    assert torch.equal(out.occlusion_fraction, torch.zeros(2, dtype=out.mask.dtype))
    assert not plain.is_occluded(x).any()
    # a UNet with a constant logit c keeps sigmoid(c) of Φ: occlusion fraction 1 - sigmoid(c) = 0.3
    logit = math.log(0.7 / 0.3)
    rec = Reconstructor(model, _ZeroEncoder(size), constant_logit_unet(logit), _renderer(model))
    np.testing.assert_allclose(rec(x).occlusion_fraction.numpy(), 0.3, rtol=1e-5)
    assert rec.is_occluded(x, threshold=0.1).tolist() == [True, True]
    assert rec.is_occluded(x, threshold=0.5).tolist() == [False, False]
    with pytest.raises(ValueError, match="threshold"):
        rec.is_occluded(x, threshold=1.0)


def test_bad_images_and_arguments(model):
    rec = Reconstructor(model, _ZeroEncoder(model.layout.size), None, _renderer(model))
    with pytest.raises(ValueError, match="images"):
        rec(torch.rand(1, 3, SIZE, SIZE + 1))
    with pytest.raises(ValueError, match="images"):
        rec(torch.rand(1, 1, SIZE, SIZE))
    with pytest.raises(TypeError, match="images"):
        rec((torch.rand(1, 3, SIZE, SIZE) * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="images"):
        rec(torch.rand(1, 3, SIZE, SIZE) * 255)
    with pytest.raises(RuntimeError, match="encoder"):
        Reconstructor(model, _ZeroEncoder(5), None, _renderer(model))(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(TypeError, match="encoder"):
        Reconstructor(model, "resnet", None, _renderer(model))
    with pytest.raises(ValueError, match="renderer"):
        Reconstructor(model, _ZeroEncoder(5), None, FaceRenderer(load_model(shared_dir() / MODEL_REL)))


def test_checkpoint_round_trip(nets, model, tmp_path):
    enc, unet = _tiny_nets(nets, model)
    expected = Reconstructor(model, enc, unet, _renderer(model))(_images(2, 8))
    path = _write_checkpoint(tmp_path / "em.pt", shared_dir() / MODEL_REL, enc, unet, model.layout)
    loaded = Reconstructor.from_checkpoint(path)
    got = loaded(_images(2, 8))
    for a, b, name in zip(expected[:5], got[:5], ReconOutput._fields[:5]):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), name
    assert loaded.image_size == (SIZE, SIZE)
    # a relative model path is found in the shared assets; model_path overrides the stored one
    rel = _write_checkpoint(tmp_path / "rel.pt", MODEL_REL, enc, None, model.layout)
    assert Reconstructor.from_checkpoint(rel).unet is None
    # the training config's "shared:" prefix and its renderer switch
    pre = _write_checkpoint(tmp_path / "pre.pt", "shared:" + MODEL_REL, enc, None, model.layout,
                            config={"model": {"use_antialias": True}})
    assert Reconstructor.from_checkpoint(pre).renderer.use_antialias
    assert not Reconstructor.from_checkpoint(rel).renderer.use_antialias
    moved = _write_checkpoint(tmp_path / "moved.pt", "/nowhere/sfm.npz", enc, None, model.layout)
    with pytest.raises(FileNotFoundError, match="model_path"):
        Reconstructor.from_checkpoint(moved)
    assert Reconstructor.from_checkpoint(moved, model_path=shared_dir() / MODEL_REL).layout == model.layout


@pytest.mark.parametrize("changes, match", [
    ({"format": "occrecon-checkpoint-v0"}, "'format'"),
    ({"encoder": None}, "'encoder'"),
    ({"nets_layout": [["id", 80], ["exp", 64], ["tex", 80], ["angle", 3], ["gamma", 27], ["trans", 3]]}, "layout"),
    ({"nets_layout": "id=63"}, "nets.layout"),
    ({"nets_unet": "huge"}, "nets.unet"),
    ({"unet": None}, "'unet'"),
])
def test_bad_checkpoints(nets, model, tmp_path, changes, match):
    enc, unet = _tiny_nets(nets, model)
    path = _write_checkpoint(tmp_path / "bad.pt", shared_dir() / MODEL_REL, enc, unet, model.layout, **changes)
    with pytest.raises(ValueError, match=match):
        Reconstructor.from_checkpoint(path)


def test_bad_checkpoint_files(nets, model, tmp_path):
    enc, unet = _tiny_nets(nets, model)
    path = tmp_path / "c.pt"
    # missing keys, named
    _write_checkpoint(path, shared_dir() / MODEL_REL, enc, unet, model.layout)
    ckpt = torch.load(path, weights_only=False)
    del ckpt["nets"]["encoder_arch"], ckpt["stage"]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"'stage'"):
        Reconstructor.from_checkpoint(path)
    ckpt["stage"] = "em"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="nets.encoder_arch"):
        Reconstructor.from_checkpoint(path)
    # weights of another architecture
    other = nets.UNet.compact()
    state = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.dim() else v for k, v in other.state_dict().items()}
    _write_checkpoint(path, shared_dir() / MODEL_REL, enc, unet, model.layout, unet=state)
    with pytest.raises(ValueError, match="'unet' weights do not fit"):
        Reconstructor.from_checkpoint(path)
    # not a checkpoint at all / an arbitrary pickled object
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        Reconstructor.from_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "payload": types.SimpleNamespace(a=1)}, tmp_path / "obj.pt")
    with pytest.raises(ValueError, match="trusted=True"):
        Reconstructor.from_checkpoint(tmp_path / "obj.pt")
    with pytest.raises(FileNotFoundError, match="path"):
        Reconstructor.from_checkpoint(tmp_path / "absent.pt")


def _flip_a_weight_bit(data: bytes, path) -> bytes:
    """``data`` (a checkpoint) with one bit flipped in the middle of its largest tensor's bytes."""
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    pos = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    out = bytearray(data)
    out[pos] ^= 0x10
    return bytes(out)


def test_damaged_checkpoint_files_are_named(nets, model, tmp_path):
    enc, unet = _tiny_nets(nets, model)
    good = _write_checkpoint(tmp_path / "good.pt", shared_dir() / MODEL_REL, enc, unet, model.layout)
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "empty file"),
        "text.pt": (b"hello world\n", "not a torch checkpoint"),  # was a bare KeyError
        "yaml.pt": (b"format: occrecon-checkpoint-v1\n", "not a torch checkpoint"),  # was "pass trusted=True"
        "latin1.pt": ("r\u00e9sum\u00e9 \u00e9t\u00e9\n".encode("latin-1"), "not a torch checkpoint"),
        "truncated.pt": (data[: len(data) // 2], "truncated"),
        "flipped.pt": (_flip_a_weight_bit(data, good), "CRC-32"),  # loaded silently, with a changed weight
        "bad_pickle.pt": (b"\x80\x02]q\x00.", "not a readable torch checkpoint"),
    }
    for name, (content, phrase) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            read_checkpoint(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and phrase in msg and "\n" not in msg, (name, msg)
        assert "trusted" not in msg, (name, msg)  # damaged data is no reason to unpickle it fully
        with pytest.raises(ValueError, match=re.escape(str(path))):
            Reconstructor.from_checkpoint(path, trusted=True)
    with pytest.raises(IsADirectoryError, match=f"{re.escape(str(tmp_path))} is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        read_checkpoint(tmp_path / "absent.pt")
    assert read_checkpoint(good)["stage"] == "em"


@pytest.mark.parametrize("net", ["encoder", "unet"])
def test_nan_weights_are_refused_naming_the_tensor(nets, model, tmp_path, net):
    enc, unet = _tiny_nets(nets, model)
    state = (enc if net == "encoder" else unet).state_dict()
    key = [k for k, v in state.items() if v.is_floating_point() and v.numel() > 4][-1]
    state[key] = state[key].clone()
    state[key].view(-1)[[1, 3]] = torch.tensor([float("nan"), float("inf")])
    path = _write_checkpoint(tmp_path / "nan.pt", shared_dir() / MODEL_REL, enc, unet, model.layout, **{net: state})
    with pytest.raises(ValueError, match=re.escape(f"{path}: '{net}' tensor '{key}' holds 2 NaN/Inf value(s)")):
        Reconstructor.from_checkpoint(path)


def test_refused_checkpoint_names_the_class_and_the_way_to_allow_it(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": types.SimpleNamespace(a=1)}, path)
    with pytest.raises(UntrustedCheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot be read as a plain checkpoint (it refers to types.SimpleNamespace")
    assert msg.endswith("pass trusted=True (a full unpickle can run code)")
    assert str(info.value.with_remedy("pass --trusted")).endswith("pass --trusted (a full unpickle can run code)")
    with pytest.raises(ValueError, match="key\\(s\\) \\['stage', 'nets', 'encoder', 'unet'\\] missing"):
        read_checkpoint(path, trusted=True)  # read when trusted: then the checkpoint's own checks


def test_devices_that_are_not_there(nets, model, tmp_path):
    enc, unet = _tiny_nets(nets, model)
    path = _write_checkpoint(tmp_path / "em.pt", shared_dir() / MODEL_REL, enc, unet, model.layout)
    with pytest.raises(ValueError, match="^device cuda:99: "):
        Reconstructor.from_checkpoint(path, device="cuda:99")
    with pytest.raises(ValueError, match="^device: 'gpu' is not a torch device"):
        Reconstructor.for_model(model, device="gpu")
    with pytest.raises(ValueError, match="^--device cuda:99: "):
        check_device("cuda:99", "--device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device cuda: no CUDA device is available on this machine$"):
            Reconstructor.from_checkpoint(path, device="cuda")
    assert check_device("cpu") == torch.device("cpu")


def _write_dataset(root, n: int = 4, size: int = 80):
    """A tiny dataset folder: random images, GT masks with a rectangular occluder on the occluded half."""
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines = []
    for i in range(n):
        sid = f"s{i:03d}"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{sid}.png")
        m = np.full((size, size), 255, np.uint8)
        occluded = i % 2 == 1
        if occluded:
            m[size // 3: size // 2, :] = 0
        Image.fromarray(m).save(root / "masks" / f"{sid}_visible_skin_mask.png")
        lines.append(json.dumps({"id": sid, "kind": "synthetic", "occluded": occluded, "seed": i}))
    (root / "meta.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_evaluate_command_end_to_end(nets, model, tmp_path, capsys):
    data = _write_dataset(tmp_path / "data")
    enc, unet = _tiny_nets(nets, model)
    em = _write_checkpoint(tmp_path / "em.pt", shared_dir() / MODEL_REL, enc, unet, model.layout)
    init = _write_checkpoint(tmp_path / "init.pt", shared_dir() / MODEL_REL, enc, None, model.layout, stage="init")
    checkpoints = ["--checkpoint", f"Proposed={em}", "--checkpoint", f"MoFA={init}",
                   "--checkpoint", f"Pretrained={init}:pseudo"]
    out = tmp_path / "res" / "results.json"
    assert main(["evaluate", "--data", str(data), *checkpoints, "--out", str(out), "--batch-size", "3"]) == 0
    text = capsys.readouterr().out
    names = [c.split("=")[0] for c in checkpoints[1::2]]
    for name in names:
        assert name in text
    assert "Unoccluded" in text and "Occluded" in text and "Overall" in text and "RMSE" in text
    result = json.loads(out.read_text())
    assert result["ids"] == ["s000", "s001", "s002", "s003"] and result["occluded"] == [False, True, False, True]
    for name in names:
        per = result["methods"][name]["per_image"]
        assert all(len(v) == 4 for v in per.values())
        assert all(v is not None and math.isfinite(v) for v in per["rmse"] + per["acc"] + per["soft_f1"])
        summary = result["methods"][name]["summary"]
        assert summary["Occluded"]["rmse"]["count"] == 2 and summary["Overall"]["acc"]["count"] == 4
    # the stand-alone MoFA model's mask is Φ: every face pixel kept, so TPR = 1 and the occlusion fraction is 0
    assert result["methods"]["MoFA"]["per_image"]["tpr"] == [1.0] * 4
    assert result["methods"]["MoFA"]["per_image"]["occlusion_fraction"] == [0.0] * 4
    assert result["methods"]["Pretrained"]["segmentation"] == "pseudo"
    assert result["methods"]["Pretrained"]["per_image"]["rmse"] == result["methods"]["MoFA"]["per_image"]["rmse"]
    assert main(["evaluate", "--data", str(data), "--checkpoint", f"Proposed={em}", "--markdown"]) == 0
    assert "| Method | Unoccluded ACC |" in capsys.readouterr().out
    out2 = tmp_path / "paired.json"
    assert main(["evaluate", "--data", str(data), *checkpoints, "--paired-with", "Pretrained", "--out", str(out2)]) == 0
    assert "Paired with Pretrained" in capsys.readouterr().out
    paired = json.loads(out2.read_text())["paired_with"]
    assert paired["base"] == "Pretrained" and sorted(paired["methods"]) == ["MoFA", "Proposed"]
    assert paired["methods"]["MoFA"]["Occluded"]["rmse"] == {"mean": 0.0, "sem": 0.0, "count": 2, "better": 0}
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data), *checkpoints, "--paired-with", "Baseline"]) == 2
    assert capsys.readouterr().err == ("occrecon evaluate: error: --paired-with 'Baseline' is not one of the methods: "
                                       "Proposed, MoFA, Pretrained\n")


# ------------------------------------------------------------------------------------------ fitting
@pytest.fixture(scope="module")
def rendered_faces():
    """Two ICT faces rendered at 96² from a known θ over grey, with their landmarks."""
    from occrecon.fit import fit_preset

    ict = load_model(shared_dir() / "assets" / "models" / "ict_narrowface.npz")
    lay = ict.layout
    th = lay.zeros(2)
    th[:, lay.slice("angle")] = torch.tensor([[0.1, 0.25, 0.0], [-0.05, -0.15, 0.08]])
    th[:, lay.slice("id")] = torch.randn(2, ict.n_id, generator=torch.Generator().manual_seed(0)) * 0.3
    r = FaceRenderer(ict, camera=default_camera(96))
    with torch.no_grad():
        out = r(th, torch.full((2, 3, 96, 96), 0.4))
    return ict, th, out.image.clamp(0, 1), out.landmarks, fit_preset("fast").replace(image_size=None)


def test_fitting_only_reconstructor(rendered_faces):
    ict, th, images, lms, cfg = rendered_faces
    rec = Reconstructor.for_model(ict, image_size=96, fit=cfg)
    assert rec.encoder is None and rec.fit is cfg
    out = rec(images, lms)
    assert out.fit is not None and not out.fit.diverged.any()
    assert (out.landmarks - lms).norm(dim=-1).mean(1).max().item() < 0.5
    lay = ict.layout
    assert (out.theta[:, lay.slice("angle")] - th[:, lay.slice("angle")]).abs().max().item() < math.radians(1.0)
    assert out.mask.shape == out.region.shape == (2, 1, 96, 96) and (out.mask <= out.region).all()
    assert out.occlusion_fraction.max().item() < 0.05  # a clean render: (nearly) nothing rejected
    assert not rec.is_occluded(images, landmarks=lms).any()
    with pytest.raises(ValueError, match="landmarks"):
        rec(images)
    with pytest.raises(ValueError, match="fit"):
        rec(images, lms, fit=None)
    assert Reconstructor(ict, None).fit.rounds == 2  # a fitting-only reconstructor defaults to the fast preset


def test_fitting_only_reconstructor_takes_float64_crops(rendered_faces):
    ict, th, images, lms, cfg = rendered_faces
    rec = Reconstructor.for_model(ict, image_size=96, fit=cfg.replace(rounds=1, steps=2))
    got, want = rec(images.double(), lms.double()), rec(images, lms)
    assert got.theta.dtype == torch.float32 and torch.equal(got.theta, want.theta)


def test_encoder_prediction_refined_by_the_fit(rendered_faces, nets):
    ict, th, images, lms, cfg = rendered_faces
    enc = nets.Encoder(ict.layout, arch="compact")  # zero head: θ = 0 (the mean face, frontal)
    rec = Reconstructor(ict, enc, None, FaceRenderer(ict, camera=default_camera(96)), fit=cfg)
    fitted = rec(images, lms)
    plain = rec(images, fit=None)
    assert plain.fit is None and torch.equal(plain.theta, torch.zeros_like(plain.theta))
    assert fitted.fit is not None
    err = lambda o: (o.landmarks - lms).norm(dim=-1).mean().item()  # noqa: E731
    assert err(fitted) < 0.5 < 5 * 0.5 < err(plain)
    no_landmarks = rec(images, None)  # photometric refinement only: still a valid result
    assert torch.isfinite(no_landmarks.theta).all() and no_landmarks.fit.landmark_fit is None
    with pytest.raises(ValueError, match="fit_mask"):
        Reconstructor(ict, enc, None, fit_mask="unet")


@pytest.mark.skipif(assets.shared_dir(required=False) is None, reason="shared assets not present")
def test_reconstruct_a_photo_in_memory_every_face_in_photo_coordinates():
    """Two people side by side: two results, best first, each with photo-frame maps and landmarks that land on
    the detected ones; a list of photos is batched; a photo without a face gives an empty list."""
    from occrecon.data.io import read_image

    (a, _), (b, _) = assets.dev_faces()[:2]
    ia, ib = read_image(a), read_image(b)
    h = min(ia.shape[0], ib.shape[0])
    photo = np.concatenate([ia[:h], ib[:h]], axis=1)
    rec = Reconstructor.for_model(assets.shared_dir() / "assets/models/ict_narrowface.npz", image_size=96)
    faces = rec.reconstruct(photo)
    assert len(faces) == 2
    for f in faces:
        assert f.render.shape == photo.shape and f.region.shape == f.mask.shape == photo.shape[:2]
        assert (f.mask <= f.region + 1e-6).all() and f.region.sum() > 500
        iod = np.linalg.norm(f.landmarks_detected[36] - f.landmarks_detected[45])
        err = np.nanmean(np.linalg.norm(f.landmarks_fitted - f.landmarks_detected, axis=1))
        assert err < 0.1 * iod  # the fitted landmarks, mapped back, sit on the detected ones
        ys, xs = np.nonzero(f.region > 0.5)
        centre = np.array([xs.mean(), ys.mean()])
        assert np.linalg.norm(centre - f.landmarks_detected.mean(0)) < iod  # Φ pasted where the face is
        assert np.allclose(f.vertices_photo[:, :2].mean(0), [f.landmarks_detected[:, 0].mean(),
                                                              h - f.landmarks_detected[:, 1].mean()], atol=iod)
        assert f.overlay(photo).shape == (h, 3 * photo.shape[1], 3)
    sides = sorted(f.landmarks_detected[:, 0].mean() < ia.shape[1] for f in faces)
    assert sides == [False, True]
    as_tensor = torch.from_numpy(ia[:h].copy()).permute(2, 0, 1).float() / 255
    both = rec.reconstruct([photo, as_tensor, np.full((64, 64, 3), 128, np.uint8)])
    assert [len(x) for x in both] == [2, 1, 0]
    np.testing.assert_allclose(both[0][0].theta, faces[0].theta, atol=1e-5)  # batching changes nothing
    with pytest.raises(ValueError, match=r"photos\[1\]"):
        rec.reconstruct([photo, np.zeros((5, 5, 2), np.uint8)])


def test_the_bundled_checkpoint_needs_no_shared_folder():
    """Its face model lives inside the package (package: path, the learned albedo and light prior it was trained
    with), with the geometry of the shared ICT narrow face, bit for bit."""
    from occrecon.checkpoint import BUNDLED_CHECKPOINT, load_spec_model, read_checkpoint
    from occrecon.assets import package_dir

    nets = read_checkpoint(BUNDLED_CHECKPOINT)["nets"]
    assert nets["model_path"] == "package:models/ict_narrowface_learned.npz" and nets.get("albedo", "model") == "model"
    model, src = load_spec_model(nets, BUNDLED_CHECKPOINT)
    assert package_dir() in src.resolve().parents and model.albedo_source == "learned"
    assert model.sh_mean is not None
    shared = assets.shared_dir(required=False)
    if shared is not None:
        from occrecon.morphable import load_model

        ref = load_model(shared / "assets/models/ict_narrowface.npz")
        for key in ("mean", "id_basis", "exp_basis", "triangles", "landmarks"):
            assert torch.equal(getattr(model, key), getattr(ref, key)), key
    with pytest.raises(ValueError, match="nets.albedo"):
        load_spec_model({**nets, "albedo": "learned?"}, BUNDLED_CHECKPOINT)
