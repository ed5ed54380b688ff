"""CoreML runner: ``coremltools.models.MLModel.predict`` works on macOS only. On Linux the runner
raises RuntimeSkipped with the reason (reported as skipped, never as a pass); the 'coreml-mil'
reference interpreter (styleport/runtime/coreml/, registered in runners/registry.py) covers Linux.

Image features (``ct.ImageType``, ``export --coreml-io image``) are fed and returned as 8-bit RGB
pixels NCHW [1,3,H,W] (uint8, range [0, 255]), the same form the coreml-mil runner takes; coremltools'
``predict`` wants PIL images for them and returns PIL images, converted here. Core ML's image outputs
are 8-bit, so parity of an image-output artefact on this runtime needs up to 0.5/255 on top of the
fp32 tolerance (README, "CoreML image I/O"). Untested here: it needs macOS.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from styleport.runtime.runners.deps import first_line, need, version
from styleport.runtime.runners.base import Runner, RuntimeFailed, RuntimeSkipped, TensorSpec


def _spec(feature) -> TensorSpec:
    t = feature.type
    which = t.WhichOneof("Type")
    if which == "imageType":
        img = t.imageType
        gray = type(img).ColorSpace.Name(img.colorSpace).startswith("GRAYSCALE")
        hw = [int(img.height) or None, int(img.width) or None]
        if img.WhichOneof("SizeFlexibility"):
            hw = [None, None]
        return TensorSpec(feature.name, [1, 1 if gray else 3] + hw, "uint8", "NCHW", [0, 255])
    if which == "multiArrayType":
        shape = [int(d) for d in t.multiArrayType.shape]
        dt = {65568: "float32", 65552: "float16", 131104: "int32", 65600: "float64"}.get(
            t.multiArrayType.dataType, "float32")
        return TensorSpec(feature.name, shape, dt)
    return TensorSpec(feature.name, [], "float32")


class CoreMLRunner(Runner):
    """Option ``compute_units``: CPU_ONLY (default), CPU_AND_GPU, CPU_AND_NE, ALL."""

    name = runtime = "coreml"
    formats = ("coreml",)
    imports = ()

    def _open(self):
        if platform.system() != "Darwin":
            raise RuntimeSkipped("CoreML prediction runs only on macOS (coremltools MLModel.predict); "
                                 f"this is {platform.system()} - use the 'coreml-mil' runtime for a "
                                 "reference check on Linux")
        ct = need("coremltools")
        units = getattr(ct.ComputeUnit, self.options.get("compute_units", "CPU_ONLY"))
        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=units)
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"CoreML cannot load {Path(str(self.path)).name}: {first_line(e)}") from None
        desc = self.model.get_spec().description
        self._inputs = [_spec(f) for f in desc.input]
        self._outputs = [_spec(f) for f in desc.output]
        self._images = {f.name for f in list(desc.input) + list(desc.output) if f.type.WhichOneof("Type") == "imageType"}

    def _close(self):
        self.model = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        from PIL import Image
        feeds = {k: (Image.fromarray(np.asarray(v, np.uint8)[0].transpose(1, 2, 0).squeeze(-1) if np.shape(v)[1] == 1
                                     else np.asarray(v, np.uint8)[0].transpose(1, 2, 0))
                     if k in self._images else v) for k, v in feeds.items()}
        try:
            out = self.model.predict(feeds)
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"CoreML failed to run {Path(str(self.path)).name}: {first_line(e)}") from None
        res = {}
        for k, v in out.items():
            if k in self._images:
                a = np.asarray(v.convert("L") if v.mode in ("L", "I", "F") else v.convert("RGB"), np.uint8)
                v = a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
            res[k] = np.asarray(v)
        return res

    def versions(self):
        return {"coremltools": version("coremltools")}
