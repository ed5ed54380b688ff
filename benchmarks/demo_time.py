"""Time to first result: one `styleport demo` run, timed from outside, with where its time went.

    .venv/bin/python benchmarks/demo_time.py [--quick] [--no-web] [--shared-data none] \
        [--out benchmarks/results/demo_run.json]

Runs ``python -m styleport demo --out TMP --no-progress`` (plus the flags given) in a subprocess,
measures its wall time (interpreter start included, as `make demo` after the install), and writes
the demo's own figures beside it: ``phases_s`` (model, stylise, google, export, parity, web,
latency, compare), the export's per-step timings (with the ExecuTorch worker's), the parity counts,
the 1-minute load average before and after, the commit and the machine. The run's output folder is
a temporary one, removed afterwards; no path of this machine is written.
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
    ap.add_argument("--quick", action="store_true", help="styleport demo --quick (128 px)")
    ap.add_argument("--no-web", action="store_true", help="styleport demo --no-web")
    ap.add_argument("--shared-data", help="styleport demo --shared-data (e.g. none: a new user's machine)")
    ap.add_argument("--out", default=str(HERE / "results" / "demo_run.json"))
    args = ap.parse_args(argv)

    from styleport.runtime.harness.machine import machine_info

    extra = (["--quick"] if args.quick else []) + (["--no-web"] if args.no_web else []) + (
        ["--shared-data", args.shared_data] if args.shared_data else [])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                            text=True).stdout.strip() or None
    with tempfile.TemporaryDirectory(prefix="demo-time-") as tmp:
        out = Path(tmp) / "demo-out"
        la0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "styleport", "demo", "--out", str(out), "--no-progress", *extra],
                           cwd=HERE.parent, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        la1 = os.getloadavg()[0]
        if p.returncode != 0 or not (out / "report.json").is_file():
            print(p.stderr[-3000:], file=sys.stderr)
            print(f"demo_time: the demo exited {p.returncode}", file=sys.stderr)
            return 1
        rep = json.loads((out / "report.json").read_text())
        man = json.loads((out / "bundle" / "manifest.json").read_text())
    t = man["export"]["timings"]
    statuses = [c["status"] for c in rep["checks"]]
    doc = {"what": "one `styleport demo` run timed from outside (interpreter start included), with the demo's "
                   "own phase times and the export's per-step timings",
           "command": "python benchmarks/demo_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "demo_command": "python -m styleport demo --out DIR --no-progress " + " ".join(extra),
           "commit": commit, "wall_s": round(wall, 1), "demo_elapsed_s": rep["elapsed_s"],
           "phases_s": rep.get("phases_s"), "quick": rep.get("quick"),
           "web": {k: rep.get("web", {}).get(k) for k in ("present", "onnxruntime_web", "browser", "note")},
           "google_column": rep.get("google", {}).get("present"), "gallery_images": len(rep.get("gallery", [])),
           "artifacts": len(man["artifacts"]), "exit_code": rep.get("exit_code"),
           "parity": {s: statuses.count(s) for s in sorted(set(statuses))},
           "export_timings": {k: t[k] for k in ("wall_s", "steps_s", "by_step", "by_format")},
           "export_parallel": {f: {k: w[k] for k in ("wall_s", "by_step")} for f, w in (t.get("parallel") or {}).items()},
           "loadavg_1min": {"before": round(la0, 2), "after": round(la1, 2)},
           "machine": machine_info()}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"demo: {wall:.1f} s wall ({', '.join(f'{k} {v:.0f}' for k, v in (doc['phases_s'] or {}).items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
