"""The one small interface every runner implements (Polygraphy style: loaders build lazily,
runners only run, comparators only compare).

    runner = SomeRunner(path, threads=2)
    with runner:                       # open() ... close()
        runner.input_specs()           # [TensorSpec]
        outs = runner.run({"content_image": array})   # {name: np.ndarray}

Runners take and return numpy arrays in the model's own layout and dtype; layout/range adaptation
from the manifest happens outside them.

Per-op profiles (``styleport bench --profile``): a runner that can time its ops implements
``profile(feeds, runs) -> dict`` (the default returns None: "this runtime gives no per-op times").
Every runtime returns the same small dict, built with :func:`op_profile`::

    {"runtime": "onnxruntime",        # registry name of the runner
     "runs": 10,                      # profiled runs (after warm-up); every ms below is per run
     "total_ms": 41.2,                # wall time of one run as the profiler saw it (mean)
     "ops_ms": 39.8,                  # sum of the per-op times
     "coverage": 0.966,               # per-op times / run time (median over the runs where the
                                      #   runtime times each run; else ops_ms / total_ms); < 1: time
                                      #   between ops (scheduling, copies, the API call)
     "by_op_type": [{"op": "QLinearConv", "count": 16, "ms": 20.1, "pct": 48.8}, ...],
                                      # op types by time, heaviest first; count = nodes of that type,
                                      # pct = share of total_ms
     "slowest_nodes": [{"name": "conv2d_3", "op": "QLinearConv", "ms": 3.1}, ...],   # top 10
     "notes": ["..."]}                # how the times were taken, what they exclude

``op`` is the kernel name the runtime reports (ONNX Runtime: the op of its optimized graph, e.g.
QLinearConv for a fused DQ-Conv-Q group; LiteRT: the builtin op or the delegate). A runtime adds
its own facts under extra keys (LiteRT: delegate partitions, ops left to builtin kernels) and
leaves the keys above as they are, so reports render every runtime alike.
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
    color: str | None = field(default=None)  # images: "RGB" (None means RGB) or "BGR"

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout,
             "range": self.range}
        if self.color:
            d["color"] = self.color
        return d

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

    def profile(self, feeds: dict[str, np.ndarray], runs: int = 10) -> dict | None:
        """Per-op times of ``runs`` runs on ``feeds`` (the module docstring gives the dict), or None
        when this runtime cannot time its ops. Called after the latency loop, on an open runner."""
        return None


def op_profile(runtime: str, runs: int, total_ms: float, nodes: list[tuple[str, str, float]],
               notes: list[str] | None = None, top: int = 10) -> dict:
    """The shared profile dict from per-node times: ``nodes`` = [(node name, op, ms per run)] (one
    entry per node; ms already averaged over ``runs``), ``total_ms`` = one run's wall time."""
    by: dict[str, list] = {}
    for _, op, ms in nodes:
        e = by.setdefault(op, [0, 0.0])
        e[0] += 1
        e[1] += ms
    ops_ms = sum(ms for _, _, ms in nodes)
    pct = (lambda ms: round(100.0 * ms / total_ms, 2)) if total_ms > 0 else (lambda ms: None)
    return {"runtime": runtime, "runs": int(runs), "total_ms": round(total_ms, 4), "ops_ms": round(ops_ms, 4),
            "coverage": round(ops_ms / total_ms, 4) if total_ms > 0 else None,
            "by_op_type": [{"op": op, "count": c, "ms": round(ms, 4), "pct": pct(ms)}
                           for op, (c, ms) in sorted(by.items(), key=lambda kv: -kv[1][1])],
            "slowest_nodes": [{"name": n, "op": op, "ms": round(ms, 4)}
                              for n, op, ms in sorted(nodes, key=lambda x: -x[2])[:top]],
            "notes": list(notes or [])}
