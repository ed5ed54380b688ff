import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, run_cli
from styleport.export.bundle import export_bundle
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stylize")
    cfg = default_config("magenta-mobile", width=0.25)
    torch.manual_seed(3)
    ck = save_checkpoint(build(cfg), cfg, tmp / "ck")
    export_bundle(ck, tmp / "bundle", ["onnx", "tflite"], ["fp32"], size=64, style_size=64, progress=False)
    return ck, tmp / "bundle"


def test_checkpoint_any_size_keeps_aspect(tmp_path, tiny, sample_images):
    ck, _ = tiny
    content = tmp_path / "odd.png"
    Image.open(sample_images / "content.png").resize((53, 37)).save(content)
    out = tmp_path / "o.png"
    p = run_cli("stylize", "--checkpoint", ck, "--content", content, "--style", sample_images / "swirl.png",
                "-o", out, "--strength", "0.5")
    assert p.returncode == 0, p.stderr
    assert Image.open(out).size == (53, 37)


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_bundle_fixed_size_output_at_content_size(tmp_path, tiny, sample_images, runtime):
    _, bundle = tiny
    out = tmp_path / "o.png"
    p = run_cli("stylize", "--bundle", bundle, "--runtime", runtime, "--content",
                sample_images / "content_wide.png", "--style", sample_images / "stripes.png", "-o", out)
    assert p.returncode == 0, p.stderr
    assert Image.open(out).size == Image.open(sample_images / "content_wide.png").size


def test_bundle_and_torch_agree(tiny, sample_images):
    from styleport.images import load_image, pil_to_tensor
    from styleport.models.checkpoint import load_checkpoint
    from styleport.stylize import BundleStylizer, stylize_torch
    ck, bundle = tiny
    model, _ = load_checkpoint(ck)
    content = load_image(sample_images / "content.png").resize((64, 64))
    style = load_image(sample_images / "swirl.png")
    a = pil_to_tensor(stylize_torch(model, content, style, style_size=64))
    st = BundleStylizer(bundle, "onnxruntime")
    b = pil_to_tensor(st(content, style))
    st.close()
    assert float((a - b).abs().max()) <= 2 / 255  # 8-bit rounding of the same numbers


def test_stylize_bad_input(tmp_path, tiny, sample_images):
    ck, bundle = tiny
    base = ["--content", sample_images / "content.png", "-o", tmp_path / "o.png"]
    assert_one_line_error(run_cli("stylize", "--checkpoint", ck, *base, "--style", sample_images / "swirl.png",
                                  "--strength", "2"), 2, "strength")
    assert_one_line_error(run_cli("stylize", "--checkpoint", ck, *base), 2, "style image")
    assert_one_line_error(run_cli("stylize", "--bundle", bundle, "--precision", "int8", *base, "--style",
                                  sample_images / "swirl.png"), 2, "no int8 transformer")
