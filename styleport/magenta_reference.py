"""Google's own Magenta TFLite pipeline, run in LiteRT: the reference the embedded default model is
measured against (demo report, tools/default_model.py, tests).

Google's files are not shipped with styleport (Apache-2.0, Google/Magenta; see
styleport/assets/NOTICE); this module uses them when a folder holding them is given or found at
``../shared/data/magenta`` beside the repository. The int8 predictor and the f16 transfer network
are the files the default model was imported from. Preprocessing is the manifest's: content
stretched to 384x384 RGB float32 in [0, 1] (NHWC), style short side to 256 (bicubic) and centre
crop 256x256. Style strength mixes the bottlenecks as Magenta does, with the content's own
bottleneck from the content resized to 256x256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from styleport.images import prepare

PREDICTOR = "style_predict_quantized_256.tflite"
TRANSFER = "style_transfer_f16_384.tflite"
CONTENT_SIZE = 384
STYLE_SIZE = 256
SHARED_MAGENTA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magenta"


def find(folder: str | Path | None = None) -> Path | None:
    """The folder holding both of Google's files (``folder`` or ../shared/data/magenta), or None."""
    d = Path(folder) if folder is not None else SHARED_MAGENTA
    return d if (d / PREDICTOR).is_file() and (d / TRANSFER).is_file() else None


def _nhwc(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), np.float32)[None] / 255.0)


def content_input(img: Image.Image) -> Image.Image:
    """The content as Google's transfer file takes it: stretched to 384x384 (bicubic)."""
    size = (CONTENT_SIZE, CONTENT_SIZE)
    return img if img.size == size else img.resize(size, Image.Resampling.BICUBIC)


class GoogleMagenta:
    """Google's predictor + transfer files in LiteRT (XNNPACK, ``threads``)."""

    def __init__(self, folder: str | Path | None = None, threads: int | None = 2):
        from styleport.runtime.runners.litert import LiteRTRunner
        d = find(folder)
        if d is None:
            from styleport.errors import BadInput
            raise BadInput(f"Google's Magenta files ({PREDICTOR}, {TRANSFER}) not found in "
                           f"{folder or SHARED_MAGENTA}")
        self.folder = d
        self.predictor = LiteRTRunner(d / PREDICTOR, threads=threads).open()
        self.transfer = LiteRTRunner(d / TRANSFER, threads=threads).open()
        ins = self.transfer.input_specs()
        self._bottleneck_in = next(s.name for s in ins if int(np.prod(s.shape)) == 100)
        self._content_in = next(s.name for s in ins if s.name != self._bottleneck_in)
        self._style_in = self.predictor.input_specs()[0].name

    def bottleneck(self, style: Image.Image) -> np.ndarray:
        """[1,1,1,100] bottleneck of a style image (short side 256, centre crop)."""
        x = _nhwc(prepare(style, STYLE_SIZE, crop=True))
        return next(iter(self.predictor.run({self._style_in: x}).values())).reshape(1, 1, 1, -1)

    def __call__(self, content: Image.Image, style: Image.Image | None, strength: float = 1.0,
                 bottleneck: np.ndarray | None = None) -> Image.Image:
        """Google's 384x384 stylisation of ``content`` (stretched to 384x384) in ``style``
        (or in ``bottleneck``, the style's :meth:`bottleneck` computed once)."""
        b = self.bottleneck(style) if bottleneck is None else bottleneck
        if strength < 1.0:
            small = content.resize((STYLE_SIZE, STYLE_SIZE), Image.Resampling.BILINEAR)
            b = strength * b + (1.0 - strength) * self.bottleneck(small)
        out = self.transfer.run({self._content_in: _nhwc(content_input(content)),
                                 self._bottleneck_in: np.ascontiguousarray(b, np.float32)})
        y = np.asarray(next(iter(out.values())), np.float32)[0]
        return Image.fromarray((np.clip(y, 0, 1) * 255.0 + 0.5).astype(np.uint8), mode="RGB")

    def close(self) -> None:
        self.predictor.close()
        self.transfer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
