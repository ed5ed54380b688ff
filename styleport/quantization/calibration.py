"""Calibration sets for static int8: images from folders, prepared exactly like the runtime input.

Two sets, as Magenta calibrated its mobile release (300 content images for the transfer network,
100 style images for the predictor):

* **content** -> the transformer. Each image is *stretched* to the export size (H x W), as
  ``bundle.preprocessing()`` tells apps to do.
* **style** -> the predictor. Short side to ``style_size``, centre crop ``style_size`` square.

A transformer's calibration also needs its style input; it is made from the style set:

* arbitrary presets (ghiasi, magenta-mobile): the **fp32 torch predictor's** bottleneck of each style
  calibration image (the quantized predictor is not in the loop, so the two networks calibrate
  independently); content image ``i`` is paired with style ``i mod n_style``.
* dumoulin: one-hot ``style_weights`` cycling over the N styles, every fourth sample a seeded
  Dirichlet blend of all styles (blending is part of the contract, so its ranges are covered).
* johnson: content only.

Small style sets can be widened with deterministic views of each image (:func:`style_views_of`:
the runtime crop, its mirror, the whole image squashed, 1.5x zoomed crops at the centre and two
corners, a 2x zoomed centre crop), up to
``MIN_STYLE_SAMPLES`` samples: the TFLite full-integer predictor asks for them (``style_views=True``),
because min/max ranges from 4 paintings clip a held-out one (measured: worst held-out pair 37.9 dB
without views, 41.9 dB with, Google's own int8 file 43.1; README, Quantization).

Sampling is deterministic: files are listed sorted (recursively); when a folder holds more than the
count, ``count`` of them are drawn with ``numpy.random.default_rng(0)`` and kept in sorted order.
The procedural images of :mod:`styleport.samples` are used **only** when ``synthetic`` is asked for
(``--calib-synthetic``), never as a fallback. Empty folders, unreadable images and a count larger
than the folder raise :class:`BadInput` (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from styleport.errors import BadInput

DEFAULT_COUNTS = {"content": 300, "style": 100}  # Magenta's figures
MIN_STYLE_SAMPLES = 28  # style_views=True: views per image = ceil(28 / images), at most len(VIEWS)
VIEWS = ("crop", "mirror", "squash", "zoom1.5", "zoom1.5-tl", "zoom1.5-br", "zoom2")
METHODS = ("minmax", "entropy", "percentile")
SEED = 0


def _pick(files: list[Path], count: int | None, default: int, what: str, folder) -> list[Path]:
    if count is not None:
        if count < 1:
            raise BadInput(f"--calib-count must be >= 1, got {count}")
        if len(files) < count:
            raise BadInput(f"too few {what} calibration images in {folder}: {len(files)} found, "
                           f"--calib-count asks for {count}")
        n = count
    else:
        n = min(default, len(files))
    if len(files) > n:
        idx = np.random.default_rng(SEED).choice(len(files), size=n, replace=False)
        files = [files[i] for i in sorted(idx)]
    return files


def content_tensor(img, size: tuple[int, int]) -> torch.Tensor:
    """Runtime content preprocessing: stretch to H x W (bundle.preprocessing())."""
    from PIL import Image

    from styleport.images import pil_to_tensor
    h, w = size
    return pil_to_tensor(img.resize((w, h), Image.Resampling.BICUBIC))


def style_tensor(img, style_size: int) -> torch.Tensor:
    """Runtime style preprocessing: short side to style_size, centre crop."""
    from styleport.images import pil_to_tensor, prepare
    return pil_to_tensor(prepare(img, style_size, crop=True))


def style_views_of(img, style_size: int, count: int) -> list[torch.Tensor]:
    """The first ``count`` of VIEWS of a style image, each ``style_size`` square (see module doc)."""
    from PIL import Image, ImageOps

    from styleport.images import pil_to_tensor
    s = style_size
    out = []
    for name in VIEWS[:max(1, count)]:
        if name == "crop":
            out.append(style_tensor(img, s))
        elif name == "mirror":
            out.append(style_tensor(ImageOps.mirror(img), s))
        elif name == "squash":
            out.append(pil_to_tensor(img.resize((s, s), Image.Resampling.BICUBIC)))
        else:
            zoom, _, corner = name[4:].partition("-")
            w, h = img.size
            k = float(zoom) * s / min(w, h)
            im = img.resize((max(s, round(w * k)), max(s, round(h * k))), Image.Resampling.BICUBIC)
            W, H = im.size
            x, y = {"": ((W - s) // 2, (H - s) // 2), "tl": (0, 0), "br": (W - s, H - s)}[corner]
            out.append(pil_to_tensor(im.crop((x, y, x + s, y + s))))
    return out


def load_folder(folder, count: int | None, default: int, what: str) -> tuple[list, list]:
    """Sorted, deterministically sampled, decoded (RGB PIL) images of a folder."""
    from styleport.images import list_images, load_image
    path = Path(folder)
    if not path.exists():
        raise BadInput(f"{what} calibration folder not found: {folder}")
    if path.is_file():
        raise BadInput(f"{what} calibration needs a folder of images, got a file: {folder}")
    try:
        files = list_images(path)
    except BadInput:
        raise BadInput(f"{what} calibration folder holds no images: {folder}") from None
    files = _pick(files, count, default, what, folder)
    out = []
    for f in files:
        try:
            out.append(load_image(f))
        except BadInput as e:
            raise BadInput(f"{what} calibration: {e}") from None
    return out, files


@dataclass
class CalibrationSet:
    """Prepared calibration tensors (NCHW float32 in [0,1]) plus where they came from."""

    content: list = field(default_factory=list)  # [1,3,H,W]
    style: list = field(default_factory=list)    # [1,3,S,S]
    source: dict = field(default_factory=dict)
    method: str = "minmax"

    def describe(self) -> dict:
        return dict(self.source, method=self.method, content_count=len(self.content), style_count=len(self.style))


def parse_options(calibration: dict | None) -> dict:
    cal = dict(calibration or {})
    method = (cal.get("method") or "minmax").lower()
    if method not in METHODS:
        raise BadInput(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
    cal["method"] = method
    return cal


def needs(model, network: str) -> tuple[bool, bool]:
    """(content needed, style needed) to calibrate ``network`` of ``model``."""
    if network == "predictor":
        return False, True
    kind = getattr(model, "kind", "single")
    return True, kind == "arbitrary"


def build_set(calibration: dict | None, model, network: str, size: tuple[int, int], style_size: int,
              style_views: bool = False) -> CalibrationSet:
    """Load the images a static quantization of ``network`` needs, or raise BadInput.
    ``style_views``: widen a style set smaller than MIN_STYLE_SAMPLES with views (module doc)."""
    cal = parse_options(calibration)
    want_content, want_style = needs(model, network)
    count = cal.get("count")
    out = CalibrationSet(method=cal["method"])
    for what, wanted in (("content", want_content), ("style", want_style)):
        if not wanted:
            continue
        folder = cal.get(what)
        if folder:
            imgs, files = load_folder(folder, count, DEFAULT_COUNTS[what], what)
            out.source[what] = {"folder": str(folder), "files": [str(f) for f in files]}
        elif cal.get("synthetic"):
            from styleport import samples
            n = count or {"content": 16, "style": 8}[what]
            if what == "content":
                imgs = [samples.content_scene(max(size), seed=i) for i in range(n)]
            else:
                imgs = [samples.style_pattern(samples.STYLES[i % len(samples.STYLES)], style_size, seed=i)
                        for i in range(n)]
            out.source[what] = {"synthetic": f"styleport.samples procedural images, {n} seeds"}
        else:
            flag = "--calib-content" if what == "content" else "--calib-style"
            raise BadInput(f"static int8 of the {network} needs {what} calibration images: pass {flag} DIR "
                           "(or --calib-synthetic to calibrate on procedural images)")
        if what == "content":
            out.content = [content_tensor(im, size) for im in imgs]
        elif style_views and len(imgs) < MIN_STYLE_SAMPLES:
            k = min(len(VIEWS), -(-MIN_STYLE_SAMPLES // len(imgs)))
            out.style = [v for im in imgs for v in style_views_of(im, style_size, k)]
            out.source["style_views"] = list(VIEWS[:k])
        else:
            out.style = [style_tensor(im, style_size) for im in imgs]
    return out


def style_inputs(model, calib: CalibrationSet, n: int) -> list[torch.Tensor | None]:
    """The transformer's second input for each of ``n`` calibration samples (see module doc)."""
    kind = getattr(model, "kind", "single")
    if kind == "arbitrary":
        with torch.no_grad():
            bn = [model.predictor(s).reshape(1, -1) for s in calib.style]
        return [bn[i % len(bn)] for i in range(n)]
    if kind == "multi":
        k = model.num_styles
        rng = np.random.default_rng(SEED)
        out = []
        for i in range(n):
            if i % 4 == 3 and k > 1:
                w = rng.dirichlet(np.ones(k)).astype(np.float32)
            else:
                w = np.eye(k, dtype=np.float32)[i % k]
            out.append(torch.from_numpy(w).reshape(1, k))
        return out
    return [None] * n


