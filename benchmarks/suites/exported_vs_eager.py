"""Suite 1 - exported vs eager: each preset's transformer (full width) in torch eager vs ONNX Runtime
vs LiteRT vs ExecuTorch (XNNPACK) at fp32 / fp16 / int8, 1 and 2 threads, every side interleaved run by
run in one process.

    .venv/bin/python benchmarks/suites/exported_vs_eager.py [--presets ...] [--sizes 256,384,512] \
        [--threads 1,2] [--runs 10] [--warmup 2] [--formats onnx,tflite,executorch]

magenta-mobile uses Google's imported weights (../shared/data/magenta); the other presets random
init (seed 0) - latency does not depend on the weight values, except through denormals, which a
random init does not produce. int8 is styleport's plain int8 artefact: ONNX dynamic (per-channel
uint8 weights, ConvInteger), TFLite dynamic-range (int8 weights, float activations), ExecuTorch PT2E
XNNPACK dynamic int8 (conv + linear, instance norm float), plus ExecuTorch's static int8 variant
("int8-static", calibrated on procedural images: latency does not depend on the calibration values).
Goals: exported fp32 <= 0.7x torch eager; int8 <= 0.6x fp32 on the same runtime; ExecuTorch fp32
<= 1.1x LiteRT fp32 (both XNNPACK).
Writes benchmarks/results/exported_vs_eager.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import (build_model, executorch_call, export_transformer, feeds_for, interleave,  # noqa: E402
                           litert_call, loadavg, op_hist, ort_session, paired_ratio, stats, write)

PRECS = ("fp32", "fp16", "int8")
RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "executorch": "executorch"}
CALIBRATION = {"synthetic": True, "count": 8}  # for ExecuTorch's static int8 variant
VARIANTS = {"executorch": ("static",)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="magenta-mobile,johnson,dumoulin,ghiasi")
    ap.add_argument("--sizes", default="256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--formats", default="onnx,tflite,executorch")
    ap.add_argument("--tag", default="", help="suffix of the results file (exported_vs_eager_TAG.json)")
    args = ap.parse_args(argv)
    import torch

    formats = args.formats.split(",")
    rows, hists, weights, skipped = [], {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            model, weights[preset] = build_model(preset)
            from styleport.export.wrappers import export_module
            eager = export_module(model, "transformer", "onnx").eval()
            for size in (int(s) for s in args.sizes.split(",")):
                folder = Path(tmp) / f"{preset}_{size}"
                try:
                    paths = {f: export_transformer(model, folder, f, PRECS, size, calibration=CALIBRATION,
                                                   variants=VARIANTS.get(f, ())) for f in formats}
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
                    for p in PRECS if "onnx" in paths else ():
                        s = ort_session(paths["onnx"][p], th)
                        keep.append(s)
                        sides[f"onnxruntime/{p}"] = (lambda s=s: s.run(None, nchw))
                    for p in PRECS if "tflite" in paths else ():
                        fn, r = litert_call(paths["tflite"][p], th, nhwc)
                        keep.append(r)
                        sides[f"litert/{p}"] = fn
                    for p in PRECS + ("int8-static",) if "executorch" in paths else ():
                        fn, r = executorch_call(paths["executorch"][p], th, nchw)
                        keep.append(r)
                        sides[f"executorch/{p}"] = fn
                    la0 = loadavg()
                    t = interleave(sides, args.runs, args.warmup)
                    row = {"preset": preset, "size": size, "threads": th, "loadavg": [la0, loadavg()],
                           "latency": {k: stats(v) for k, v in t.items()},
                           "ratios": {f"{RUNTIME[f]}/fp32 vs torch": paired_ratio(t["torch/eager"],
                                                                                  t[f"{RUNTIME[f]}/fp32"])
                                      for f in formats}}
                    for rt in (RUNTIME[f] for f in formats):
                        for p in ("fp16", "int8", "int8-static"):
                            if f"{rt}/{p}" in t:
                                row["ratios"][f"{rt}/{p} vs {rt}/fp32"] = paired_ratio(t[f"{rt}/fp32"], t[f"{rt}/{p}"])
                    if "executorch" in formats and "tflite" in formats:
                        row["ratios"]["executorch/fp32 vs litert/fp32"] = paired_ratio(t["litert/fp32"],
                                                                                       t["executorch/fp32"])
                    rows.append(row)
                    lat = row["latency"]
                    print(f"{preset} {size}² {th}t load {la0[0]}: " + ", ".join(
                        f"{k} {v['median_ms']:.0f}" for k, v in lat.items()), file=sys.stderr, flush=True)
                    for r in keep:
                        if hasattr(r, "close"):
                            r.close()
    write("exported_vs_eager" + (f"_{args.tag}" if args.tag else ""), {"suite": "exported_vs_eager", "runs": args.runs, "warmup": args.warmup,
                                "weights": weights, "rows": rows, "op_histograms": hists, "skipped": skipped,
                                "goals": {"exported_fp32_vs_eager": 0.7, "int8_vs_fp32": 0.6,
                                          "executorch_fp32_vs_litert_fp32": 1.1}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
