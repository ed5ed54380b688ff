"""Suite (proposed, issue 13) - int8 vs fp32 per runtime: each preset's transformer exported by
styleport at fp32 and int8 (calibrated, so the plain ONNX int8 is ``qlinear``), timed interleaved
run by run in one process per preset x threads, plus PSNR of every int8 against fp32 PyTorch.

    .venv/bin/python benchmarks/suites/int8_runtimes.py [--presets magenta-mobile,johnson] \
        [--sizes 384] [--threads 1,2] [--runs 10] [--warmup 2] [--calib-count 8] [--profile]

Sides per runtime: ONNX Runtime fp32, int8 (plain = qlinear), int8 dynamic; LiteRT fp32 and its
plain int8 (dynamic-range); ExecuTorch fp32, int8 (plain = PT2E dynamic) and int8 static. Calibration: scikit-image's sample images that are not the held-out photos (content
and style), as benchmarks/quantization.md; held-out: ../shared/data/images (4 photos x 2 paintings)
when present, else styleport's procedural images (the result says which). magenta-mobile uses
Google's imported weights when ../shared/data/magenta exists; johnson random init (seed 0).
``--profile`` adds ONNX Runtime per-op profiles (runtime/runners/ort.py) of the ORT sides.
Goals (issue 13): ORT int8 <= 0.6x ORT fp32 on johnson 384², <= 0.8x on magenta-mobile at >= 30 dB.
ExecuTorch (issue 17): int8 <= 0.6x its fp32.
Writes benchmarks/results/int8_runtimes.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import (IMAGES, build_model, executorch_call, feeds_for, interleave, litert_call,  # noqa: E402
                           loadavg, ort_session, paired_ratio, stats, write)

GOALS = {"johnson": 0.6, "magenta-mobile": 0.8}


def calibration_folder(folder: Path) -> dict:
    """scikit-image's sample images minus the held-out photos: a real calibration set offline."""
    import skimage
    folder.mkdir(parents=True, exist_ok=True)
    held = {p.stem for p in (IMAGES / "content").iterdir()} if IMAGES.exists() else {"astronaut", "chelsea",
                                                                                       "coffee", "rocket"}
    for p in sorted(Path(skimage.data_dir).iterdir()):
        if p.suffix in (".png", ".jpg") and p.stem not in held and "GRAY" not in p.stem:
            shutil.copy(p, folder / p.name)
    return {"content": str(folder), "style": str(folder)}


def export(model, folder: Path, size: int, calib: dict, count: int) -> dict:
    """fp32 + plain int8 (+ ONNX dynamic) for ONNX and TFLite through styleport's own exporters."""
    from styleport.export.onnx_export import export_onnx
    from styleport.export.tflite_export import export_tflite
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import make_variant
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for fmt, ext, fn in (("onnx", ".onnx", export_onnx), ("tflite", ".tflite", export_tflite)):
        module = export_module(model, "transformer", fmt)
        inputs, outputs, sample = io_spec(model, "transformer", fmt, (size, size), 256)
        base = folder / f"{fmt}.fp32{ext}"
        fn(module, sample, inputs, outputs, base)
        int8 = folder / f"{fmt}.int8{ext}"
        d = make_variant(fmt, "int8", base, int8, module=module, sample=sample, inputs=inputs, outputs=outputs,
                         network="transformer", model=model, calibration=dict(calib, count=count))
        out[fmt] = {"fp32": base, "int8": int8, "inputs": inputs, "int8_kind": d.get("int8_kind"),
                    "int8_method": d.get("method")}
        for v in d.get("variants", []):
            if v["variant"] == "dynamic":
                out[fmt]["int8 dynamic"] = v["path"]
    # ExecuTorch (issue 17): PT2E from the module; plain int8 = dynamic, "static" when calibrated
    from suites.common import export_transformer
    et = export_transformer(model, folder, "executorch", ["int8"], size, calibration=dict(calib, count=count),
                            variants=("static",))
    inputs, _, _ = io_spec(model, "transformer", "executorch", (size, size), 256)
    out["executorch"] = {"fp32": et["fp32"], "int8": et["int8"], "inputs": inputs, "int8_kind": "dynamic",
                         "int8_method": "PT2E XNNPACKQuantizer (dynamic)"}
    if "int8-static" in et:
        out["executorch"]["int8 static"] = et["int8-static"]
    return out