def to_feed(spec: dict, t: torch.Tensor) -> np.ndarray:
    """An NCHW image / [1,100] bottleneck / [1,N] weights tensor in the layout an I/O spec names."""
    name = spec["name"]
    a = t.detach().float().numpy()
    if name in ("content_image", "style_image", "stylized_image"):
        if spec.get("image"):  # an 8-bit image input (CoreML ImageType): pixels, the program scales them
            return np.ascontiguousarray(np.round(np.clip(a, 0.0, 1.0) * 255.0), dtype=np.uint8)
        if spec["layout"] == "NHWC":
            a = a.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(a, dtype=np.float32)
    if name == "style_bottleneck":
        shape = [d if isinstance(d, int) else -1 for d in spec["shape"]]
        return np.ascontiguousarray(a.reshape(shape), dtype=np.float32)
    return np.ascontiguousarray(a.reshape(spec["shape"]), dtype=np.float32)


def feeds(model, network: str, inputs: list, calib: CalibrationSet) -> list[dict]:
    """Calibration feeds {input name: array} in the artefact's layout."""
    if network == "predictor":
        return [{inputs[0]["name"]: to_feed(inputs[0], s)} for s in calib.style]
    styles = style_inputs(model, calib, len(calib.content))
    out = []
    for c, s in zip(calib.content, styles):
        f = {inputs[0]["name"]: to_feed(inputs[0], c)}
        if s is not None:
            f[inputs[1]["name"]] = to_feed(inputs[1], s)
        out.append(f)
    return out


def check(calibration: dict | None) -> None:
    """Fail fast (before any conversion) on a bad calibration request: unknown method, missing or
    empty folders, too few or unreadable images. Decodes the images it would sample."""
    cal = parse_options(calibration)
    for what in ("content", "style"):
        if cal.get(what):
            load_folder(cal[what], cal.get("count"), DEFAULT_COUNTS[what], what)
