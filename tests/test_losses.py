import pytest
import torch

from styleport.models.losses import LossConfig, PerceptualLoss, gram, style_loss, total_variation
from styleport.models.vgg import TAPS, build_vgg


def test_gram_hand_computed():
    # C=2, H=1, W=2: F = [[1, 2], [3, 4]]; F F^T = [[5, 11], [11, 25]]; / (C*H*W = 4)
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    torch.testing.assert_close(gram(f)[0], expected)


def test_style_loss_weights_per_layer():
    feats = {"a": torch.ones(1, 2, 2, 2), "b": torch.zeros(1, 2, 2, 2)}
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.zeros(1, 2, 2)}
    # gram of ones(2,2,2): every entry 4/8 = 0.5; mse = 0.25
    assert float(style_loss(feats, targets, {"a": 2.0, "b": 7.0})) == pytest.approx(0.5)


def test_total_variation_zero_on_flat_image():
    assert float(total_variation(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    assert float(total_variation(torch.rand(1, 3, 8, 8))) > 0


def test_random_vgg_taps_and_announcement(capsys):
    vgg = build_vgg("random")
    assert "random-feature" in capsys.readouterr().err
    out = vgg(torch.rand(1, 3, 32, 32))
    assert set(out) == set(TAPS)
    assert out["relu4_3"].shape == (1, 512, 4, 4)
    assert list(vgg.state_dict())[0] == "features.0.weight"  # torchvision key names


def test_vgg_loads_a_torchvision_state_dict_file(tmp_path):
    src = build_vgg("random", announce=False)
    state = {k: v + 0.5 for k, v in src.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # present in the real file; ignored
    torch.save(state, tmp_path / "vgg16.pth")
    vgg = build_vgg("imagenet", tmp_path / "vgg16.pth")
    torch.testing.assert_close(vgg.features[0].weight, state["features.0.weight"])


def test_missing_vgg_weights_is_a_clear_error(tmp_path, monkeypatch):
    from styleport.errors import BadInput
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BadInput, match="--loss-net random"):
        build_vgg("auto")


def test_loss_gradients_flow_to_the_image():
    vgg = build_vgg("random", announce=False)
    loss = PerceptualLoss(vgg, LossConfig(tv_weight=1.0))
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    total, terms = loss(x, content, loss.style_targets(style))
    total.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert set(terms) == {"content", "style", "tv"}
    assert all(float(v) > 0 for v in terms.values())


def test_gatys_halves_total_loss_in_50_steps_at_64px():
    from styleport.samples import content_scene, style_pattern
    from styleport.images import pil_to_tensor
    from styleport.training.gatys import stylize
    vgg = build_vgg("random", announce=False)
    content = pil_to_tensor(content_scene(64))
    style = pil_to_tensor(style_pattern("swirl", 64))
    for opt in ("lbfgs", "adam"):
        res = stylize(content, style, vgg, steps=50, optimizer=opt, progress=False)
        assert res.losses[-1] <= 0.5 * res.losses[0], (opt, res.losses[0], res.losses[-1])
        assert res.image.shape == content.shape and 0 <= float(res.image.min()) and float(res.image.max()) <= 1
