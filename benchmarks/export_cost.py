"""Toolkit cost: wall time of exporting a full-width checkpoint to ONNX, TFLite and CoreML.

    .venv/bin/python benchmarks/export_cost.py [--preset magenta-mobile] [--precisions fp32] [--repeats 3]

Builds a full-width random-init checkpoint of the preset (weights do not change conversion cost),
exports it ``--repeats`` times with `styleport.export.bundle.export_bundle` and reports the median
and min-max wall time, per artefact and in total. Writes benchmarks/results/export_cost.json.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--preset", default="magenta-mobile")
    ap.add_argument("--formats", default="onnx,tflite,coreml")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "export_cost.json"))
    args = ap.parse_args(argv)

    import torch

    from styleport.export.bundle import export_bundle, tool_versions
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    from styleport.runtime.harness.machine import machine_info

    torch.set_num_threads(2)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = default_config(args.preset)
        torch.manual_seed(0)
        ck = save_checkpoint(build(cfg), cfg, Path(tmp) / "ck")
        for i in range(args.repeats):
            t0 = time.perf_counter()
            m = export_bundle(ck, Path(tmp) / f"b{i}", args.formats.split(","), args.precisions.split(","),
                              size=args.size, progress=False)
            total = time.perf_counter() - t0
            # variant artefacts (e.g. CoreML palettisations) carry no "seconds": they are made, and
            # timed, inside their precision's primary artefact
            runs.append({"total_s": total, "artifacts": {f"{a['model']}/{a['format']}/{a['precision']}":
                                                         a["details"]["seconds"] for a in m["artifacts"]
                                                         if "variant" not in a and "seconds" in a["details"]}})
            print(f"run {i + 1}: {total:.1f} s", file=sys.stderr)
    totals = [r["total_s"] for r in runs]
    keys = runs[0]["artifacts"].keys()
    doc = {"benchmark": "export_cost", "preset": args.preset, "formats": args.formats, "precisions": args.precisions,
           "size": args.size, "repeats": args.repeats, "machine": machine_info(), "tools": tool_versions(),
           "total_s": {"median": statistics.median(totals), "min": min(totals), "max": max(totals)},
           "per_artifact_s": {k: statistics.median(r["artifacts"][k] for r in runs) for k in keys}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"total_s": doc["total_s"], "per_artifact_s": doc["per_artifact_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
