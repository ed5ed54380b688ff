"""CoreML runner: ``coremltools.models.MLModel.predict`` works on macOS only. On Linux the runner
raises RuntimeSkipped with the reason (reported as skipped, never as a pass); the 'coreml-mil'
reference interpreter (styleport/runtime/coreml_mil.py, registered in registry.py) covers Linux.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from styleport.runtime._deps import first_line, need, version
from styleport.runtime.base import Runner, RuntimeFailed, RuntimeSkipped, TensorSpec


def _spec(feature) -> TensorSpec:
    t = feature.type
    which = t.WhichOneof("Type")
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

    def _close(self):
        self.model = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        try:
            out = self.model.predict(feeds)
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"CoreML failed to run {Path(str(self.path)).name}: {first_line(e)}") from None
        return {k: np.asarray(v) for k, v in out.items()}

    def versions(self):
        return {"coremltools": version("coremltools")}
