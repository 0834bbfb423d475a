"""occrecon.nets.encoder: shapes, zero head, torchvision parameter counts, gradient flow, per-group scales."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from occrecon.morphable.layout import ParamLayout
from occrecon.nets import Encoder, default_scales
from occrecon.nets.encoder import ResNetBackbone

LAYOUT = ParamLayout.for_model(10, 6, 8)  # 10+6+8+3+27+3 = 57


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_shape_and_zero_at_init():
    torch.manual_seed(0)
    enc = Encoder(LAYOUT, "compact")
    theta = enc(torch.rand(2, 3, 64, 64))
    assert theta.shape == (2, 57)
    assert torch.count_nonzero(theta) == 0


@pytest.mark.parametrize("arch, torchvision_count", [("resnet50", 25_557_032), ("resnet18", 11_689_512)])
def test_parameter_count_matches_torchvision(arch, torchvision_count):
    # torchvision.models.resnet50() / resnet18() with their 1000-way fc (published figures)
    trunk = ResNetBackbone(arch)
    fc = nn.Linear(trunk.out_features, 1000)
    assert _count(trunk) + _count(fc) == torchvision_count


def test_encoder_head_size_and_features():
    enc = Encoder(LAYOUT, "resnet50")
    assert enc.backbone.out_features == 2048
    assert enc.head.weight.shape == (57, 2048)
    assert Encoder(LAYOUT, "compact").backbone.out_features == 128


def test_gradient_reaches_first_conv_after_one_step():
    torch.manual_seed(1)
    enc = Encoder(LAYOUT, "compact")
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    x = torch.rand(2, 3, 64, 64)
    target = torch.randn(2, 57)
    for step in range(2):
        opt.zero_grad()
        loss = ((enc(x) - target) ** 2).mean()
        loss.backward()
        g = enc.backbone.conv1.weight.grad
        if step == 0:
            # the zero head blocks the gradient to the trunk on the very first step
            assert g is None or torch.count_nonzero(g) == 0
            assert torch.count_nonzero(enc.head.weight.grad) > 0
        else:
            assert g.abs().sum() > 0
        opt.step()
    assert torch.count_nonzero(enc.head.weight) > 0


def test_default_scales_per_group():
    enc = Encoder(LAYOUT, "compact", units="mm").eval()
    with torch.no_grad():
        enc.head.bias.fill_(1.0)  # raw output 1 everywhere -> theta = scales
    parts = LAYOUT.split(enc(torch.rand(1, 3, 32, 32)))
    assert torch.all(parts["id"] == 1) and torch.all(parts["exp"] == 1) and torch.all(parts["gamma"] == 1)
    assert torch.allclose(parts["tex"], torch.full((1, 8), 3.0))
    assert torch.allclose(parts["angle"], torch.full((1, 3), 0.3))
    assert torch.allclose(parts["trans"], torch.full((1, 3), 100.0))  # 1 dm in mm
    assert default_scales(LAYOUT, "cm")["trans"] == [10.0, 10.0, 10.0]
    assert default_scales(LAYOUT)["trans"] == [1.0, 1.0, 1.0]


def test_custom_scales_list_and_errors():
    enc = Encoder(LAYOUT, "compact", scales={"trans": [1.0, 2.0, 0.005], "id": 0.5}).eval()
    with torch.no_grad():
        enc.head.bias.fill_(2.0)
    parts = LAYOUT.split(enc(torch.rand(1, 3, 32, 32)))
    assert torch.allclose(parts["trans"], torch.tensor([[2.0, 4.0, 0.01]]))
    assert torch.allclose(parts["id"], torch.ones(1, 10))
    assert torch.allclose(parts["tex"], torch.full((1, 8), 2.0))  # unnamed group: x1
    with pytest.raises(ValueError, match="scales"):
        Encoder(LAYOUT, "compact", scales={"pose": 1.0})
    with pytest.raises(ValueError, match="scales"):
        Encoder(LAYOUT, "compact", scales={"trans": [1.0, 2.0]})
    with pytest.raises(ValueError, match="units"):
        default_scales(LAYOUT, "inch")


def test_bad_inputs():
    enc = Encoder(LAYOUT, "compact")
    with pytest.raises(ValueError, match="image"):
        enc(torch.rand(1, 1, 32, 32))
    with pytest.raises(TypeError, match="image"):
        enc(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="arch"):
        Encoder(LAYOUT, "vgg19")
    with pytest.raises(TypeError, match="layout"):
        Encoder(57, "compact")
