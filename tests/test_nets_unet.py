"""occrecon.nets.unet: shapes with odd sizes, dropout placement, determinism, channel order, parameter counts."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from occrecon.nets import UNet, face_mask
from occrecon.nets.unet import COMPACT_WIDTHS, PAPER_WIDTHS


def _closed_form_params(widths) -> int:
    def conv_bn(cin, cout):  # 3×3 conv without bias + BN (weight, bias)
        return 9 * cin * cout + 2 * cout

    def block(cin, cout):
        return conv_bn(cin, cout) + conv_bn(cout, cout)

    n = block(6, widths[0]) + sum(block(widths[i - 1], widths[i]) for i in range(1, 5))
    n += sum(conv_bn(widths[i + 1], widths[i]) + block(2 * widths[i], widths[i]) for i in range(4))
    return n + widths[0] + 1  # 1×1 conv to one logit, with bias


@pytest.mark.parametrize("net, widths", [(UNet(), PAPER_WIDTHS), (UNet.compact(), COMPACT_WIDTHS),
                                         (UNet.compact(base=16), (16, 32, 64, 128, 256))])
def test_parameter_count(net, widths):
    assert sum(p.numel() for p in net.parameters()) == _closed_form_params(widths)


def test_shapes_odd_sizes_and_crop():
    torch.manual_seed(0)
    net = UNet.compact().eval()
    t, r = torch.rand(2, 3, 37, 50), torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        out = net(t, r)
        assert out.shape == (2, 1, 37, 50)
        # equals running on the replicate-padded 48×64 input and keeping the top-left 37×50
        big = net(F.pad(t, (0, 14, 0, 11), mode="replicate"), F.pad(r, (0, 14, 0, 11), mode="replicate"))
    assert torch.allclose(out, big[..., :37, :50], atol=1e-6)


def test_dropout_only_at_two_deepest_levels():
    net = UNet.compact()
    drops = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert [n for n, _ in drops] == ["drop4", "drop5"] and all(m.p == 0.5 for _, m in drops)
    seen = []
    for _, m in drops:
        m.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    net(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert seen == [(1, COMPACT_WIDTHS[3], 4, 4), (1, COMPACT_WIDTHS[4], 2, 2)]


def test_eval_deterministic_train_stochastic():
    torch.manual_seed(0)
    net = UNet.compact()
    t, r = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(t, r), net(t, r))
        net.train()
        assert not torch.equal(net(t, r), net(t, r))


def test_input_order_target_then_render():
    torch.manual_seed(0)
    net = UNet.compact().eval()
    with torch.no_grad():
        net.down[0][0].weight[:, 3:] = 0  # silence the render channels
        t = torch.rand(1, 3, 16, 16)
        a, b = net(t, torch.rand(1, 3, 16, 16)), net(t, torch.rand(1, 3, 16, 16))
        assert torch.equal(a, b)
        assert not torch.equal(a, net(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)))


def test_mask_is_region_times_sigmoid_and_errors():
    torch.manual_seed(0)
    net = UNet.compact().eval()
    t, r = torch.rand(1, 3, 20, 24), torch.rand(1, 3, 20, 24)
    region = (torch.rand(1, 1, 20, 24) > 0.5).float()
    with torch.no_grad():
        m = net.mask(t, r, region)
        expect = region / (1 + torch.exp(-net(t, r)))
    assert torch.allclose(m, expect, atol=1e-6) and torch.all(m[region == 0] == 0)
    with pytest.raises(ValueError, match="region"):
        net.mask(t, r, torch.ones(1, 1, 20, 23))
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 40.0]]]])
    closed = torch.tensor([[[[0.5, 1 / (1 + math.exp(-2.0))], [0.0, 1.0]]]])  # Φ = [[1, 1], [0, 1]]
    assert torch.allclose(face_mask(torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]]), logits), closed)
    with pytest.raises(ValueError, match="render"):
        net(t, torch.rand(1, 3, 20, 25))
    with pytest.raises(ValueError, match="target"):
        net(torch.rand(1, 4, 20, 24), r)
    with pytest.raises(ValueError, match="widths"):
        UNet((8, 16, 32))
    with pytest.raises(ValueError, match="base"):
        UNet.compact(base=0)
