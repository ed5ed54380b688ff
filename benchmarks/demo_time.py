"""Time to first result: `styleport demo` runs, timed from outside, with where their time went.

    .venv/bin/python benchmarks/demo_time.py [--make] [--runs N] [--quick] [--no-web] \
        [--shared-data none] [--out benchmarks/results/demo_run.json]

Runs ``python -m styleport demo --out TMP --no-progress`` (plus the flags given) in a subprocess,
or with ``--make`` the README's own ``make demo`` in this checkout (its ``demo-out/`` is replaced;
run it in a fresh clone after ``make .venv/.installed`` for the new user's figure), ``--runs``
times (default 1), and measures each wall time (interpreter start included). It writes the median
and every run's figures: ``phases_s`` (model, stylise, google, export, parity, web, latency,
compare), the export's per-step timings (with the ExecuTorch worker's), the parity counts, the
1-minute load average before and after, the commit and the machine. Output folders are removed
afterwards (``--make``: demo-out is left, as `make demo` leaves it); no path of this machine is
written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make", action="store_true", help="time `make demo` in this checkout (writes demo-out/)")
    ap.add_argument("--runs", type=int, default=1, help="how many demo runs (the median wall time is kept)")
    ap.add_argument("--quick", action="store_true", help="styleport demo --quick (128 px)")
    ap.add_argument("--no-web", action="store_true", help="styleport demo --no-web")
    ap.add_argument("--shared-data", help="styleport demo --shared-data (e.g. none: a new user's machine)")
    ap.add_argument("--out", default=str(HERE / "results" / "demo_run.json"))
    args = ap.parse_args(argv)
    if args.make and (args.quick or args.no_web or args.shared_data):
        ap.error("--make runs `make demo` as it is: no demo flags with it")

    # scrub: the demo's notes name folders of this machine (the web assets' cache)
    from styleport.paths import scrub
    from styleport.runtime.harness.machine import machine_info

    extra = (["--quick"] if args.quick else []) + (["--no-web"] if args.no_web else []) + (
        ["--shared-data", args.shared_data] if args.shared_data else [])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                            text=True).stdout.strip() or None
    runs = []
    for i in range(max(1, args.runs)):
        run = _one(args.make, extra)
        if run is None:
            return 1
        runs.append(run)
        print(f"demo run {i + 1}: {run['wall_s']:.1f} s wall "
              f"({', '.join(f'{k} {v:.0f}' for k, v in (run['phases_s'] or {}).items())})", flush=True)
    walls = sorted(r["wall_s"] for r in runs)
    median = walls[len(walls) // 2] if len(walls) % 2 else round((walls[len(walls) // 2 - 1] + walls[len(walls) // 2]) / 2, 1)
    med = min(runs, key=lambda r: abs(r["wall_s"] - median))   # the run closest to the median, in full
    doc = {"what": "`styleport demo` timed from outside (interpreter start included), with the demo's own "
                   "phase times and the export's per-step timings; wall_s is the median of the runs, the "
                   "other fields are those of the run closest to it, every run under 'runs'",
           "command": "python benchmarks/demo_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "demo_command": "make demo" if args.make else
                           "python -m styleport demo --out DIR --no-progress " + " ".join(extra),
           "commit": commit, "wall_s": median, "runs_wall_s": [r["wall_s"] for r in runs],
           **{k: v for k, v in med.items() if k != "wall_s"},
           "runs": [{k: r[k] for k in ("wall_s", "demo_elapsed_s", "phases_s", "loadavg_1min")} for r in runs],
           "machine": machine_info()}
    Path(args.out).write_text(scrub(json.dumps(doc, indent=2), HERE.parent) + "\n")
    print(f"demo: median {median:.1f} s wall of {len(runs)} run(s)")
    return 0


def _one(make: bool, extra: list) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="demo-time-") as tmp:
        if make:
            out = HERE.parent / "demo-out"
            cmd = ["make", "demo"]
        else:
            out = Path(tmp) / "demo-out"
            cmd = [sys.executable, "-m", "styleport", "demo", "--out", str(out), "--no-progress", *extra]
        la0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        la1 = os.getloadavg()[0]
        if p.returncode != 0 or not (out / "report.json").is_file():
            print(p.stderr[-3000:], file=sys.stderr)
            print(f"demo_time: the demo exited {p.returncode}", file=sys.stderr)
            return None
        rep = json.loads((out / "report.json").read_text())
        man = json.loads((out / "bundle" / "manifest.json").read_text())
    t = man["export"]["timings"]
    statuses = [c["status"] for c in rep["checks"]]
    return {"wall_s": round(wall, 1), "demo_elapsed_s": rep["elapsed_s"],
            "phases_s": rep.get("phases_s"), "quick": rep.get("quick"),
            "web": {k: rep.get("web", {}).get(k) for k in ("present", "onnxruntime_web", "browser", "note")},
            "google_column": rep.get("google", {}).get("present"), "gallery_images": len(rep.get("gallery", [])),
            "artifacts": len(man["artifacts"]), "exit_code": rep.get("exit_code"),
            "parity": {s: statuses.count(s) for s in sorted(set(statuses))},
            "export_timings": {k: t[k] for k in ("wall_s", "steps_s", "by_step", "by_format")},
            "export_parallel": {f: {k: w[k] for k in ("wall_s", "by_step")} for f, w in (t.get("parallel") or {}).items()},
            "loadavg_1min": {"before": round(la0, 2), "after": round(la1, 2)}}


if __name__ == "__main__":
    sys.exit(main())
