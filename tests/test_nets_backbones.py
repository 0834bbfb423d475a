"""occrecon.nets.backbones: load_backbone round trips, key layouts, clear errors."""
from __future__ import annotations

import pytest
import torch

from occrecon.nets import DlibFaceNet, PerceptualOutput, load_backbone
from occrecon.nets.backbones import BackboneWeightsError
from occrecon.nets.face_resnets import IResNet50, VGGFace2ResNet50


def _randomise(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Random values for every state entry (incl. BN running statistics), returned as a state_dict."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            r = torch.rand(v.shape, generator=g)
            v = 0.5 + r if k.endswith("running_var") else 0.05 * (r - 0.5)
        sd[k] = v.clone()
    net.load_state_dict(sd)
    return sd


@pytest.mark.parametrize("name, cls, size, emb, feat", [
    ("arcface_iresnet50", IResNet50, 112, 512, [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]),
    ("vggface2_resnet50", VGGFace2ResNet50, 224, 2048,
     [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]),
])
def test_round_trip_identical(tmp_path, name, cls, size, emb, feat):
    torch.manual_seed(0)
    net = cls()
    sd = _randomise(net)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)  # DataParallel-style wrapper
    loaded = load_backbone(name, path)
    assert isinstance(loaded, cls) and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    assert isinstance(b, PerceptualOutput) and b.embedding.shape == (1, emb)
    assert [tuple(f.shape[1:]) for f in b.features] == feat
    assert torch.equal(a.embedding, b.embedding)
    assert all(torch.equal(f, g) for f, g in zip(a.features, b.features))


def test_key_layouts_and_counts():
    ir = IResNet50().state_dict()
    assert ir["fc.weight"].shape == (512, 512 * 7 * 7) and "features.running_var" in ir
    assert "layer3.13.prelu.weight" in ir and "layer4.0.downsample.1.running_mean" in ir
    vg = VGGFace2ResNet50()
    assert vg.state_dict()["fc.weight"].shape == (8631, 2048)
    assert vg.layer2[0].conv1.stride == (2, 2) and vg.layer2[0].conv2.stride == (1, 1)  # Caffe stride placement
    # torchvision resnet50 (25,557,032) with the 1000-way fc replaced by 8631 classes
    assert sum(p.numel() for p in vg.parameters()) == 25_557_032 - 2049 * 1000 + 2049 * 8631


def test_dlib_default():
    assert isinstance(load_backbone("dlib", None), DlibFaceNet)


def test_errors(tmp_path):
    net = IResNet50()
    sd = net.state_dict()
    with pytest.raises(ValueError, match="name"):
        load_backbone("facenet", None)
    with pytest.raises(ValueError, match="weights"):
        load_backbone("arcface_iresnet50", None)
    with pytest.raises(FileNotFoundError, match="weights"):
        load_backbone("arcface_iresnet50", tmp_path / "none.pt")
    p = tmp_path / "w.pt"
    torch.save({k: v for k, v in sd.items() if k != "fc.weight"}, p)
    with pytest.raises(BackboneWeightsError, match="missing keys.*fc.weight"):
        load_backbone("arcface_iresnet50", p)
    torch.save({**sd, "head.weight": torch.zeros(2)}, p)
    with pytest.raises(BackboneWeightsError, match="unexpected keys.*head.weight"):
        load_backbone("arcface_iresnet50", p)
    torch.save({**sd, "fc.bias": torch.zeros(3)}, p)
    with pytest.raises(BackboneWeightsError, match="shape mismatch.*fc.bias"):
        load_backbone("arcface_iresnet50", p)
    torch.save([1, 2], p)
    with pytest.raises(BackboneWeightsError, match="state_dict"):
        load_backbone("vggface2_resnet50", p)
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(1, 2, 112, 112))
