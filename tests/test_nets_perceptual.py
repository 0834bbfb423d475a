"""occrecon.nets.perceptual / chip: dlib's face-recognition ResNet without dlib, against dlib itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occrecon.assets import shared_dir
from occrecon.nets import DlibFaceNet, chip_transform, face_chip
from occrecon.nets._dlib_reader import DlibFormatError
from occrecon.nets.chip import DLIB_TEMPLATE_INDICES, dlib_template

dlib = pytest.importorskip("dlib")
frm = pytest.importorskip("face_recognition_models")

#: dev photos whose faces are small enough that dlib cuts the chip without its image pyramid
DEV_FACES = ("000002.jpg", "000006.jpg", "000007.jpg", "000033.jpg")


def _faces() -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    out = [(n, np.asarray(Image.open(shared_dir() / "assets" / "faces" / "dev" / n).convert("RGB")).copy())
           for n in DEV_FACES]
    skdata = pytest.importorskip("skimage.data")
    out.append(("astronaut", np.ascontiguousarray(skdata.astronaut())))
    return out


@pytest.fixture(scope="module")
def dlib_cases():
    """(name, image uint8, dlib landmarks as our (68, 2) float, dlib chip uint8, dlib descriptor (128,))."""
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    cases = []
    for name, img in _faces():
        boxes = det(img, 1)
        assert boxes, name
        shape = sp(img, max(boxes, key=lambda r: r.area()))
        chip = dlib.get_face_chip(img, shape, 150, 0.25)
        desc = np.array(rec.compute_face_descriptor(chip))
        lm = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], np.float32)  # pixel-centre convention
        cases.append((name, img, lm, chip, desc))
    return cases


@pytest.fixture(scope="module")
def net():
    torch.set_num_threads(1)
    return DlibFaceNet.from_file()


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def test_descriptor_matches_dlib_on_its_chip(net, dlib_cases):
    chips = torch.cat([_t(c[3]) for c in dlib_cases])
    with torch.no_grad():
        out = net(chips)
    ref = torch.from_numpy(np.stack([c[4] for c in dlib_cases])).float()
    assert (out.embedding - ref).abs().max().item() <= 1e-5
    # different people are far apart, as dlib promises (> 0.6)
    assert torch.cdist(out.embedding, out.embedding)[0, 1:].min() > 0.6
    assert [tuple(f.shape[1:]) for f in out.features] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4),
                                                          (256, 2, 2)]


def test_our_chip_matches_dlib_chip(net, dlib_cases):
    for name, img, lm, chip, desc in dlib_cases:
        with torch.no_grad():
            ours = face_chip(_t(img), torch.from_numpy(lm)[None])
            emb = net(_t(img), torch.from_numpy(lm)[None]).embedding[0]
        mad = (ours[0] - _t(chip)[0]).abs().mean().item()
        assert mad < 3 / 255, name
        assert torch.linalg.norm(emb - torch.from_numpy(desc).float()).item() < 0.05, name


def test_chip_transform_closed_forms():
    n = 150
    tmpl = dlib_template(n, 0.25)
    lm = torch.zeros(1, 68, 2, dtype=torch.float64)
    lm[0, list(DLIB_TEMPLATE_INDICES)] = tmpl + 0.5  # the template itself, in our convention
    # identity up to dlib's half-pixel shift: its rectangle is centred on the image of chip point size/2, while
    # the chip's pixel centres 0..size-1 are centred on (size-1)/2
    assert torch.allclose(chip_transform(lm), torch.tensor([[[1.0, 0, 0.5], [0, 1.0, 0.5]]], dtype=torch.float64),
                          atol=1e-9)
    # landmarks = 2 × (template rotated by 90°) + (300, 40) in dlib coordinates
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([300.0, 40.0], dtype=torch.float64)
    lm[0, list(DLIB_TEMPLATE_INDICES)] = 2 * tmpl @ rot.T + t + 0.5
    A = chip_transform(lm)[0]
    k = (2 * n - 1) / (n - 1)  # dlib's rectangle side is size·scale − 1 over size − 1 pixel steps
    assert torch.allclose(A[:, :2], k * rot, atol=1e-9)
    centre = 2 * rot @ torch.tensor([n / 2, n / 2], dtype=torch.float64) + t + 0.5
    assert torch.allclose(A @ torch.tensor([n / 2, n / 2, 1.0], dtype=torch.float64), centre, atol=1e-9)


def test_face_chip_gradcheck():
    torch.manual_seed(0)
    tmpl = dlib_template(8, 0.25)
    lm = torch.rand(1, 68, 2, dtype=torch.float64) * 10
    lm[0, list(DLIB_TEMPLATE_INDICES)] = 1.3 * tmpl + 2.0 + 0.1 * torch.rand(33, 2, dtype=torch.float64)
    img = torch.rand(1, 2, 14, 13, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda i, l: face_chip(i, l, size=5), (img.requires_grad_(), lm.requires_grad_()))


def test_net_frozen_but_differentiable(net, dlib_cases):
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    name, img, lm, _, _ = dlib_cases[0]
    x = _t(img).requires_grad_()
    l = torch.from_numpy(lm)[None].requires_grad_()
    out = net(x, l)
    (out.embedding.sum() + out.features[2].mean()).backward()
    assert x.grad.abs().sum() > 0 and l.grad.abs().sum() > 0 and math.isfinite(l.grad.abs().sum().item())


def test_bad_inputs(net, tmp_path):
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(1, 1, 150, 150))
    with pytest.raises(ValueError, match="landmarks"):
        net(torch.rand(1, 3, 150, 150), torch.rand(1, 5, 2))
    with pytest.raises(ValueError, match="landmarks"):
        face_chip(torch.rand(2, 3, 50, 50), torch.rand(1, 68, 2))
    with pytest.raises(FileNotFoundError, match="path"):
        DlibFaceNet.from_file(tmp_path / "none.dat")
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x05con_4\x01\x02\x02\x80\x12\x01\x01\x01\x01\x01\x01" + b"\0" * 100)
    with pytest.raises(DlibFormatError, match="truncated"):
        DlibFaceNet.from_file(bad)
    bad.write_bytes(b"not a dlib network")
    with pytest.raises(DlibFormatError, match="no dlib"):
        DlibFaceNet.from_file(bad)
