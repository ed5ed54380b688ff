"""The one small interface every runner implements (Polygraphy style: loaders build lazily,
runners only run, comparators only compare).

    runner = SomeRunner(path, threads=2)
    with runner:                       # open() ... close()
        runner.input_specs()           # [TensorSpec]
        outs = runner.run({"content_image": array})   # {name: np.ndarray}

Runners take and return numpy arrays in the model's own layout and dtype; layout/range adaptation
from the manifest happens outside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from styleport.errors import EXIT_CONVERSION, StyleportError


class RuntimeUnavailable(StyleportError):
    """A runtime package is missing or cannot run here (exit 3, with an install hint or reason)."""

    exit_code = EXIT_CONVERSION


class RuntimeSkipped(RuntimeUnavailable):
    """The runtime cannot run on this platform at all (e.g. CoreML prediction on Linux): the check
    is reported as skipped with this reason, never as a pass."""


class RuntimeFailed(StyleportError):
    """A model failed to load or run in its runtime (exit 3)."""

    exit_code = EXIT_CONVERSION


@dataclass
class TensorSpec:
    name: str
    shape: list            # ints, or str/None for free dimensions
    dtype: str = "float32"  # numpy dtype name
    layout: str = "any"     # NCHW, NHWC or any
    range: list | None = field(default=None)
    quantization: tuple | None = field(default=None)  # (scale, zero_point) for int8/uint8 I/O

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout,
                "range": self.range}

    def concrete_shape(self, fill: dict | None = None) -> tuple:
        fill = fill or {}
        return tuple(d if isinstance(d, int) else int(fill.get(d, 1)) for d in self.shape)


class Runner:
    """Base class: subclasses implement _open, input_specs, output_specs, run, _close."""

    name = "runner"
    runtime = "runner"      # registry name (onnxruntime, litert, coreml, coreml-mil, torch)
    formats: tuple = ()     # model formats this runner opens (onnx, tflite, coreml, pytorch)
    imports: tuple = ()     # packages the worker imports before open(), so load time excludes them

    def __init__(self, path, threads: int | None = None, **options):
        self.path = path
        self.threads = threads
        self.options = options
        self.is_open = False

    def open(self):
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def close(self):
        if self.is_open:
            self._close()
            self.is_open = False

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _open(self):
        raise NotImplementedError

    def _close(self):
        pass

    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def output_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # Optional extras (defaults are safe for any runner) -----------------------------------------

    def precision(self) -> str | None:
        """fp32 / fp16 / int8 as read from the model file, or None when unknown."""
        return None

    def versions(self) -> dict:
        """{package: version} of what this runner uses."""
        return {}

    def describe(self) -> dict:
        """Settings worth reporting (threads, delegates, providers)."""
        return {"threads": self.threads}

    def profile(self, feeds: dict, runs: int = 10) -> dict | None:
        """Per-op breakdown of ``runs`` runs on ``feeds``: {"runtime", "runs", "total_ms", "ops_ms",
        "coverage", "by_op_type": [{"op", "count", "ms", "pct"}], "slowest_nodes": [{"name", "op",
        "ms"}], "notes": [...]} plus runtime-specific keys; None when the runtime gives none."""
        return None
