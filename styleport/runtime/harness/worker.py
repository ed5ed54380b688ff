"""One model, one runtime, one fresh process: ``python -m styleport.runtime.harness.worker JOB.json``.

The job (JSON) names the runtime, model path, threads, runner options, manifest I/O entries, input
size, seed, an optional .npz of canonical feeds and where to write the canonical feeds used and the
outputs. The worker loads the model (timed), runs it (first run timed apart, then the latency loop)
and writes one JSON result to ``job["result"]``: timings, peak RSS of this process
(ru_maxrss, so earlier runners never pollute it) and the RSS before loading. With
``job["profile"]`` true it then asks the runner for a per-op profile of ``job["profile_runs"]``
runs (default: num_runs, at most 10) and puts it under ``"profile"`` (runtime/runners/base.py gives the
dict; None when the runtime has no per-op times). Peak RSS is read before profiling.
Exit status: 0 ok, 3 runtime unavailable/failed, 2 bad job.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback


def _rss_now_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak RSS of this process. Linux: VmHWM of the process's own memory map, because ru_maxrss
    carries the parent's high-water mark across fork+exec (a worker started by a big parent would
    report the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0


def save_arrays(path, arrays: dict) -> list[str]:
    import numpy as np
    names = list(arrays)
    np.savez(path, **{f"t{i}": arrays[n] for i, n in enumerate(names)})
    return names


def load_arrays(path, names: list[str]) -> dict:
    import numpy as np
    with np.load(path) as z:
        return {n: z[f"t{i}"] for i, n in enumerate(names)}


def run_job(job: dict) -> dict:
    from styleport.runtime.harness.adapt import IOPlan, merge_manifest
    from styleport.runtime.harness.latency import measure, stats_ms
    from styleport.runtime.runners.registry import make_runner
    from styleport.runtime.harness.targets import Convention, apply_convention

    res = {"ok": False, "rss_before_load_mb": _rss_now_mb()}
    given = load_arrays(job["feeds"], job["feed_names"]) if job.get("feeds") else {}
    runner = make_runner(job["runtime"], job["path"], threads=job.get("threads"), **job.get("options", {}))
    t0 = time.perf_counter()
    for mod in getattr(runner, "imports", ()):  # package import timed apart from model load
        try:
            importlib.import_module(mod)
        except ImportError:
            break  # open() raises the error with its install hint
    res["import_ms"] = (time.perf_counter() - t0) * 1e3
    res["rss_after_import_mb"] = _rss_now_mb()
    t0 = time.perf_counter()
    runner.open()
    res["load_ms"] = (time.perf_counter() - t0) * 1e3
    try:
        conv = Convention.from_dict(job.get("convention"))
        ins = apply_convention(merge_manifest(runner.input_specs(), job.get("manifest_inputs")), conv)
        outs = apply_convention(merge_manifest(runner.output_specs(), job.get("manifest_outputs")), conv)
        plan = IOPlan(ins, outs, tuple(job.get("size") or (256, 256)))
        canonical = plan.canonical_feeds(given, seed=int(job.get("seed", 0)))
        feeds = plan.feeds(canonical)
        first_s, times, first = measure(runner.run, feeds, int(job.get("warmup_runs", 1)),
                                        int(job.get("num_runs", 50)), float(job.get("min_seconds", 0.0)),
                                        float(job.get("max_seconds", 150.0)))
        # the model's memory: read before anything else runs here (reading a bare file's precision
        # may import a whole package, e.g. ExecuTorch's exporter for a .pte's flatbuffer)
        res["peak_rss_mb"] = _peak_rss_mb()
        res.update(
            ok=True, first_run_ms=first_s * 1e3, latency_ms=stats_ms(times), runs=len(times),
            inputs=[s.to_dict() for s in ins], outputs=[s.to_dict() for s in outs],
            input_roles=plan.in_roles, output_roles=plan.out_roles, model_role=plan.model_role,
            input_size=plan.input_size(), precision=job.get("precision") or runner.precision(),
            versions=runner.versions(), settings=runner.describe(), threads=job.get("threads"))
        inner = getattr(runner, "inner_times_ms", None)  # times the runtime took itself (onnxruntime-web: in page)
        if inner:
            res["inner_latency_ms"] = stats_ms([t / 1e3 for t in inner[-len(times):]])
        if job.get("profile"):  # (peak RSS read above: a profiling session is not the model's memory)
            runs = int(job.get("profile_runs") or min(10, max(1, int(job.get("num_runs", 10)))))
            res["profile"] = runner.profile(feeds, runs)
        if job.get("save"):
            base = job["save"]
            res["feed_names"] = save_arrays(base + ".feeds.npz", canonical)
            res["output_names"] = save_arrays(base + ".outputs.npz", plan.canonical_outputs(first))
    finally:
        runner.close()
    res.setdefault("peak_rss_mb", _peak_rss_mb())
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m styleport.runtime.harness.worker JOB.json", file=sys.stderr)
        return 2
    from styleport.errors import StyleportError
    from styleport.runtime.runners.base import RuntimeSkipped
    job = json.loads(open(argv[0]).read())
    try:
        res = run_job(job)
        code = 0
    except RuntimeSkipped as e:
        res, code = {"ok": False, "status": "skipped", "error": str(e), "exit_code": 0}, 0
    except StyleportError as e:
        res, code = {"ok": False, "status": "error", "error": str(e), "exit_code": e.exit_code}, e.exit_code
    except Exception as e:  # noqa: BLE001 - a crash of a runtime is a runtime failure (exit 3)
        tb = traceback.format_exc(limit=3)
        res, code = {"ok": False, "status": "error", "error": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                     "traceback": tb, "exit_code": 3}, 3
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.replace(tmp, job["result"])
    return code


if __name__ == "__main__":
    sys.exit(main())
