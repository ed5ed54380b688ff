import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from styleport.export.bundle import export_bundle


@pytest.fixture(scope="module")
def tiny(magenta_fp32):
    return magenta_fp32   # (checkpoint, ONNX + TFLite fp32 bundle at 64 px): conftest


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


# ---- any photo in: tiny, huge, EXIF-rotated and odd-mode images through `stylize` ---------------

def _stylize(capsys, *args):
    """The real command, in this process (no interpreter start-up per call): (exit code, stdout, stderr)."""
    from styleport.cli import main
    code = main(["stylize", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def dynamic_bundle(tiny, tmp_path_factory):
    ck, _ = tiny
    out = tmp_path_factory.mktemp("dyn") / "bundle"
    export_bundle(ck, out, ["onnx"], ["fp32"], size=64, style_size=64, dynamic=True, progress=False)
    return out


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (4, 4), (2, 40)])
def test_tiny_content_is_upscaled_for_the_network_and_said(tmp_path, tiny, dynamic_bundle, sample_images, capsys,
                                                          size):
    ck, fixed_bundle = tiny
    content = tmp_path / "tiny.png"
    Image.new("RGB", size, (200, 30, 40)).save(content)
    style = sample_images / "swirl.png"
    for source in (["--checkpoint", ck], ["--bundle", dynamic_bundle], ["--bundle", fixed_bundle]):
        code, out, err = _stylize(capsys, "--content", content, "--style", style, "-o", tmp_path / "o.png", *source)
        assert code == 0, (source, err)
        assert Image.open(tmp_path / "o.png").size == size
        if source[1] is fixed_bundle:
            assert "note" not in err  # a fixed-size artefact stretches any content to its input anyway
        else:
            assert f"content is {size[0]}x{size[1]}, under the 8 px" in err and "scaled back" in err, err


@pytest.mark.skipif(not __import__("styleport.models.default", fromlist=["x"]).available(),
                    reason="no embedded default model in this checkout")
def test_one_pixel_through_the_default_model(tmp_path, sample_images):
    """The issue's case: 1x1 used to die in PyTorch's padding with a traceback and exit 1."""
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "px.png")
    p = run_cli("stylize", "--content", tmp_path / "px.png", "--style", sample_images / "swirl.png",
                "-o", tmp_path / "o.png")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "under the 8 px" in p.stderr and Image.open(tmp_path / "o.png").size == (1, 1)


def _gradient(w, h):
    import numpy as np
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                                           np.full((h, w, 1), 90, np.float32)], axis=2).astype("uint8"))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])  # JPEG decodes at a reduced scale; PNG in full, then resized
def test_big_photo_scaled_down_to_max_size_and_said(tmp_path, tiny, sample_images, capsys, suffix):
    """The scale-down logic on a 4000x3000 photo (a 12 MP phone picture) with a small --max-size; the
    108 MP case was measured by hand (README, stylize)."""
    ck, _ = tiny
    photo = tmp_path / f"big{suffix}"
    _gradient(4000, 3000).save(photo)
    code, out, err = _stylize(capsys, "--checkpoint", ck, "--content", photo, "--style", sample_images / "swirl.png",
                              "-o", tmp_path / "o.png", "--max-size", 96)
    assert code == 0, err
    assert Image.open(tmp_path / "o.png").size == (96, 72)
    assert "content is 4000x3000, over --max-size 96: scaled down to 96x72" in err, err
    assert "(96x72)" in out


def test_scaled_read_matches_a_full_decode(tmp_path):
    """JPEG's reduced-scale decode (libjpeg DCT scaling) gives the same picture as decoding everything
    and resizing, within what the resampling filters differ by."""
    from styleport.images import load_image, open_image, pil_to_tensor
    from styleport.runtime.harness.tolerances import compare
    _gradient(4000, 3000).save(tmp_path / "g.jpg", quality=95)
    small, shown = open_image(tmp_path / "g.jpg", max_side=200)
    assert shown == (4000, 3000) and small.size == (200, 150)
    full = load_image(tmp_path / "g.jpg").resize((200, 150), Image.Resampling.LANCZOS)
    assert compare(pil_to_tensor(full).numpy(), pil_to_tensor(small).numpy())["psnr_db"] >= 35.0


