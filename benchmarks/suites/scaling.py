"""Suite 5 - scaling: transformer latency and peak memory vs pixels, 256² .. 1024², in ONNX Runtime
fp32 (one --dynamic export, free H/W) and torch eager. Each (runtime, size) runs in a fresh
subprocess, so its peak RSS (VmHWM from /proc/self/status) is its own.

    .venv/bin/python benchmarks/suites/scaling.py [--preset magenta-mobile] [--sizes 256,384,512,768,1024] \
        [--threads 2] [--runs 10]

Fits latency = a + b * megapixels by least squares per runtime (b: ms per megapixel) and reports R²
and the per-size ms/MP, to say whether cost grows linearly with pixels.
Writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import build_model, export_transformer, feeds_for, loadavg, stats, write  # noqa: E402


def vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> int:
    import torch
    torch.set_num_threads(args.threads)
    model, _ = build_model(args.preset)
    feeds = feeds_for(model, args.child_size, False)
    base = vmhwm_mb()
    if args.child == "onnxruntime":
        from suites.common import ort_session
        sess = ort_session(args.onnx, args.threads)
        fn = lambda: sess.run(None, feeds)  # noqa: E731
    else:
        from styleport.export.wrappers import export_module
        eager = export_module(model, "transformer", "onnx").eval()
        targs = tuple(torch.from_numpy(v) for v in feeds.values())

        def fn():
            with torch.inference_mode():
                eager(*targs)
    for _ in range(args.warmup):
        fn()
    ts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    print(json.dumps({"latency": stats(ts), "peak_rss_mb": round(vmhwm_mb(), 1),
                      "rss_before_runtime_mb": round(base, 1)}))
    return 0


def fit(mp, ms) -> dict:
    mp, ms = np.asarray(mp, float), np.asarray(ms, float)
    b, a = np.polyfit(mp, ms, 1)
    pred = a + b * mp
    r2 = 1 - float(((ms - pred) ** 2).sum() / ((ms - ms.mean()) ** 2).sum()) if len(ms) > 2 else 1.0
    return {"ms_per_mp": round(float(b), 2), "intercept_ms": round(float(a), 2), "r2": round(r2, 4),
            "ms_per_mp_each": [round(float(y / x), 2) for x, y in zip(mp, ms)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="magenta-mobile")
    ap.add_argument("--sizes", default="256,384,512,768,1024")
    ap.add_argument("--runtimes", default="onnxruntime,torch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model, wdesc = build_model(args.preset)
        onnx_path = export_transformer(model, Path(tmp), "onnx", ["fp32"], 256, dynamic=True)["fp32"]
        for size in sizes:
            # runtimes alternate in order per size (no in-process interleaving: each needs its own RSS)
            for rt in args.runtimes.split(","):
                la = loadavg()
                out = subprocess.run([sys.executable, __file__, "--child", rt, "--child-size", str(size),
                                      "--onnx", str(onnx_path), "--preset", args.preset, "--threads",
                                      str(args.threads), "--runs", str(args.runs), "--warmup", str(args.warmup)],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    rows.append({"runtime": rt, "size": size, "error": (out.stderr.strip().splitlines() or ["?"])[-1]})
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(runtime=rt, size=size, megapixels=round(size * size / 1e6, 4), loadavg=[la, loadavg()])
                rows.append(r)
                print(f"{rt} {size}²: {r['latency']['median_ms']:.0f} ms, peak RSS {r['peak_rss_mb']} MB "
                      f"(load {la[0]})", file=sys.stderr, flush=True)
    fits = {}
    for rt in args.runtimes.split(","):
        ok = [r for r in rows if r["runtime"] == rt and "latency" in r]
        if len(ok) >= 2:
            fits[rt] = fit([r["megapixels"] for r in ok], [r["latency"]["median_ms"] for r in ok])
            fits[rt]["rss_mb_per_mp"] = fit([r["megapixels"] for r in ok], [r["peak_rss_mb"] for r in ok])["ms_per_mp"]
    write("scaling", {"suite": "scaling", "preset": args.preset, "weights": wdesc, "threads": args.threads,
                      "runs": args.runs, "rows": rows, "fits": fits})
    return 0


if __name__ == "__main__":
    sys.exit(main())