def psnr_rows(model, paths: dict, size: int) -> tuple[dict, str]:
    from styleport.quantization.report import evaluate
    arts, root = [], None
    for fmt, p in paths.items():
        for prec in [k for k in p if k.startswith("int8") and k != "int8_kind" and k != "int8_method"]:
            root = p[prec].parent
            arts.append({"model": "transformer", "format": fmt, "precision": "int8",
                         "variant": prec[5:] or None, "path": p[prec].name,
                         "bytes": p[prec].stat().st_size, "inputs": p["inputs"]})
    held = {"eval_content": IMAGES / "content", "eval_style": IMAGES / "style"} if IMAGES.exists() else {}
    doc = evaluate(arts, root, model, (size, size), 256, held)
    return ({f"{r['format']}/{'int8 ' + r['variant'] if r.get('variant') else 'int8'}":
             {"psnr_db": r.get("psnr_db"), "psnr_min_db": r.get("psnr_min_db"), "bytes": r["bytes"]}
             for r in doc["results"]}, doc["held_out"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="magenta-mobile,johnson")
    ap.add_argument("--sizes", default="384")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--calib-count", type=int, default=8)
    ap.add_argument("--profile", action="store_true", help="ONNX Runtime per-op profiles of the ORT sides")
    ap.add_argument("--tag", default="", help="suffix of the results file (int8_runtimes_TAG.json)")
    args = ap.parse_args(argv)
    from styleport.quantization.onnx_quant import ort_kernels
    rows, weights, quality, kinds = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        calib = calibration_folder(Path(tmp) / "calib")
        for preset in args.presets.split(","):
            model, weights[preset] = build_model(preset)
            for size in (int(s) for s in args.sizes.split(",")):
                paths = export(model, Path(tmp) / f"{preset}_{size}", size, calib, args.calib_count)
                q, held = psnr_rows(model, paths, size)
                quality[f"{preset}/{size}"] = {"psnr": q, "held_out": held}
                kinds[f"{preset}/{size}"] = {f: {"int8_kind": p["int8_kind"], "int8_method": p["int8_method"]}
                                             for f, p in paths.items()}
                kinds[f"{preset}/{size}"]["onnx"]["ort_kernels"] = ort_kernels(paths["onnx"]["int8"])
                nchw, nhwc = feeds_for(model, size, False), feeds_for(model, size, True)
                for th in (int(t) for t in args.threads.split(",")):
                    sides, keep = {}, []
                    for prec in ("fp32", "int8", "int8 dynamic"):
                        if prec in paths["onnx"]:
                            s = ort_session(paths["onnx"][prec], th)
                            keep.append(s)
                            sides[f"onnxruntime/{prec}"] = (lambda s=s: s.run(None, nchw))
                    for prec in ("fp32", "int8"):
                        fn, r = litert_call(paths["tflite"][prec], th, nhwc)
                        keep.append(r)
                        sides[f"litert/{prec}"] = fn
                    for prec in ("fp32", "int8", "int8 static"):
                        if prec in paths["executorch"]:
                            fn, r = executorch_call(paths["executorch"][prec], th, nchw)
                            keep.append(r)
                            sides[f"executorch/{prec}"] = fn
                    la0 = loadavg()
                    t = interleave(sides, args.runs, args.warmup)
                    row = {"preset": preset, "size": size, "threads": th, "loadavg": [la0, loadavg()],
                           "latency": {k: stats(v) for k, v in t.items()},
                           "ratios": {f"{k} vs {k.split('/')[0]}/fp32": paired_ratio(t[k.split("/")[0] + "/fp32"], t[k])
                                      for k in t if not k.endswith("/fp32")}}
                    if args.profile:
                        from styleport.runtime.runners.ort import OrtRunner
                        row["profiles"] = {}
                        for prec in ("fp32", "int8"):
                            with OrtRunner(paths["onnx"][prec], threads=th) as r:
                                row["profiles"][f"onnxruntime/{prec}"] = r.profile(nchw, args.runs)
                    rows.append(row)
                    print(f"{preset} {size}² {th}t load {la0[0]}: " + ", ".join(
                        f"{k} {v['median_ms']:.0f}" for k, v in row["latency"].items()), file=sys.stderr, flush=True)
                    for r in keep:
                        if hasattr(r, "close"):
                            r.close()
    write("int8_runtimes" + (f"_{args.tag}" if args.tag else ""),
          {"suite": "int8_runtimes", "runs": args.runs, "warmup": args.warmup, "weights": weights, "rows": rows,
           "quality": quality, "int8": kinds, "goals_ort_int8_vs_fp32": GOALS, "psnr_goal_db": 30})
    return 0


if __name__ == "__main__":
    sys.exit(main())
