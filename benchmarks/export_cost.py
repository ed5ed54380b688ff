"""Toolkit cost: wall time of exporting a full-width checkpoint to ONNX, TFLite and CoreML.

    .venv/bin/python benchmarks/export_cost.py [--preset magenta-mobile] [--precisions fp32] [--repeats 3]
    .venv/bin/python benchmarks/export_cost.py --scenario demo --out benchmarks/results/export_cost_demo.json
    .venv/bin/python benchmarks/export_cost.py --scenario calibrated --out benchmarks/results/export_cost_calibrated.json

``--scenario matrix`` (default): builds a full-width random-init checkpoint of the preset (weights do
not change conversion cost), exports it ``--repeats`` times with `styleport.export.bundle.export_bundle`
and reports the median and min-max wall time, per artefact and in total.

The other scenarios export the embedded default model (Google's weights, as `styleport demo`) on
the demo's own images (sample_sets without ../shared, so every machine times the same inputs):

* ``demo``: exactly the export `styleport demo` runs (four formats x fp32, fp16, int8 at 384 px,
  style 256 px, calibrated on the demo's images, plain int8 only: styleport.demo.demo_calibration);
* ``demo-search``: `styleport demo --int8-search` (every int8 variant, --target-psnr 30 choice);
* ``calibrated``: `styleport export --formats onnx,tflite,coreml,executorch --precisions fp32,fp16,int8
  --calib-content DIR --calib-style DIR` (every int8 variant, no choice).

``--compare-serial``: every repeat also exports with ``parallel=False`` (ExecuTorch in the main
process; the two orders alternate between repeats), so the JSON has the serial/parallel ratio of
one run.

Every scenario also records the manifest's per-step timings (``export.timings``: by step, by
format) of the median run. Writes ``--out`` (default benchmarks/results/export_cost.json).
"""

from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=("matrix", "demo", "demo-search", "calibrated"), default="matrix")
    ap.add_argument("--preset", default="magenta-mobile")
    ap.add_argument("--formats", default="onnx,tflite,coreml")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "export_cost.json"))
    ap.add_argument("--compare-serial", action="store_true",
                    help="also export with ExecuTorch in the main process (parallel=False) each repeat")
    args = ap.parse_args(argv)

    import torch

    from styleport.export.bundle import export_bundle, tool_versions
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    from styleport.runtime.harness.machine import machine_info

    torch.set_num_threads(2)
    runs = []
    formats, precisions = args.formats.split(","), args.precisions.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"size": args.size}
        if args.scenario == "matrix":
            cfg = default_config(args.preset)
            torch.manual_seed(0)
            ck = save_checkpoint(build(cfg), cfg, Path(tmp) / "ck")
        else:
            from styleport.demo import demo_calibration, sample_sets, write_samples
            from styleport.models.default import load_default
            model, doc = load_default()
            ck = save_checkpoint(model, doc["model"], Path(tmp) / "ck")
            sdir, pdir = write_samples(Path(tmp), *sample_sets(False, False))
            formats, precisions = ["onnx", "tflite", "coreml", "executorch"], ["fp32", "fp16", "int8"]
            kw = {"size": 384, "style_size": 256}
            if args.scenario == "calibrated":
                kw["calibration"] = {"content": str(sdir / "content"), "style": str(sdir / "style")}
            else:
                kw["calibration"] = demo_calibration(sdir, pdir, int8_search=args.scenario == "demo-search")
        serial = []
        for i in range(args.repeats):
            if args.compare_serial and i % 2 == 0:
                t0 = time.perf_counter()
                export_bundle(ck, Path(tmp) / f"s{i}", formats, precisions, progress=False, parallel=False, **kw)
                serial.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m = export_bundle(ck, Path(tmp) / f"b{i}", formats, precisions, progress=False, **kw)
            total = time.perf_counter() - t0
            if args.compare_serial and i % 2 == 1:
                t0 = time.perf_counter()
                export_bundle(ck, Path(tmp) / f"s{i}", formats, precisions, progress=False, parallel=False, **kw)
                serial.append(time.perf_counter() - t0)
            # variant artefacts (e.g. CoreML palettisations) carry no "seconds": they are made, and
            # timed, inside their precision's primary artefact
            runs.append({"total_s": total, "artifacts": {f"{a['model']}/{a['format']}/{a['precision']}":
                                                         a["details"]["seconds"] for a in m["artifacts"]
                                                         if "variant" not in a and "seconds" in a["details"]},
                         "timings": {k: m["export"]["timings"][k] for k in ("wall_s", "steps_s", "by_step",
                                                                             "by_format", "parallel")
                                     if k in m["export"]["timings"]},
                         "artifact_count": len(m["artifacts"])})
            print(f"run {i + 1}: {total:.1f} s", file=sys.stderr)
    totals = [r["total_s"] for r in runs]
    keys = runs[0]["artifacts"].keys()
    median_run = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
    doc = {"benchmark": "export_cost", "scenario": args.scenario,
           "command": "python benchmarks/export_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "preset": args.preset if args.scenario == "matrix" else "embedded default (Magenta, styleport/assets)",
           "formats": ",".join(formats), "precisions": ",".join(precisions),
           "size": kw["size"], "repeats": args.repeats, "loadavg": list(os.getloadavg()),
           "calibration": {k: (Path(v).name if isinstance(v, str) and "/" in v else v)
                           for k, v in (kw.get("calibration") or {}).items()} or None,
           "artifact_count": median_run["artifact_count"], "timings": median_run["timings"], "machine": machine_info(), "tools": tool_versions(),
           "total_s": {"median": statistics.median(totals), "min": min(totals), "max": max(totals)},
           "per_artifact_s": {k: statistics.median(r["artifacts"][k] for r in runs) for k in keys}}
    if serial:
        doc["serial_total_s"] = {"median": statistics.median(serial), "min": min(serial), "max": max(serial),
                                 "note": "the same export with parallel=False (ExecuTorch in the main process)"}
        doc["serial_over_parallel"] = round(statistics.median(serial) / statistics.median(totals), 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"total_s": doc["total_s"], "per_artifact_s": doc["per_artifact_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
