"""Harness overhead: the runner + timing loop of `styleport bench` against a bare loop on the same
model, in the same process, interleaved run by run (A B, B A, ...) so machine noise hits both alike.

    python benchmarks/harness_overhead.py [--size 256] [--rounds 8] [--runs 10] [--threads 2] [--json F]

ONNX Runtime: bare `InferenceSession.run(None, feeds)` vs OrtRunner.run inside latency.measure.
LiteRT: bare `Interpreter.invoke()` (inputs set once) vs LiteRTRunner.run (set_tensor + invoke +
get_tensor every run) inside latency.measure. Models: the magenta-mobile transformer (random weights,
width 1) exported by `styleport export` to ONNX at --size; for LiteRT Google's f16 transfer network
(384²) when ../shared/data/magenta is present, else the same transformer's TFLite export.
Both sides run the model once untimed before each timed sample (measure()'s first run).
Goal: harness median within 2% of the bare median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from styleport.runtime.harness.adapt import IOPlan  # noqa: E402
from styleport.runtime.harness.latency import measure  # noqa: E402
from styleport.runtime.runners.registry import make_runner  # noqa: E402

MAGENTA = ROOT.parent / "shared" / "data" / "magenta" / "style_transfer_f16_384.tflite"


def build_models(folder: Path, size: int, want_tflite: bool):
    """The magenta-mobile transformer (random weights, width 1) exported by styleport itself."""
    import torch

    from styleport.export.bundle import export_bundle
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    torch.manual_seed(0)
    cfg = default_config("magenta-mobile", width=1.0)
    ckpt = save_checkpoint(build(cfg).eval(), cfg, folder / "ckpt")
    formats = ("onnx", "tflite") if want_tflite else ("onnx",)
    export_bundle(ckpt, folder / "bundle", formats, ("fp32",), size=size, progress=False)
    tfl = folder / "bundle" / "tflite" / "transformer.fp32.tflite"
    return folder / "bundle" / "onnx" / "transformer.fp32.onnx", (tfl if want_tflite else None)


def interleave(bare, harness, rounds: int, runs: int):
    """Alternate single samples (A B, B A, ...) so both loops see the same machine noise. Each
    harness sample is one call of latency.measure(num_runs=1), which runs the model once untimed
    (its "first run") and then once timed; the bare side does the same (one untimed run, then one
    timed), so the two differ only by the harness's own code. (An earlier version let only the
    harness warm up before each sample: under load, with two thread pools on two cores, that warm
    run alone made the harness look 19% *faster* than the bare loop.)"""
    a, h = [], []
    for i in range(rounds * runs):
        if i % 2 == 0:
            a += bare(1)
            h += harness(1)
        else:
            h += harness(1)
            a += bare(1)
    return a, h


def summary(name, a, h):
    ma, mh = statistics.median(a), statistics.median(h)
    paired = statistics.median(y / x for x, y in zip(a, h))
    return {"model": name, "bare_median_ms": ma * 1e3, "harness_median_ms": mh * 1e3,
            "overhead_pct": (mh - ma) / ma * 100.0, "paired_median_ratio_pct": (paired - 1) * 100.0,
            "samples": len(a), "bare_min_ms": min(a) * 1e3, "harness_min_ms": min(h) * 1e3}


def bench_ort(path: Path, threads: int, size: int, rounds: int, runs: int):
    # One session for both loops: two sessions in one process each keep a spinning thread pool
    # that steals the other's cores, which measured the pools' fight (+-20%), not the harness.
    runner = make_runner("onnxruntime", path, threads=threads).open()
    sess = runner.sess
    plan = IOPlan(runner.input_specs(), runner.output_specs(), (size, size))
    feeds = plan.feeds(plan.canonical_feeds(seed=0))
    for _ in range(3):
        sess.run(None, feeds)
        runner.run(feeds)

    def bare(n):
        out = []
        for _ in range(n):
            sess.run(None, feeds)  # untimed, as measure()'s first run
            t0 = time.perf_counter()
            sess.run(None, feeds)
            out.append(time.perf_counter() - t0)
        return out

    def harness(n):
        return measure(runner.run, feeds, warmup_runs=0, num_runs=n)[1]

    a, h = interleave(bare, harness, rounds, runs)
    runner.close()
    return summary(f"onnxruntime {path.name} {size}x{size}", a, h)


def bench_litert(path: Path, threads: int, rounds: int, runs: int):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    runner = make_runner("litert", path, threads=threads).open()
    plan = IOPlan(runner.input_specs(), runner.output_specs(), (256, 256))
    feeds = plan.feeds(plan.canonical_feeds(seed=0))
    for d, arr in zip(it.get_input_details(), feeds.values()):
        it.set_tensor(d["index"], arr)
    for _ in range(2):
        it.invoke()
        runner.run(feeds)

    def bare(n):
        out = []
        for _ in range(n):
            it.invoke()  # untimed, as measure()'s first run
            t0 = time.perf_counter()
            it.invoke()
            out.append(time.perf_counter() - t0)
        return out

    def harness(n):
        return measure(runner.run, feeds, warmup_runs=0, num_runs=n)[1]

    a, h = interleave(bare, harness, rounds, runs)
    runner.close()
    return summary(f"litert {path.name} {plan.input_size()[0]}x{plan.input_size()[1]}", a, h)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    from styleport.runtime.harness.machine import machine_info
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, tfl = build_models(Path(tmp), args.size, want_tflite=not MAGENTA.exists())
        rows = [bench_ort(onnx_path, args.threads, args.size, args.rounds, args.runs),
                bench_litert(MAGENTA if MAGENTA.exists() else tfl, args.threads, args.rounds, args.runs)]
    doc = {"machine": machine_info(), "threads": args.threads, "rounds": args.rounds, "runs": args.runs,
           "results": rows}
    for r in rows:
        ok = "within 2%" if abs(r["overhead_pct"]) <= 2.0 else "OVER 2%"
        print(f"{r['model']}: bare median {r['bare_median_ms']:.2f} ms, harness median "
              f"{r['harness_median_ms']:.2f} ms, overhead {r['overhead_pct']:+.2f}% ({ok}; paired "
              f"{r['paired_median_ratio_pct']:+.2f}%; "
              f"{r['samples']} samples each)")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0 if all(abs(r["overhead_pct"]) <= 2.0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
