"""``styleport stylize``: one content image, one style, any size, in PyTorch or an exported bundle.

Content of any size keeps its aspect ratio, and the output has the content's size: PyTorch (and
free-H/W artefacts) run at the content's own size (long side capped by ``max_size``; a side under
``MIN_SIDE`` px scaled up to it, since the first 9x9 reflection-padded conv needs more than 4 px;
reflect-padded to a multiple of 4 and cropped back); fixed-size artefacts get the content stretched
to their input size. Whenever the network ran at another size, its output is resized back to the
content's size. Style images: short side to the style size, centre crop (as the manifest says).
(``styleport stylize`` scales photos over ``--max-size`` down while reading them, so its output
has the scaled size; see cli.py.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from styleport.errors import BadInput
from styleport.images import pil_to_tensor, prepare, tensor_to_pil


MIN_SIDE = 8  # smallest side the transformers take: 9x9 reflect pad needs > 4 px, then a multiple of 4


def working_size(size: tuple[int, int], max_size: int | None = None, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """The size a network runs at for content of ``size``: long side capped by ``max_size`` (None or 0:
    no cap), then a short side under ``min_side`` scaled up to it (aspect kept in both steps)."""
    w, h = size
    if max_size and max(w, h) > max_size:
        s = max_size / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    if min(w, h) < min_side:
        s = min_side / min(w, h)
        w, h = max(min_side, math.ceil(w * s)), max(min_side, math.ceil(h * s))
    return w, h


def _fit(img: Image.Image, max_size: int | None) -> Image.Image:
    size = working_size(img.size, max_size)
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)


def _pad4(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph or pw:
        mode = "reflect" if min(h, w) > 4 else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def style_weights_from(model, style_index: int | None, weights: str | None) -> torch.Tensor:
    n = model.num_styles
    if weights:
        try:
            vals = [float(v) for v in weights.split(",")]
        except ValueError:
            raise BadInput(f"--style-weights must be comma-separated numbers, got {weights!r}") from None
        if len(vals) != n or any(v < 0 for v in vals) or sum(vals) <= 0:
            raise BadInput(f"--style-weights needs {n} non-negative numbers with a positive sum")
        w = torch.tensor([vals]) / sum(vals)
    else:
        i = 0 if style_index is None else style_index
        if not 0 <= i < n:
            raise BadInput(f"--style-index must lie in [0, {n - 1}]")
        w = torch.zeros(1, n)
        w[0, i] = 1.0
    return w


def style_bottleneck(model, style: Image.Image, style_size: int = 256) -> torch.Tensor:
    """An arbitrary-style model's predictor output for ``style`` (what stylize_torch computes first):
    give it back as ``stylize_torch(..., bottleneck=)`` to stylise many contents in one style."""
    with torch.no_grad():
        return model.predictor(pil_to_tensor(prepare(style, style_size, crop=True)))


def stylize_torch(model, content: Image.Image, style: Image.Image | None = None, strength: float = 1.0,
                  style_size: int = 256, max_size: int | None = 1024, style_index=None, style_weights=None,
                  bottleneck: torch.Tensor | None = None) -> Image.Image:
    """Run a torch model (any preset) on a PIL content image; returns a PIL image of the content's size.
    ``bottleneck``: the style's predictor output from :func:`style_bottleneck` (the same numbers as
    predicting it here, once per style instead of once per image)."""
    if not 0.0 <= strength <= 1.0:
        raise BadInput(f"--strength must lie in [0, 1], got {strength}")
    work = _fit(content, max_size)
    x, h, w = _pad4(pil_to_tensor(work))
    with torch.no_grad():
        if model.kind == "arbitrary" and bottleneck is not None:
            b = bottleneck
            if strength < 1.0:   # as ArbitraryStyleNet.bottleneck mixes in the content's own
                c = torch.nn.functional.interpolate(x, size=(model.style_size, model.style_size), mode="bilinear",
                                                    align_corners=False, antialias=True)
                b = strength * b + (1.0 - strength) * model.predictor(c)
            y = model.transformer(x, b)
        elif model.kind == "arbitrary":
            if style is None:
                raise BadInput("this model needs a style image (--style)")
            s = pil_to_tensor(prepare(style, style_size, crop=True))
            y = model(x, s, strength)
        elif model.kind == "multi":
            y = model(x, style_weights_from(model, style_index, style_weights))
        else:
            y = model(x)
    out = tensor_to_pil(y[..., :h, :w])
    return out if out.size == content.size else out.resize(content.size, Image.Resampling.BICUBIC)


def mix(b_style: np.ndarray, b_content: np.ndarray, strength: float) -> np.ndarray:
    return (strength * b_style + (1.0 - strength) * b_content).astype(np.float32)


def _pick(doc: dict, model: str, formats: tuple, precision: str) -> dict | None:
    for a in doc["artifacts"]:
        if a["model"] == model and a["format"] in formats and a["precision"] == precision and not a.get("variant"):
            return a
    return None


class BundleStylizer:
    """Runs a bundle's artefacts of one runtime (and precision) the way an app would."""

    def __init__(self, bundle, runtime: str = "onnxruntime", precision: str = "fp32", threads: int | None = None):
        from pathlib import Path

        from styleport import manifest as mf
        from styleport.runtime.runners import registry

        self.bundle = Path(bundle)
        self.doc = mf.load(self.bundle)
        self.runtime = registry.canonical_name(runtime)
        formats = registry.RUNTIMES[self.runtime][2]
        self.transformer = _pick(self.doc, "transformer", formats, precision)
        if self.transformer is None:
            have = sorted({f"{a['format']}/{a['precision']}" for a in self.doc["artifacts"]})
            raise BadInput(f"bundle {bundle} has no {precision} transformer for runtime {self.runtime} "
                           f"(it has: {', '.join(have)})")
        self.predictor = _pick(self.doc, "predictor", formats, precision)
        self.kind = {"johnson": "single", "dumoulin": "multi"}.get(self.doc["source"]["preset"], "arbitrary")
        if self.kind == "arbitrary" and self.predictor is None:
            raise BadInput(f"bundle {bundle} has no {precision} predictor for runtime {self.runtime}")
        self.style_size = int(self.doc["export"].get("style_size", 256))
        shape, layout = self.transformer["inputs"][0]["shape"], self.transformer["inputs"][0]["layout"]
        fixed = all(isinstance(d, int) for d in shape)
        hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
        self.input_size = (hw[1], hw[0]) if fixed else None  # (width, height) of a fixed-size transformer
        self._runners = {}
        self.threads = threads

    def _runner(self, art):
        from styleport import manifest as mf
        from styleport.runtime.runners import registry
        from styleport.runtime.harness.adapt import merge_manifest
        key = art["path"]
        if key not in self._runners:
            r = registry.runner_class(self.runtime)(mf.artifact_path(self.bundle, art), threads=self.threads).open()
            ins = merge_manifest(r.input_specs(), art["inputs"])
            outs = merge_manifest(r.output_specs(), art["outputs"])
            self._runners[key] = (r, ins, outs)
        return self._runners[key]

    def _run(self, art, canonical: dict, size) -> dict:
        from styleport.runtime.harness.adapt import IOPlan
        r, ins, outs = self._runner(art)
        plan = IOPlan(ins, outs, size)
        return plan.canonical_outputs(r.run(plan.feeds(canonical)))

    def bottleneck(self, img: Image.Image) -> np.ndarray:
        """Canonical [1,100] bottleneck of an image (short side to the style size, centre crop)."""
        x = pil_to_tensor(prepare(img, self.style_size, crop=True)).numpy()
        out = self._run(self.predictor, {"style_image": x}, (self.style_size, self.style_size))
        return next(iter(out.values())).reshape(1, -1)

    def __call__(self, content: Image.Image, style: Image.Image | None = None, strength: float = 1.0,
                 style_index=None, style_weights=None, max_size: int | None = 1024) -> Image.Image:
        if not 0.0 <= strength <= 1.0:
            raise BadInput(f"--strength must lie in [0, 1], got {strength}")
        if self.input_size is not None:
            w, h = self.input_size
            work = content.resize((w, h), Image.Resampling.BICUBIC)
            x = pil_to_tensor(work)
            crop = (h, w)
        else:
            x, hh, ww = _pad4(pil_to_tensor(_fit(content, max_size)))
            h, w = x.shape[-2:]
            crop = (hh, ww)
        canonical = {"content_image": x.numpy()}
        if self.kind == "arbitrary":
            if style is None:
                raise BadInput("this bundle needs a style image (--style)")
            b = self.bottleneck(style)
            if strength < 1.0:
                small = content.resize((self.style_size, self.style_size), Image.Resampling.BILINEAR)
                b = mix(b, self.bottleneck(small), strength)
            canonical["style_bottleneck"] = b
        elif self.kind == "multi":
            n = int(self.doc["source"]["config"].get("num_styles", 1))
            fake = type("M", (), {"num_styles": n})
            canonical["style_weights"] = style_weights_from(fake, style_index, style_weights).numpy()
        out = self._run(self.transformer, canonical, (h, w))
        y = torch.from_numpy(np.asarray(next(iter(out.values())), np.float32))
        img = tensor_to_pil(y[..., :crop[0], :crop[1]])
        return img if img.size == content.size else img.resize(content.size, Image.Resampling.BICUBIC)

    def close(self):
        for r, _, _ in self._runners.values():
            r.close()
        self._runners.clear()
