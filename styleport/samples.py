"""Procedural sample images the project makes itself (no files shipped, no downloads).

Content: a small scene (sky gradient, sun, hills, house) with real edges and flat regions.
Styles: distinct palettes and textures (swirls, stripes, mosaic, waves) so stylised outputs differ.
Deterministic for a given size and seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES = ("swirl", "stripes", "mosaic", "waves")


def content_scene(size: int = 256, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    h = w = size
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - y) * np.array([0.45, 0.65, 0.95]) + y * np.array([0.95, 0.85, 0.7])
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    im = Image.fromarray((img * 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    s = size / 256
    d.ellipse([190 * s, 25 * s, 235 * s, 70 * s], fill=(250, 220, 90))
    xs = np.arange(w)
    for k, (col, base, amp) in enumerate([((70, 130, 60), 0.62, 0.08), ((40, 95, 45), 0.75, 0.06)]):
        phase = rng.uniform(0, 6.28)
        top = (base + amp * np.sin(xs / w * 6.28 * (1.2 + k) + phase)) * h
        d.polygon([(0, h)] + [(float(x), float(t)) for x, t in zip(xs, top)] + [(w, h)], fill=col)
    d.rectangle([60 * s, 130 * s, 120 * s, 185 * s], fill=(200, 60, 50))
    d.polygon([(52 * s, 132 * s), (90 * s, 100 * s), (128 * s, 132 * s)], fill=(110, 50, 40))
    d.rectangle([82 * s, 155 * s, 98 * s, 185 * s], fill=(70, 45, 30))
    d.rectangle([68 * s, 140 * s, 78 * s, 150 * s], fill=(230, 230, 160))
    arr = np.asarray(im, dtype=np.float32)
    arr += rng.normal(0, 4, arr.shape)  # a little sensor noise: natural images are never flat
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def style_pattern(name: str, size: int = 256, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if name == "swirl":  # blue/yellow brush swirls (a starry-night-like palette)
        r = np.hypot(xx - 0.5, yy - 0.5)
        a = np.arctan2(yy - 0.5, xx - 0.5)
        t = np.sin(18 * r + 3 * a + 2 * np.sin(9 * xx))
        c0, c1 = np.array([20, 40, 120]), np.array([240, 210, 70])
    elif name == "stripes":  # red/black diagonal strokes
        t = np.sign(np.sin(40 * (xx + yy) + 3 * np.sin(12 * yy)))
        c0, c1 = np.array([25, 20, 20]), np.array([215, 50, 40])
    elif name == "mosaic":  # green/magenta tiles with dark grout
        n = 12
        cells = rng.uniform(0, 1, (n, n))
        t = cells[(yy * n).astype(int) % n, (xx * n).astype(int) % n] * 2 - 1
        grout = (np.minimum((xx * n) % 1, (yy * n) % 1) < 0.08)
        t = np.where(grout, -1.5, t)
        c0, c1 = np.array([150, 30, 140]), np.array([60, 200, 110])
    elif name == "waves":  # cyan/white wave crests on deep blue
        t = np.sin(25 * yy + 4 * np.sin(10 * xx)) * np.cos(6 * xx)
        c0, c1 = np.array([10, 40, 90]), np.array([220, 245, 250])
    else:
        raise ValueError(f"unknown sample style {name!r} (choose from {', '.join(STYLES)})")
    t = (np.clip(t, -1.5, 1) + 1.5) / 2.5
    img = c0 + t[..., None] * (c1 - c0)
    img += rng.normal(0, 10, img.shape)
    im = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    return im.filter(ImageFilter.GaussianBlur(radius=0.6 * size / 256))
