"""Training data: image folders -> deterministic batches of random crops.

Determinism without hidden state: the sample at position ``p = step * batch + j`` of the (global)
stream is a pure function of ``(seed, step, j)``. Content images are visited epoch by epoch in a
seeded permutation (``torch.randperm`` with a generator seeded from ``(seed, epoch)``); crop offsets
and style picks come from a ``torch.Generator`` seeded from ``(seed, kind, step, j)``. So resuming
at step ``k`` needs no data-loader state (the step is the state), and DDP ranks simply take their
slice of the global batch: every rank derives the same global batch and the union of the slices is
exactly what one process would train on.

Preprocessing: the short side is resized to the crop size (up when the image is smaller -- said
once), then a square crop is taken at a random offset along the long side. Unreadable files are
skipped and counted; more than ``MAX_BAD_FRACTION`` of a set unreadable stops the run (BadInput).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleport.errors import BadInput
from styleport.images import IMAGE_SUFFIXES, MAX_PIXELS, list_images, load_image, pil_to_tensor, resize_short_side

MAX_BAD_FRACTION = 0.10
_CACHE_PIXELS = 64_000_000  # decoded, resized images kept in memory (~190 MB of RGB bytes)


def note(msg: str) -> None:
    print(f"styleport: {msg}", file=sys.stderr, flush=True)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: well mixed, platform independent)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)
    return int(state[0] & np.uint64(0x7FFFFFFFFFFFFFFF))


def generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def collect(sources, what: str) -> list[Path]:
    """Image files from files/folders (folders recursive, sorted), in argument order, no duplicates."""
    files: list[Path] = []
    seen = set()
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise BadInput(f"{what} not found: {src}")
        if src.is_dir():
            found = [p for p in list_images_or_empty(src)]
            if not found:
                raise BadInput(f"no {what} images ({', '.join(IMAGE_SUFFIXES)}) in folder: {src}")
        else:
            found = [src]
        for p in found:
            key = str(p.resolve())
            if key not in seen:
                seen.add(key)
                files.append(p)
    if not files:
        raise BadInput(f"no {what} images given")
    return files


def list_images_or_empty(folder: Path) -> list[Path]:
    try:
        return list_images(folder)
    except BadInput:
        return []


def _check_header(path: Path) -> tuple[int, int]:
    """Open and verify an image without keeping its pixels; returns (w, h) or raises BadInput."""
    if path.stat().st_size == 0:
        raise BadInput("empty file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise BadInput(f"{w}x{h} pixels, over the {MAX_PIXELS} limit")
            img.verify()
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - every decoder failure means "unreadable"
        raise BadInput(type(e).__name__) from None
    if min(w, h) < 1:
        raise BadInput("no pixels")
    return w, h


class ImageSet:
    """A checked list of image files; ``crop(i, size, gen)`` returns a [3,size,size] tensor."""

    def __init__(self, files: list[Path], what: str, crop_size: int, quiet: bool = False):
        self.what = what
        good, bad, sizes = [], [], []
        for p in files:
            try:
                sizes.append(_check_header(p))
                good.append(p)
            except BadInput as e:
                bad.append((p, str(e)))
        total = len(files)
        if bad and len(bad) > MAX_BAD_FRACTION * total:
            p, why = bad[0]
            raise BadInput(f"{len(bad)} of {total} {what} images are unreadable (more than "
                           f"{MAX_BAD_FRACTION:.0%}), e.g. {p} ({why})")
        if not good:
            raise BadInput(f"no readable {what} images")
        if bad and not quiet:
            note(f"skipped {len(bad)} of {total} unreadable {what} image(s), e.g. {bad[0][0]} ({bad[0][1]})")
        small = sum(1 for w, h in sizes if min(w, h) < crop_size)
        if small and not quiet:
            note(f"{small} of {len(good)} {what} image(s) are smaller than the {crop_size} px crop and are "
                 "resized up")
        self.files = good
        self.sizes = sizes
        self.skipped = [str(p) for p, _ in bad]
        self.quiet = quiet
        self._cache: OrderedDict = OrderedDict()
        self._cache_px = 0
        self._late_bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int, size: int) -> Image.Image:
        key = (i, size)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        n = len(self.files)
        for k in range(n):  # a file that passed the header check but fails to decode: take the next
            j = (i + k) % n
            if j in self._late_bad:
                continue
            try:
                img = resize_short_side(load_image(self.files[j]), size)
                break
            except BadInput as e:
                self._late_bad.add(j)
                if len(self._late_bad) + len(self.skipped) > MAX_BAD_FRACTION * (n + len(self.skipped)):
                    raise BadInput(f"too many unreadable {self.what} images (more than "
                                   f"{MAX_BAD_FRACTION:.0%}), e.g. {self.files[j]}: {e}") from None
                if not self.quiet:
                    note(f"skipping unreadable {self.what} image {self.files[j]} ({e})")
        else:
            raise BadInput(f"no readable {self.what} images")
        self._cache[key] = img
        self._cache_px += img.size[0] * img.size[1]
        while self._cache_px > _CACHE_PIXELS and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_px -= old.size[0] * old.size[1]
        return img

    def image(self, i: int, size: int) -> Image.Image:
        """Image ``i`` as RGB PIL, short side resized to ``size``."""
        return self._load(i, size)

    def whole(self, i: int, size: int) -> torch.Tensor:
        """Image ``i`` with its short side resized to ``size`` (no crop), [1,3,H,W]."""
        return pil_to_tensor(self._load(i, size))

    def crop(self, i: int, size: int, gen: torch.Generator) -> torch.Tensor:
        img = self._load(i, size)
        w, h = img.size
        dx = int(torch.randint(0, w - size + 1, (1,), generator=gen)) if w > size else 0
        dy = int(torch.randint(0, h - size + 1, (1,), generator=gen)) if h > size else 0
        return pil_to_tensor(img.crop((dx, dy, dx + size, dy + size)))[0]


# Tags keep the seed streams of different uses apart.
_PERM, _CROP, _STYLE, _STYLE_CROP = 1, 2, 3, 4


class BatchStream:
    """The deterministic global batch stream. ``batch(step, lo, hi)`` returns samples lo..hi-1 of the
    global batch of ``step`` (a DDP rank asks for its slice)."""

    def __init__(self, content: ImageSet, seed: int, batch_size: int, image_size: int,
                 styles: ImageSet | None = None, style_size: int | None = None, style_mode: str = "none"):
        if style_mode not in ("none", "per-batch", "per-sample"):
            raise ValueError(style_mode)
        self.content, self.styles = content, styles
        self.seed, self.batch_size, self.image_size = seed, batch_size, image_size
        self.style_size = style_size or image_size
        self.style_mode = style_mode
        self._perms: OrderedDict = OrderedDict()

    def _perm(self, epoch: int) -> torch.Tensor:
        p = self._perms.get(epoch)
        if p is None:
            p = torch.randperm(len(self.content), generator=generator(self.seed, _PERM, epoch))
            self._perms[epoch] = p
            while len(self._perms) > 4:
                self._perms.popitem(last=False)
        return p

    def content_index(self, step: int, j: int) -> int:
        pos = step * self.batch_size + j
        n = len(self.content)
        return int(self._perm(pos // n)[pos % n])

    def style_index(self, step: int, j: int = 0) -> int:
        if self.style_mode == "per-batch":
            g = generator(self.seed, _STYLE, step)
        else:
            g = generator(self.seed, _STYLE, step, j)
        return int(torch.randint(0, len(self.styles), (1,), generator=g))

    def batch(self, step: int, lo: int = 0, hi: int | None = None) -> dict:
        hi = self.batch_size if hi is None else hi
        js = range(lo, hi)
        content = torch.stack([self.content.crop(self.content_index(step, j), self.image_size,
                                                 generator(self.seed, _CROP, step, j)) for j in js])
        out = {"content": content}
        if self.style_mode == "per-batch":
            out["style_index"] = self.style_index(step)
        elif self.style_mode == "per-sample":
            idx = [self.style_index(step, j) for j in js]
            out["style_index"] = idx
            out["style"] = torch.stack([self.styles.crop(i, self.style_size,
                                                         generator(self.seed, _STYLE_CROP, step, j))
                                        for i, j in zip(idx, js)])
        return out
