import pytest
import torch

from styleport.models import layers
from styleport.models.presets import build, count_params, default_config
from styleport.models.transformer import TransformerNet


def _cfg(preset, **kw):
    return default_config(preset, **kw)


@pytest.mark.parametrize("preset", ["johnson", "dumoulin", "ghiasi", "magenta-mobile"])
@pytest.mark.parametrize("hw", [(64, 64), (72, 96)])
def test_forward_every_preset_two_sizes(preset, hw):
    torch.manual_seed(0)
    model = build(_cfg(preset, width=0.125, num_styles=3 if preset == "dumoulin" else None)).eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        if preset == "johnson":
            y = model(x)
        elif preset == "dumoulin":
            y = model(x, torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5]]))
        else:
            y = model(x, torch.rand(2, 3, 96, 96))
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert y.std() > 0  # not constant


def test_johnson_param_count_matches_pytorch_examples():
    # pytorch/examples fast_neural_style TransformerNet (instance norm, affine): 1,679,235
    assert count_params(build(_cfg("johnson"))) == 1_679_235
    assert count_params(build(_cfg("johnson", norm="batch"))) == 1_679_235


def test_dumoulin_param_count_and_onehot_equals_style():
    m = build(_cfg("dumoulin", num_styles=4)).eval()
    # johnson convs (1,679,235 minus the 5 contract/expand + 10 residual affine norms = 3,200 values)
    # plus 4 styles x 2 x (32+64+128+10*128+64+32) = 4 x 3,200 table values.
    assert count_params(m) == 1_679_235 - 3_200 + 4 * 3_200
    with torch.no_grad():
        m.style_table.normal_()
    small = build(_cfg("dumoulin", num_styles=3, width=0.125)).eval()
    with torch.no_grad():
        small.style_table.add_(torch.randn_like(small.style_table) * 0.3)
        x = torch.rand(1, 3, 48, 48)
        y0 = small(x, torch.tensor([[1.0, 0.0, 0.0]]))
        y1 = small(x, torch.tensor([[0.0, 1.0, 0.0]]))
        # [1,0,0] selects row 0: same as feeding row 0's params directly
        direct = small.net(x, small.style_table[0:1])
        mix = small(x, torch.tensor([[0.5, 0.5, 0.0]]))
        direct_mix = small.net(x, 0.5 * (small.style_table[0:1] + small.style_table[1:2]))
    assert torch.equal(y0, direct)
    assert not torch.allclose(y0, y1)
    torch.testing.assert_close(mix, direct_mix)


def test_ghiasi_has_13_conditional_layers_2758_values():
    m = build(_cfg("ghiasi"))
    cin = m.transformer.net.cin_layers()
    assert len(cin) == 13
    assert m.transformer.net.num_style_params == 2758
    assert [c.channels for _, c in cin] == [128] * 10 + [64, 32, 3]


def test_ghiasi_param_counts_exact():
    m = build(_cfg("ghiasi"))
    # Inception-v3 to Mixed_6e as torchvision builds it (conv + BN gamma/beta): 8,965,856 parameters
    # (torchvision's inception_v3, 27,161,264, minus Mixed_7a/b/c, AuxLogits and fc); + 1x1 conv 768->100.
    assert count_params(m.predictor) == 8_965_856 + 768 * 100 + 100
    # johnson convs without its norms (1,679,235 - 3,200), minus the biases of the 16 convs that a norm
    # follows (224 + 1280 + 99 = 1,603), plus contract BN (2 x 224), plus the head 100 -> 2758 (w + b).
    assert count_params(m.transformer) == 1_679_235 - 3_200 - 1_603 + 2 * 224 + 100 * 2758 + 2758


def test_upsample_deconv_is_exact():
    x = torch.randn(2, 5, 7, 9)
    assert torch.equal(layers.upsample_nearest_deconv(x, 2), torch.nn.functional.interpolate(x, scale_factor=2))


@pytest.mark.parametrize("hw", [(17, 23), (32, 32)])
def test_reflect_pad_forms_agree(hw):
    x = torch.randn(2, 3, *hw)
    for p in (1, 4):
        ref = torch.nn.functional.pad(x, (p,) * 4, mode="reflect")
        torch.testing.assert_close(layers.reflect_pad_cat(x, p), ref, rtol=0, atol=0)
        torch.testing.assert_close(layers.reflect_pad_slices(x, p), ref, rtol=0, atol=0)


def test_norm_forms_agree():
    net = TransformerNet(0.25, "instance", "cin", "cin", "cin").eval()
    x = torch.rand(1, 3, 40, 56)
    params = torch.randn(1, net.num_style_params)
    with torch.no_grad():
        a = net(x, params)
        with layers.forms(net, pad="cat", norm="meanvar"):
            b = net(x, params)
        with layers.forms(net, pad="slices", norm="meanvar"):
            d = net(x, params)
        with layers.forms(net, pad="slices", norm="meanvar", conv="phases", upsample="deconv"):
            e = net(x, params)
        c = net(x, params)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)
    assert torch.equal(b, d)  # the two slice forms pad identically
    torch.testing.assert_close(a, e, atol=2e-5, rtol=0)
    assert torch.equal(a, c)  # forms restored


def test_arbitrary_strength_mixes_bottlenecks():
    m = build(_cfg("magenta-mobile", width=0.25)).eval()
    c, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        b1 = m.bottleneck(s, c, 1.0)
        b0 = m.bottleneck(s, c, 0.0)
        bh = m.bottleneck(s, c, 0.5)
    torch.testing.assert_close(bh, 0.5 * b1 + 0.5 * b0)
    assert not torch.allclose(b0, b1)
    with pytest.raises(ValueError):
        m.bottleneck(s, c, 1.5)
