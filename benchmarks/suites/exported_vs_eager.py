"""Suite 1 - exported vs eager: each preset's transformer (full width) in torch eager vs ONNX Runtime
vs LiteRT at fp32 / fp16 / int8, 1 and 2 threads, every side interleaved run by run in one process.

    .venv/bin/python benchmarks/suites/exported_vs_eager.py [--presets ...] [--sizes 256,384,512] \
        [--threads 1,2] [--runs 10] [--warmup 2]

magenta-mobile uses Google's imported weights (../shared/data/magenta); the other presets random
init (seed 0) - latency does not depend on the weight values, except through denormals, which a
random init does not produce. int8 is styleport's plain int8 artefact: ONNX dynamic (per-channel
uint8 weights, ConvInteger), TFLite dynamic-range (int8 weights, float activations).
Goals: exported fp32 <= 0.7x torch eager; int8 <= 0.6x fp32 on the same runtime.
Writes benchmarks/results/exported_vs_eager.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import (build_model, export_transformer, feeds_for, interleave, litert_call, loadavg,  # noqa: E402
                           op_hist, ort_session, paired_ratio, stats, write)

PRECS = ("fp32", "fp16", "int8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="magenta-mobile,johnson,dumoulin,ghiasi")
    ap.add_argument("--sizes", default="256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the results file (exported_vs_eager_TAG.json)")
    args = ap.parse_args(argv)
    import torch

    rows, hists, weights, skipped = [], {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            model, weights[preset] = build_model(preset)
            from styleport.export.wrappers import export_module
            eager = export_module(model, "transformer", "onnx").eval()
            for size in (int(s) for s in args.sizes.split(",")):
                folder = Path(tmp) / f"{preset}_{size}"
                try:
                    paths = {f: export_transformer(model, folder, f, PRECS, size) for f in ("onnx", "tflite")}
                except Exception as e:  # noqa: BLE001 - a size a runtime cannot take is a result, not a crash
                    msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
                    skipped.append({"preset": preset, "size": size, "error": msg})
                    print(f"{preset} {size}²: skipped ({msg})", file=sys.stderr, flush=True)
                    continue
                if preset not in hists:
                    hists[preset] = {f"{f}/{p}": op_hist(paths[f][p]) for f in paths for p in PRECS}
                nchw, nhwc = feeds_for(model, size, False), feeds_for(model, size, True)
                targs = tuple(torch.from_numpy(v) for v in nchw.values())
                for th in (int(t) for t in args.threads.split(",")):
                    torch.set_num_threads(th)

                    def eager_run():
                        with torch.inference_mode():
                            eager(*targs)
                    sides, keep = {"torch/eager": eager_run}, []
                    for p in PRECS:
                        s = ort_session(paths["onnx"][p], th)
                        keep.append(s)
                        sides[f"onnxruntime/{p}"] = (lambda s=s: s.run(None, nchw))
                    for p in PRECS:
                        fn, r = litert_call(paths["tflite"][p], th, nhwc)
                        keep.append(r)
                        sides[f"litert/{p}"] = fn
                    la0 = loadavg()
                    t = interleave(sides, args.runs, args.warmup)
                    row = {"preset": preset, "size": size, "threads": th, "loadavg": [la0, loadavg()],
                           "latency": {k: stats(v) for k, v in t.items()},
                           "ratios": {f"{rt}/fp32 vs torch": paired_ratio(t["torch/eager"], t[f"{rt}/fp32"])
                                      for rt in ("onnxruntime", "litert")}}
                    for rt in ("onnxruntime", "litert"):
                        for p in ("fp16", "int8"):
                            row["ratios"][f"{rt}/{p} vs {rt}/fp32"] = paired_ratio(t[f"{rt}/fp32"], t[f"{rt}/{p}"])
                    rows.append(row)
                    lat = row["latency"]
                    print(f"{preset} {size}² {th}t load {la0[0]}: " + ", ".join(
                        f"{k} {v['median_ms']:.0f}" for k, v in lat.items()), file=sys.stderr, flush=True)
                    for r in keep:
                        if hasattr(r, "close"):
                            r.close()
    write("exported_vs_eager" + (f"_{args.tag}" if args.tag else ""), {"suite": "exported_vs_eager", "runs": args.runs, "warmup": args.warmup,
                                "weights": weights, "rows": rows, "op_histograms": hists, "skipped": skipped,
                                "goals": {"exported_fp32_vs_eager": 0.7, "int8_vs_fp32": 0.6}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
