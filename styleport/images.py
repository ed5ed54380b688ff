"""Image reading and writing: the one place pixels enter and leave the project.

Images become float32 RGB tensors in [0, 1], shape [1, 3, H, W]. Every decoder failure is turned
into a one-line :class:`BadInput`; EXIF orientation is honoured (phone photos are stored sideways
with a rotation tag); palette, alpha, grayscale, 16-bit and CMYK images are converted to RGB;
headers that promise more than ``MAX_PIXELS`` (250 million: a 200 MP phone photo fits, a
20000x20000 decompression bomb does not) are refused before the pixels are decoded.
:func:`open_image` with ``max_side`` scales big photos down while reading them (JPEGs are decoded
at 1/2, 1/4 or 1/8 scale first), so a 108 MP picture never occupies full-size memory as JPEG.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from styleport.errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_PIXELS = 250_000_000  # 200 MP phone photos pass; bigger headers are refused as decompression bombs
# Pixels enter styleport only through this module: Pillow's own bomb check (a warning above
# MAX_IMAGE_PIXELS, an error above twice that) is aligned with ours instead of its 89 MP default.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ORIENTATION = 0x0112


def _open_checked(path: str | os.PathLike, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """(decoded image, its displayed size). With ``max_side``, formats that can decode at a reduced
    scale (JPEG) do so, keeping every side >= its share of ``max_side``."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"image not found: {path}")
    if path.is_dir():
        raise BadInput(f"expected an image file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise BadInput(f"image file is empty: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # broken tag block: no tag
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise BadInput(f"image {path} claims {w}x{h} pixels, over the {MAX_PIXELS} limit "
                               "(refused before decoding)")
            shown = (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)
            if max_side and max(w, h) > max_side:
                s = max_side / max(w, h)
                img.draft("RGB", (max(1, math.ceil(w * s)), max(1, math.ceil(h * s))))
            img.load()
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"image {path} claims more than {MAX_PIXELS} pixels (refused before decoding: "
                       "decompression bomb)") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(f"not a readable image: {path} ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"not a readable image: {path} ({e})") from None
    return img, shown


def _orientation(img: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF blocks; they mean no tag
            return int(img.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - an unreadable EXIF block: the pixels are shown as stored
        return 1


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (P, LA, RGBA, I;16, CMYK, L, ...) to RGB."""
    if _orientation(img) != 1:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block: shown as stored, as viewers do
            pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / top * 255.0 + 0.5).clip(0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(path: str | os.PathLike, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """(RGB image, the file's displayed size, i.e. after EXIF orientation). With ``max_side``, an
    image whose long side is bigger comes back scaled down to that long side (aspect kept)."""
    opened, shown = _open_checked(path, max_side)
    img = to_rgb(opened)
    if min(img.size) < 1:
        raise BadInput(f"image has no pixels: {path}")
    if max_side and max(shown) > max_side:
        s = max_side / max(shown)
        size = (max(1, round(shown[0] * s)), max(1, round(shown[1] * s)))
        if img.size != size:
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if img is opened and getattr(opened, "fp", None) is not None:  # multi-frame formats keep their file open
        img = opened.copy()
        opened.close()
    return img, shown


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an RGB PIL image, or raise BadInput with one line."""
    return open_image(path)[0]


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    s = size / min(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def prepare(img: Image.Image, size: int | None, crop: bool = False) -> Image.Image:
    """Resize so the short side is ``size`` (keeps aspect); with ``crop`` centre-crop to size x size."""
    if size is None:
        return img
    img = resize_short_side(img, size)
    return center_crop(img, size) if crop else img


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    t = t.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    if not torch.isfinite(t).all():
        raise ValueError("image tensor holds NaN or Inf")
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def load_tensor(path: str | os.PathLike, size: int | None = None, crop: bool = False) -> torch.Tensor:
    return pil_to_tensor(prepare(load_image(path), size, crop))


def save_image(t: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a [1,3,H,W] or [3,H,W] tensor in [0,1]; the file appears whole or not at all."""
    path = Path(path)
    if not path.parent.exists():
        raise BadInput(f"output folder does not exist: {path.parent}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"unknown image extension for output: {path.name} (use .png or .jpg)")
    img = tensor_to_pil(t)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        img.save(tmp, format=fmt)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under a folder (recursive), sorted for determinism; a single file is a list of one."""
    folder = Path(folder)
    if not folder.exists():
        raise BadInput(f"not found: {folder}")
    if folder.is_file():
        return [folder]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder: {folder}")
    return files
