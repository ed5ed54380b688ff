"""Suite 4 - toolkit cost: wall time of the export `styleport demo` runs (export_cost_demo.json), of a
calibrated four-format export (export_cost_calibrated.json), both with their per-step timings, of the full export matrix (benchmarks/export_cost.py: predictor +
transformer x onnx,tflite,coreml x fp32,fp16,int8, as `styleport export` makes it), of the fp32-only
export (export_cost_fp32.json, at least 3 repeats) and the runtime
harness overhead vs a bare runtime loop (benchmarks/harness_overhead.py), both run unchanged as
subprocesses; their JSON lands in benchmarks/results/ and is summarised in toolkit_cost.json.

    .venv/bin/python benchmarks/suites/toolkit_cost.py [--repeats 1] [--rounds 8] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import RESULTS, ROOT, loadavg, write  # noqa: E402


def _export_cost(preset: str, precisions: str, repeats: int, out: str, scenario: str = "matrix") -> dict:
    """benchmarks/export_cost.py as a subprocess; its JSON summarised."""
    la = loadavg()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "export_cost.py"), "--scenario", scenario]
    if scenario == "matrix":
        cmd += ["--preset", preset, "--formats", "onnx,tflite,coreml", "--precisions", precisions]
    cmd += ["--repeats", str(repeats), "--out", str(RESULTS / out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    res = {"command": " ".join(["python"] + cmd[1:]).replace(str(ROOT) + "/", ""), "rc": p.returncode,
           "loadavg": [la, loadavg()]}
    if p.returncode == 0:
        e = json.loads((RESULTS / out).read_text())
        res.update(total_s=e["total_s"], per_artifact_s=e["per_artifact_s"], repeats=e["repeats"],
                   timings_by_step=e["timings"]["by_step"], timings_by_format=e["timings"]["by_format"],
                   artifact_count=e["artifact_count"])
    else:
        res["error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="magenta-mobile")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"suite": "toolkit_cost"}
    doc["export_cost"] = _export_cost(args.preset, "fp32,fp16,int8", args.repeats, "export_cost.json")
    print(f"export matrix: {doc['export_cost'].get('total_s')}", file=sys.stderr, flush=True)
    # fp32 only (the README's export-time figure; DESIGN.md's limit: 2 minutes)
    doc["export_cost_fp32"] = _export_cost(args.preset, "fp32", max(args.repeats, 3), "export_cost_fp32.json")
    print(f"fp32 export: {doc['export_cost_fp32'].get('total_s')}", file=sys.stderr, flush=True)
    # what a user pays: the export inside `styleport demo`, and a calibrated four-format export
    for scenario in ("demo", "calibrated"):
        doc[f"export_cost_{scenario}"] = _export_cost(args.preset, "", 1, f"export_cost_{scenario}.json", scenario)
        print(f"{scenario} export: {doc[f'export_cost_{scenario}'].get('total_s')}", file=sys.stderr, flush=True)
    la = loadavg()
    ho = [sys.executable, str(ROOT / "benchmarks" / "harness_overhead.py"), "--rounds", str(args.rounds),
          "--runs", str(args.runs), "--json", str(RESULTS / "harness_overhead.json")]
    p = subprocess.run(ho, capture_output=True, text=True, cwd=ROOT)
    doc["harness_overhead"] = {"command": " ".join(["python"] + ho[1:]).replace(str(ROOT) + "/", ""),
                               "rc": p.returncode, "loadavg": [la, loadavg()],
                               "stdout": [ln for ln in p.stdout.splitlines() if ln.strip()]}
    hp = RESULTS / "harness_overhead.json"
    if hp.exists():
        doc["harness_overhead"]["results"] = json.loads(hp.read_text())["results"]
    print("\n".join(doc["harness_overhead"]["stdout"]), file=sys.stderr)
    write("toolkit_cost", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
