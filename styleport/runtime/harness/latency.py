"""Timing loop and statistics, as TFLite's benchmark_model does it: a first inference timed on its
own, ``warmup_runs`` more untimed, then at least ``num_runs`` timed runs and at least ``min_seconds``
of them (capped by ``max_seconds``)."""

from __future__ import annotations

import statistics
import time

import numpy as np


def stats_ms(times_s: list[float]) -> dict:
    a = np.asarray(times_s, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None, "stdev": None}
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min()),
            "max": float(a.max()), "stdev": float(statistics.stdev(a)) if a.size > 1 else 0.0}


def measure(run, feeds, warmup_runs: int = 1, num_runs: int = 50, min_seconds: float = 0.0,
            max_seconds: float = 150.0) -> tuple[float, list[float], object]:
    """Return (first_run_s, timed run durations in s, first outputs). ``run`` is runner.run."""
    clock = time.perf_counter
    t0 = clock()
    first = run(feeds)
    first_s = clock() - t0
    for _ in range(max(0, warmup_runs)):
        run(feeds)
    times = []
    start = clock()
    while True:
        t0 = clock()
        run(feeds)
        t1 = clock()
        times.append(t1 - t0)
        elapsed = t1 - start
        if (len(times) >= num_runs and elapsed >= min_seconds) or elapsed >= max_seconds:
            break
    return first_s, times, first
