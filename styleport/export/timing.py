"""Per-step wall time of an export (``manifest["export"]["timings"]``) and the progress line.

An export opens one :class:`StepClock`; the code it calls marks its steps with :func:`step`::

    with step("convert", model="transformer", format="onnx", precision="fp32"):
        ...

Steps nest: a step's ``seconds`` are its own (exclusive) time, the time of the steps opened inside
it taken out, so the rows of one export never count a second twice and their sum is the time spent
inside steps. The export wraps everything it does in steps, so that sum is its wall time less a few
milliseconds of bookkeeping (tests/test_export.py checks it is within 10%).

Step names (one vocabulary for every format):

    prepare     load the checkpoint, wrap the network for the format, fp16-safe rescale
    trace       torch.export / torch.onnx's capture of the graph
    convert     the converter proper (ONNX graph build, litert-torch, coremltools, ExecuTorch lowering)
    simplify    onnxsim, shape inference, checks of the ONNX graph
    calibrate   building the calibration set and its feeds (images -> tensors, predictor bottlenecks)
    quantize    one int8/fp16 file from the fp32 one or the module (``variant`` names which)
    search      ``--target-psnr``: the ONNX float-layer search (variant ``target``)
    gate        the fp32 check against PyTorch (export refuses a miscompile)
    score       the quality report: every non-fp32 artefact on the held-out images
    choose      ``--target-psnr``: timing the int8 candidates and the swap
    floor       the int8 floor (``calibration["int8_floor"]``, the demo): a plain int8 below it
                quantized again dynamic-range, scored, and swapped in when better
    metadata    stamping names, licence and I/O texts into the files, hashing
    write       manifest, quality files, the rename into place
    wait        waiting for the ExecuTorch worker process (export_bundle's ``parallel``); the
                worker's own rows are under ``timings["parallel"]["executorch"]``
    alongside   export_bundle's ``alongside``: the caller's own work, run here while the worker
                converts (the demo stylises its gallery then)

Without an open clock :func:`step` only runs its body (the exporters are also called outside an
export, e.g. by benchmarks), and :func:`status` calls nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import defaultdict

from styleport.interrupts import check as check_interrupt

_CLOCK: contextvars.ContextVar["StepClock | None"] = contextvars.ContextVar("styleport_step_clock", default=None)

LABELS = ("model", "format", "precision", "variant")


class StepClock:
    """Collects exclusive step times; ``on_step(text)`` is called whenever a step starts (the
    progress bar shows it)."""

    def __init__(self, on_step=None):
        self.rows: list[dict] = []
        self.on_step = on_step
        self._stack: list[list] = []   # [name, labels, t_start, child_seconds]
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str, **labels):
        labels = {k: v for k, v in labels.items() if v is not None}
        # labels inherit from the enclosing step (a "quantize" inside transformer/onnx/int8 says so)
        if self._stack:
            labels = {**{k: v for k, v in self._stack[-1][1].items()}, **labels}
        frame = [name, labels, time.perf_counter(), 0.0]
        self._stack.append(frame)
        if self.on_step is not None:
            self.on_step(describe(name, labels))
        try:
            check_interrupt()   # a Ctrl-C that a library swallowed stops the export here (interrupts.py)
            yield
        finally:
            self._stack.pop()
            total = time.perf_counter() - frame[2]
            own = max(total - frame[3], 0.0)
            if self._stack:
                self._stack[-1][3] += total
            self.rows.append({"step": name, **labels, "seconds": round(own, 3)})
        check_interrupt()

    def total(self) -> float:
        return sum(r["seconds"] for r in self.rows)

    def by_step(self) -> dict:
        out: dict[str, float] = defaultdict(float)
        for r in self.rows:
            out[r["step"]] += r["seconds"]
        return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def by_format(self) -> dict:
        out: dict[str, float] = defaultdict(float)
        for r in self.rows:
            out[r.get("format", "-")] += r["seconds"]
        return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def summary(self, wall: float) -> dict:
        """``manifest["export"]["timings"]``: every row, and the sums per step and per format."""
        merged: dict[tuple, dict] = {}
        for r in self.rows:   # one row per (step, labels): a step run twice for one artefact adds up
            key = (r["step"],) + tuple(r.get(k) for k in LABELS)
            if key in merged:
                merged[key]["seconds"] = round(merged[key]["seconds"] + r["seconds"], 3)
            else:
                merged[key] = dict(r)
        return {"wall_s": round(wall, 2), "steps_s": round(self.total(), 2),
                "note": "exclusive wall time per step (nested steps taken out), so the rows add up to the "
                        "export's wall time; styleport/export/timing.py lists the steps",
                "by_step": self.by_step(), "by_format": self.by_format(), "rows": list(merged.values())}


def describe(name: str, labels: dict) -> str:
    what = " ".join(str(labels[k]) for k in LABELS if labels.get(k))
    return f"{what}: {name}" if what else name


@contextlib.contextmanager
def clock(on_step=None):
    """Open a clock for the calls made inside (an export)."""
    c = StepClock(on_step)
    token = _CLOCK.set(c)
    try:
        yield c
    finally:
        _CLOCK.reset(token)


def current() -> "StepClock | None":
    return _CLOCK.get()


def step(name: str, **labels):
    c = _CLOCK.get()
    return c.step(name, **labels) if c is not None else contextlib.nullcontext()


def status(text: str) -> None:
    """A sub-step note for the progress bar (no row of its own)."""
    c = _CLOCK.get()
    if c is not None and c.on_step is not None:
        c.on_step(text)


def one_line(t: dict, top: int = 6) -> str:
    """``export 61.2 s: convert 20.1, quantize 14.0, score 9.8, ... (steps cover 99.6%)``."""
    parts = ", ".join(f"{k} {v:.1f}" for k, v in list(t["by_step"].items())[:top])
    rest = sum(list(t["by_step"].values())[top:])
    if rest:
        parts += f", other {rest:.1f}"
    cover = 100.0 * t["steps_s"] / t["wall_s"] if t["wall_s"] else 100.0
    line = f"export {t['wall_s']:.1f} s: {parts} s (steps cover {cover:.1f}% of the wall time)"
    for fmt, w in (t.get("parallel") or {}).items():
        line += f"; {fmt} in a parallel worker: {w['wall_s']:.1f} s"
    return line


class Ticker:
    """Refreshes a tqdm bar every ``every`` seconds from a daemon thread, so its elapsed time and
    ETA keep moving through a long conversion (tqdm itself redraws only on update)."""

    def __init__(self, bar, every: float = 1.0):
        self.bar, self.every = bar, every
        self._stop = threading.Event()
        self.paused = threading.Event()   # set: no redraws (another bar owns the terminal)
        self._thread = None
        if not getattr(bar, "disable", True):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(self.every):
            if self.paused.is_set():
                continue
            try:
                self.bar.refresh()
            except Exception:  # noqa: BLE001 - a redraw must never break the export
                return

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)



class Bar:
    """A tqdm bar on stderr that ticks every second (elapsed time and ETA keep moving), shown only on
    a terminal (tqdm's ``disable=None``) and never with ``enabled=False`` (``--no-progress``)."""

    def __init__(self, total, desc: str, enabled: bool = True, unit: str = "step"):
        from tqdm import tqdm
        self.tqdm = tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, leave=False)
        self._ticker = Ticker(self.tqdm)

    def note(self, text: str) -> None:
        self.tqdm.set_postfix_str(text[:60], refresh=True)

    def grow(self, n: int) -> None:
        self.tqdm.total = (self.tqdm.total or 0) + n
        self.tqdm.refresh()

    def update(self, n: int = 1) -> None:
        self.tqdm.update(n)

    def close(self) -> None:
        self._ticker.close()
        self.tqdm.close()
