"""The benchmark: every artefact x runtime in a fresh worker process (runtime/harness/worker.py), so load
time and peak RSS are per runner and one runtime's thread pool cannot disturb another's. When the
bundle's checkpoint is found, each result also gets parity against the PyTorch reference on exactly
the feeds the worker ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from styleport import manifest as mf
from styleport.errors import BadInput
from styleport.runtime.harness.adapt import BOTTLENECK, IOPlan
from styleport.runtime.runners.base import StyleportError
from styleport.runtime.harness.checks import Check, check_name, error_check, judge
from styleport.runtime.harness.tolerances import check_selectors
from styleport.runtime.harness.reference import Reference
from styleport.runtime.runners.registry import UNTIMED, runtimes_for
from styleport.runtime.harness.targets import Artifact, Options, artifact_size, manifest_specs, runner_options


@dataclass
class BenchOptions(Options):
    warmup_runs: int = 1
    num_runs: int = 50
    min_seconds: float = 0.0
    max_seconds: float = 150.0
    parity: bool = True
    profile: bool = False            # --profile: a per-op profile per result (Runner.profile)
    timeout: float = 900.0


def run_worker(job: dict, workdir: Path, tag: str, timeout: float) -> dict:
    """Run one job in ``python -m styleport.runtime.harness.worker``; its result dict (with the feeds and
    first outputs as arrays under ``_feeds`` / ``_outputs``)."""
    job = dict(job)
    job["result"] = str(workdir / f"{tag}.result.json")
    job["save"] = str(workdir / tag)
    jpath = workdir / f"{tag}.job.json"
    jpath.write_text(json.dumps(job))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run([sys.executable, "-m", "styleport.runtime.harness.worker", str(jpath)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "status": "error", "error": f"worker timed out after {timeout:.0f} s", "exit_code": 3}
    rpath = Path(job["result"])
    if not rpath.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"ok": False, "status": "error", "error": f"worker crashed: {tail[0][:300]}", "exit_code": 3}
    res = json.loads(rpath.read_text())
    if res.get("ok"):
        from styleport.runtime.harness.worker import load_arrays
        res["_feeds"] = load_arrays(job["save"] + ".feeds.npz", res["feed_names"])
        res["_outputs"] = load_arrays(job["save"] + ".outputs.npz", res["output_names"])
    return res


def _save_feeds(workdir: Path, tag: str, arrays: dict) -> tuple[str, list]:
    from styleport.runtime.harness.worker import save_arrays
    path = workdir / f"{tag}.given.npz"
    names = save_arrays(path, arrays)
    return str(path), names


def _file_bytes(path: Path) -> int:
    return mf.size_path(path) if path.exists() else 0


def bench(arts: list[Artifact], opts: BenchOptions, progress=None, bar: bool = False) -> tuple[list[dict], list[Check]]:
    """One result per artefact x runtime (plus a 'torch' row per model when asked and a checkpoint
    exists). Each runs in a fresh worker process."""
    check_selectors(opts.selector_rules(), {(a.model or "model", a.format, a.precision or "fp32") for a in arts})
    results, checks = [], []
    ckpt = next((a.checkpoint for a in arts if a.checkpoint), None)
    ref = Reference(ckpt, opts.threads) if (ckpt and opts.parity) else None
    wanted = opts.runtimes
    torch_rows = ckpt is not None and (wanted is None or "torch" in wanted)
    pred_size = next((artifact_size(a, None) for a in arts if a.model == "predictor"), (256, 256))
    with tempfile.TemporaryDirectory(prefix="styleport-bench-") as tmp:
        workdir = Path(tmp)
        jobs = [(a, rt) for a in arts for rt in runtimes_for(a.format, wanted)]
        if torch_rows:
            seen = set()
            for a in arts:
                if a.model in ("predictor", "transformer") and a.bundle and a.model not in seen:
                    seen.add(a.model)
                    jobs.append((Artifact(path=ckpt, format="pytorch", model=a.model, precision="fp32",
                                          inputs=a.inputs, outputs=a.outputs, label=f"{ckpt.name} ({a.model})",
                                          bundle=a.bundle, checkpoint=ckpt), "torch"))
        if not jobs:
            raise BadInput("no runtime opens these models (check --runtimes)")
        from styleport.export.timing import Bar
        tick = Bar(len(jobs), "bench", bar, "artefact")
        try:
            _run_jobs(jobs, opts, ref, pred_size, workdir, progress, tick, results, checks)
        finally:
            tick.close()
    if ref is not None:
        ref.close()
    return results, checks


def _run_jobs(jobs, opts, ref, pred_size, workdir, progress, tick, results, checks) -> None:
    """One worker process per (artefact, runtime), in order; rows and checks appended."""
    for i, (a, rt) in enumerate(jobs):
        tick.note(f"{a.label} @ {rt}")
        size = artifact_size(a, opts.size)
        given = dict(opts.given)
        if ref is not None and a.model == "transformer" and BOTTLENECK not in given:
            b = ref.bottleneck(pred_size, opts.given.get("style_image"), opts.seed)
            if b is not None:
                given[BOTTLENECK] = b
        if ref is not None and a.inputs and a.format != "pytorch":
            # canonical feeds decided here so the reference sees exactly what the candidate sees
            plan = IOPlan(manifest_specs(a.inputs), manifest_specs(a.outputs or []), size)
            given = plan.canonical_feeds(given, opts.seed)
        job = {"runtime": rt, "path": str(a.path), "threads": opts.threads,
               "options": {"part": a.model} if rt == "torch" else runner_options(rt, opts),
               "manifest_inputs": a.inputs if rt != "torch" else None,
               "manifest_outputs": a.outputs if rt != "torch" else None,
               "convention": a.convention.to_dict() if a.convention else None,
               "size": list(size), "seed": opts.seed, "warmup_runs": opts.warmup_runs,
               "num_runs": opts.num_runs, "min_seconds": opts.min_seconds, "max_seconds": opts.max_seconds,
               "profile": opts.profile, "precision": a.precision}
        if given:
            job["feeds"], job["feed_names"] = _save_feeds(workdir, f"j{i}", given)
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] {a.label} @ {rt}")
        if rt in UNTIMED:   # emulated runtimes: a time that means nothing is not reported
            res = {"ok": False, "status": "skipped", "error": UNTIMED[rt]}
        else:
            res = run_worker(job, workdir, f"j{i}", opts.timeout)
        row, ck = _result_row(a, rt, res, ref, opts)
        results.append(row)
        if ck is not None:
            checks.append(ck)
        tick.update(1)


def _result_row(a: Artifact, rt: str, res: dict, ref: Reference | None, opts: BenchOptions):
    ok = res.get("ok")
    precision = a.precision or res.get("precision") or "fp32"
    model = a.model or res.get("model_role") or "model"
    row = {
        "model": model, "format": a.format, "precision": precision, "runtime": rt, "path": a.label,
        "variant": a.variant or None, "status": "ok" if ok else res.get("status", "error"),
        "error": None if ok else res.get("error"),
        "input_size": res.get("input_size"), "threads": res.get("threads") if ok else opts.threads,
        "latency_ms": None, "runs": res.get("runs"), "load_ms": res.get("load_ms"),
        "first_run_ms": res.get("first_run_ms"), "import_ms": res.get("import_ms"),
        "peak_rss_mb": res.get("peak_rss_mb"),
        "rss_before_load_mb": res.get("rss_before_load_mb"), "file_bytes": _file_bytes(a.path),
        "settings": res.get("settings"), "parity": None, "parity_reason": None,
    }
    if a.convention is not None:
        row["convention"] = a.convention.to_dict()
    if "profile" in res:  # bench --profile: the shape is documented in runtime/runners/base.py
        row["profile"] = res["profile"]
    if ok:
        lat = res["latency_ms"]
        row["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "p99", "mean", "min", "max", "stdev")}
        if res.get("inner_latency_ms"):  # the runtime's own time per run (onnxruntime-web: session.run in page)
            row["inner_latency_ms"] = res["inner_latency_ms"]
        if row["threads"] is None:
            row["threads"] = (res.get("settings") or {}).get("threads")
    name = check_name(model, a.format, precision, rt, a.variant)
    ck = None
    if not ok:
        row["parity_reason"] = "not run: " + str(res.get("error"))
        ck = Check(name=name, model=model, format=a.format, precision=precision, runtime=rt, path=a.label,
                   status="skipped" if res.get("status") == "skipped" else "error", reasons=[str(res.get("error"))])
    elif rt == "torch":
        row["parity_reason"] = "this is the PyTorch reference"
    elif ref is None:
        row["parity_reason"] = a.checkpoint_reason or "parity disabled (--no-parity)"
    elif a.model not in ("predictor", "transformer") or not ref.has(a.model):
        row["parity_reason"] = f"the reference has no {a.model}"
    else:
        ck = Check(name=name, model=model, format=a.format, precision=precision, runtime=rt, path=a.label,
                   reference=ref.label, input_size=res.get("input_size"))
        try:
            judge(ck, ref.run(a.model, res["_feeds"]), res["_outputs"], opts.rules)
        except StyleportError as e:
            error_check(ck, e)
        row["parity"] = ck.summary()
    return row, ck
