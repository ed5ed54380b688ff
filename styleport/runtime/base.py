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

    def concrete_shape(self, fill: dict | None = None) -> tuple:
        fill = fill or {}
        return tuple(d if isinstance(d, int) else int(fill.get(d, 1)) for d in self.shape)


class Runner:
    """Base class: subclasses implement _open, input_specs, output_specs, run, _close."""

    name = "runner"

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
