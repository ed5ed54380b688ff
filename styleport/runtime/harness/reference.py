"""The PyTorch reference: a checkpoint's predictor / transformer run through the torch runner on
canonical feeds (the runtime's only path into torch, imported lazily by the torch runner).

The reference bottleneck (the fp32 torch predictor's output for the style image) is made here and
nowhere else: every transformer check of ``parity`` and ``bench`` is fed it, so transformer parity
is isolated from the predictor's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime.harness.adapt import BOTTLENECK, IOPlan
from styleport.runtime.runners.base import StyleportError
from styleport.runtime.runners.registry import make_runner

DEFAULT_SIZE = 256


class Reference:
    """Runs the checkpoint's networks on canonical feeds (one torch runner per part, kept open)."""

    def __init__(self, checkpoint: Path, threads: int | None = None):
        self.checkpoint = Path(checkpoint)
        self.threads = threads
        self._runners: dict = {}
        self._bottlenecks: dict = {}
        self.label = f"torch:{self.checkpoint.name}"

    def runner(self, part: str):
        if part not in self._runners:
            r = make_runner("torch", self.checkpoint, threads=self.threads, part=part)
            r.open()
            self._runners[part] = r
        return self._runners[part]

    def has(self, part: str) -> bool:
        try:
            self.runner(part)
            return True
        except StyleportError:
            return False

    def inputs(self, part: str) -> list[str]:
        return [s.name for s in self.runner(part).input_specs()]

    def run(self, part: str, canonical: dict) -> dict:
        r = self.runner(part)
        img = next((v for k, v in canonical.items() if k in ("content_image", "style_image")), None)
        size = tuple(img.shape[2:]) if img is not None else (DEFAULT_SIZE, DEFAULT_SIZE)
        plan = IOPlan(r.input_specs(), r.output_specs(), size)
        return plan.canonical_outputs(r.run(plan.feeds(canonical)))

    def bottleneck(self, size, style: np.ndarray | None = None, seed: int = 0) -> np.ndarray | None:
        """The fp32 predictor's bottleneck [1,100] for ``style`` (canonical [1,3,h,w], fitted to
        ``size``) or, without one, for the seeded random style image; None when the checkpoint has
        no predictor. Cached per (size, style given, seed)."""
        if not self.has("predictor"):
            return None
        key = (tuple(size), style is not None, seed)
        if key not in self._bottlenecks:
            p = self.runner("predictor")
            plan = IOPlan(p.input_specs(), p.output_specs(), tuple(size))
            feeds = plan.canonical_feeds({"style_image": style} if style is not None else {}, seed)
            self._bottlenecks[key] = self.run("predictor", feeds)[BOTTLENECK]
        return self._bottlenecks[key]

    def close(self):
        for r in self._runners.values():
            r.close()
        self._runners.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
