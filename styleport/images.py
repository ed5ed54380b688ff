"""Image reading and writing: the one place pixels enter and leave the project.

Images become float32 RGB tensors in [0, 1], shape [1, 3, H, W]. Every decoder failure is turned
into a one-line :class:`BadInput`; EXIF rotation is honoured; palette, alpha, grayscale, 16-bit and
CMYK images are converted to RGB; headers that promise more than ``MAX_PIXELS`` are refused before
the pixels are decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from styleport.errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_PIXELS = 64_000_000  # about 8000x8000; bigger headers are refused as decompression bombs


def _open_checked(path: str | os.PathLike) -> Image.Image:
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
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise BadInput(f"image {path} claims {w}x{h} pixels, over the {MAX_PIXELS} limit "
                               "(refused before decoding)")
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
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (P, LA, RGBA, I;16, CMYK, L, ...) to RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / top * 255.0 + 0.5).clip(0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an RGB PIL image, or raise BadInput with one line."""
    img = to_rgb(_open_checked(path))
    if min(img.size) < 1:
        raise BadInput(f"image has no pixels: {path}")
    return img


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
