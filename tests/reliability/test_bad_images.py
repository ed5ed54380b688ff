"""Bad-input corpus for images: each case has its expected one-line message (or conversion)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from styleport.errors import BadInput
from styleport.images import load_image, load_tensor, save_image


def _png_bytes(img):
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, format="JPEG", **kw)
    return b.getvalue()


def _rgb(w=40, h=30):
    arr = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr)


def _bomb_png(w=20000, h=20000):
    """A valid PNG signature + IHDR claiming w x h, with a tiny (truncated) IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


REFUSED = {
    "zero-byte.png": (b"", "empty"),
    "text-named.png": (b"this is a text file, not a picture\n", "not a readable image"),
    "truncated.png": (lambda: _png_bytes(_rgb())[:60], "not a readable image"),
    "truncated.jpg": (lambda: _jpeg_bytes(_rgb(200, 200))[:400], "not a readable image"),
    "bomb-20000x20000.png": (_bomb_png, "refused before decoding"),
    "bomb-15812x15812.png": (lambda: _bomb_png(15812, 15812), "refused before decoding"),  # just over 250 MP
    "random-bytes.jpg": (bytes(range(256)) * 4, "not a readable image"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_one_line(tmp_path, name):
    data, needle = REFUSED[name]
    data = data() if callable(data) else data
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(BadInput) as e:
        load_image(p)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(BadInput, match="folder"):
        load_image(tmp_path)


CONVERTED = {
    "palette.png": lambda: _rgb().convert("P", palette=Image.Palette.ADAPTIVE),
    "rgba.png": lambda: _rgb().convert("RGBA"),
    "la.png": lambda: _rgb().convert("LA"),
    "gray.png": lambda: _rgb().convert("L"),
    "bilevel.png": lambda: _rgb().convert("1"),
    "gray16.png": lambda: Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)),
    "cmyk.jpg": lambda: _rgb().convert("CMYK"),
    "one-pixel.png": lambda: Image.new("RGB", (1, 1), (10, 200, 30)),
}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted_to_rgb_in_unit_range(tmp_path, name):
    img = CONVERTED[name]()
    p = tmp_path / name
    img.save(p)
    t = load_tensor(p)
    assert t.shape[:2] == (1, 3) and t.shape[2:] == (img.height, img.width)
    assert float(t.min()) >= 0 and float(t.max()) <= 1


def test_gray16_keeps_its_range(tmp_path):
    img = CONVERTED["gray16.png"]()
    img.save(tmp_path / "g.png")
    t = load_tensor(tmp_path / "g.png")
    assert float(t.min()) == 0.0 and float(t.max()) == 1.0  # not clipped to white


def test_phone_photo_headers_pass_the_bomb_guard(tmp_path):
    """A 108 MP (12000x9000) header is a phone photo, not a bomb: it reaches the decoder (which then
    finds this one truncated) instead of being refused; 20000x20000 stays refused (above)."""
    p = tmp_path / "phone108.png"
    p.write_bytes(_bomb_png(12000, 9000))
    with pytest.raises(BadInput) as e:
        load_image(p)
    assert "not a readable image" in str(e.value) and "refused" not in str(e.value)


def test_exif_rotation_is_honoured(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # landscape pixels: left half red, right half blue ...
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # ... stored rotated: orientation 6 = rotate 90 CW to display
    Image.fromarray(a).save(tmp_path / "rot.png", exif=exif)
    t = load_tensor(tmp_path / "rot.png")
    assert t.shape[2:] == (40, 20)  # displayed portrait
    assert float(t[0, 0, :20].mean()) > 0.9 and float(t[0, 2, 20:].mean()) > 0.9  # red on top, blue below
    exif[0x0112] = 8  # rotate 90 CCW: the other way up
    Image.fromarray(a).save(tmp_path / "rot8.png", exif=exif)
    t = load_tensor(tmp_path / "rot8.png")
    assert float(t[0, 2, :20].mean()) > 0.9 and float(t[0, 0, 20:].mean()) > 0.9


@pytest.mark.parametrize("blob", [b"Exif\x00\x00" + bytes(range(40)), b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05"])
def test_corrupt_exif_is_shown_as_stored(tmp_path, blob, recwarn):
    _rgb(40, 20).save(tmp_path / "bad-exif.jpg", exif=blob)
    t = load_tensor(tmp_path / "bad-exif.jpg")
    assert t.shape[2:] == (20, 40)
    assert not [w for w in recwarn if "EXIF" in str(w.message)]  # no Pillow warning on the user's terminal


def test_unwritable_and_unknown_output(tmp_path):
    import torch
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(BadInput, match="does not exist"):
        save_image(x, tmp_path / "missing" / "o.png")
    with pytest.raises(BadInput, match="extension"):
        save_image(x, tmp_path / "o.xyz")
    save_image(x, tmp_path / "o.png")
    assert not list(tmp_path.glob(".o.png.tmp-*"))