def test_max_size_bounds(tmp_path, tiny, sample_images, capsys):
    ck, _ = tiny
    photo = tmp_path / "p.png"
    _gradient(300, 200).save(photo)
    base = ["--checkpoint", ck, "--content", photo, "--style", sample_images / "swirl.png", "-o", tmp_path / "o.png"]
    code, _, err = _stylize(capsys, *base, "--max-size", 0)  # 0 = no cap: the photo's own size
    assert code == 0 and "note" not in err and Image.open(tmp_path / "o.png").size == (300, 200)
    for bad in (3, -1):
        code, _, err = _stylize(capsys, *base, "--max-size", bad)
        assert code == 2 and "--max-size must be 0 (no cap) or at least 8" in err and "\n" not in err.strip()


@pytest.mark.skipif(not __import__("styleport.models.default", fromlist=["x"]).available(),
                    reason="no embedded default model in this checkout")
@pytest.mark.parametrize("max_size", [1024, 48])
def test_exif_rotated_phone_photo_comes_out_upright(tmp_path, sample_images, capsys, max_size):
    """A phone stores the sensor's landscape pixels and a tag saying 'rotate 90 CW to display'
    (orientation 6). Stored: left half red, right half blue; displayed: red on top, blue below.
    The default model at strength 0 keeps the colour layout, so the output shows which way up it went.
    max_size 48 also takes the scaled read (JPEG decoded at 1/4 scale, then turned upright)."""
    import numpy as np
    a = np.zeros((96, 192, 3), np.uint8)
    a[:, :96] = (220, 30, 30)
    a[:, 96:] = (30, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    code, _, err = _stylize(capsys, "--content", tmp_path / "phone.jpg", "--style", sample_images / "swirl.png",
                            "-o", tmp_path / "o.png", "--strength", 0, "--max-size", max_size)
    assert code == 0, err
    o = np.asarray(Image.open(tmp_path / "o.png"), np.float32)
    h, w = o.shape[:2]
    assert (w, h) == ((96, 192) if max_size > 192 else (24, 48))  # displayed portrait
    top, bottom = o[: h // 2].mean((0, 1)), o[h // 2:].mean((0, 1))
    assert top[0] > top[2] + 50 and bottom[2] > bottom[0] + 50, (top, bottom)


ODD_MODES = {
    "palette.png": lambda img: img.convert("P", palette=Image.Palette.ADAPTIVE),
    "rgba.png": lambda img: img.convert("RGBA"),
    "la.png": lambda img: img.convert("LA"),
    "gray.png": lambda img: img.convert("L"),
    "gray16.png": lambda img: Image.fromarray((__import__("numpy").asarray(img.convert("L"), "uint16") * 257)),
    "cmyk.jpg": lambda img: img.convert("CMYK"),
    "cmyk.tif": lambda img: img.convert("CMYK"),
}


@pytest.mark.parametrize("name", sorted(ODD_MODES))
def test_odd_modes_through_stylize(tmp_path, tiny, sample_images, capsys, name):
    ck, _ = tiny
    img = ODD_MODES[name](_gradient(40, 30))
    img.save(tmp_path / name)
    for extra in ([], ["--max-size", 20]):
        code, _, err = _stylize(capsys, "--checkpoint", ck, "--content", tmp_path / name, "--style", tmp_path / name,
                                "-o", tmp_path / "o.png", *extra)
        assert code == 0, err
        assert Image.open(tmp_path / "o.png").size == ((40, 30) if not extra else (20, 15))


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_a_style_bottleneck_given_once_gives_the_same_image(sample_images, strength):
    """stylize_torch(bottleneck=style_bottleneck(...)) (the demo's gallery: one prediction per style)
    is the image of predicting the style per call, bit for bit; Google's pipeline likewise."""
    import numpy as np

    from styleport.models.default import load_default
    from styleport.stylize import style_bottleneck, stylize_torch
    model, _ = load_default()
    content, style = Image.open(sample_images / "content_wide.png"), Image.open(sample_images / "swirl.png")
    b = style_bottleneck(model, style, 128)
    a = stylize_torch(model, content, style, strength, 128, max_size=96)
    c = stylize_torch(model, content, None, strength, 128, max_size=96, bottleneck=b)
    assert np.array_equal(np.asarray(a), np.asarray(c))
    from conftest import MAGENTA
    from styleport.magenta_reference import GoogleMagenta, find
    if find(MAGENTA) is not None:
        with GoogleMagenta(MAGENTA, threads=1) as g:
            assert np.array_equal(np.asarray(g(content, style, strength)),
                                  np.asarray(g(content, None, strength, bottleneck=g.bottleneck(style))))
