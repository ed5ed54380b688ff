"""Suite (issue 23) - ONNX Runtime Web (WASM, headless Chromium) beside native ONNX Runtime, on the demo's
model: the embedded default model exported by styleport to ONNX fp32, fp16 and int8 (calibrated, so the
plain int8 transformer is ``qlinear``) at 384² content / 256² style.

    .venv/bin/python benchmarks/suites/web_runtime.py [--size 384] [--threads 1,2] [--runs 5]

Needs Chromium, playwright and `styleport device setup web`; without them it writes nothing and says why.
Per artefact: browser vs native outputs on one photo and one painting (skimage's astronaut and coffee at
the model's size); latency p50 of native ORT and of ORT Web at each thread count (ORT Web: session.run
timed in the page, and the whole call with tensor transfers), each side in its own session, runs one after
another (not interleaved: the browser holds its session between runs). Int8: the transformer once more
with graph optimizations disabled on both sides (QDQ nodes kept as DequantizeLinear -> float op ->
QuantizeLinear instead of fused integer kernels), to tell a kernel difference from a rounding one.
Writes benchmarks/results/web_runtime.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import loadavg, stats, write  # noqa: E402


def _metrics(a, b, image: bool) -> dict:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = {"max_abs": float(np.abs(a64 - b64).max()),
         "rel_l2": float(np.linalg.norm(a64 - b64) / (np.linalg.norm(b64) or 1.0))}
    if image:
        mse = float(np.mean((np.clip(a64, 0, 1) - np.clip(b64, 0, 1)) ** 2))
        d["psnr_db"] = round(10 * np.log10(1 / mse), 2) if mse > 0 else None  # None: identical
    return d


def _image(name: str, size: int) -> np.ndarray:
    import skimage.data
    from PIL import Image
    im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((size, size), Image.BICUBIC)
    return (np.asarray(im, np.float32) / 255).transpose(2, 0, 1)[None].copy()


def _feeds(inputs, content, style, bottleneck):
    out = {}
    for s in inputs:
        out[s.name] = style if s.name == "style_image" else (bottleneck if "bottleneck" in s.name else content)
    return out


def _time(runner, feeds, runs):
    import time
    runner.run(feeds)  # first run (allocation, WASM compile caches) left out
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(feeds)
        wall.append(time.perf_counter() - t0)
    return wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--style-size", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    from styleport.web import assets
    miss = assets.missing()
    if miss:
        print("web_runtime: skipped: " + "; ".join(miss))
        return 0
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.default import describe, load_default
    from styleport.runtime.runners.ort import OrtRunner
    from styleport.runtime.runners.web import WebRunner
    threads = [int(t) for t in args.threads.split(",")]
    doc = {"suite": "web_runtime", "loadavg_start": loadavg(), "size": args.size, "style_size": args.style_size,
           "runs": args.runs, "versions": {}, "artefacts": []}
    with tempfile.TemporaryDirectory(prefix="styleport-web-bench-") as td:
        td = Path(td)
        model, mdoc = load_default()
        doc["model"] = f"embedded default: {describe(mdoc)}"
        ckpt = save_checkpoint(model, mdoc["model"], td / "ckpt")
        calib = td / "calib"
        (calib / "c").mkdir(parents=True)
        from PIL import Image
        import skimage.data
        for n in ("chelsea", "rocket", "coffee", "astronaut"):
            Image.fromarray(getattr(skimage.data, n)()).convert("RGB").save(calib / "c" / f"{n}.png")
        from styleport.export.bundle import export_bundle
        export_bundle(ckpt, td / "b", ("onnx",), ("fp32", "fp16", "int8"), size=(args.size, args.size),
                      style_size=args.style_size, force=True, progress=False,
                      calibration={"content": str(calib / "c"), "style": str(calib / "c"), "count": None,
                                   "synthetic": False, "variants": False})
        content, style = _image("astronaut", args.size), _image("coffee", args.style_size)
        with OrtRunner(td / "b/onnx/predictor.fp32.onnx", threads=1) as r:
            bottleneck = r.run({"style_image": style})["style_bottleneck"]
        for f in sorted((td / "b/onnx").glob("*.onnx")):
            net, prec = f.name.split(".")[:2]
            row = {"model": net, "precision": prec, "file_bytes": f.stat().st_size, "latency_ms": {}}
            levels = ("all", "disable") if (prec == "int8" and net == "transformer") else ("all",)
            for level in levels:
                with OrtRunner(f, threads=1, optimization=level) as r:
                    feeds = _feeds(r.input_specs(), content, style, bottleneck)
                    ref = r.run(feeds)
                with WebRunner(f, threads=1, optimization=level) as w:
                    got = w.run(feeds)
                    doc["versions"] = w.versions()
                k = next(iter(ref))
                row["web_vs_native" if level == "all" else "web_vs_native_unfused"] = _metrics(got[k], ref[k], net == "transformer")
                if level == "disable":  # which native graph does the browser's fused int8 resemble?
                    with OrtRunner(f, threads=1) as r:
                        fused = r.run(feeds)[k]
                    with WebRunner(f, threads=1) as w:
                        web_fused = w.run(feeds)[k]
                    row["native_fused_vs_unfused"] = _metrics(fused, ref[k], True)
                    row["web_fused_vs_native_unfused"] = _metrics(web_fused, ref[k], True)
            if net != "transformer" or prec == "fp16":
                doc["artefacts"].append(row)
                print(net, prec, row)
                continue
            for t in threads:
                with OrtRunner(f, threads=t) as r:
                    nat = _time(r, feeds, args.runs)
                with WebRunner(f, threads=t) as w:
                    wall = _time(w, feeds, args.runs)
                    inner = [ms / 1e3 for ms in w.inner_times_ms[-args.runs:]]
                    d = w.describe()
                sn, si, sw = stats(nat), stats(inner), stats(wall)
                row["latency_ms"][str(t)] = {"native_ort": sn, "web_session_run": si, "web_call": sw,
                                             "web_over_native_p50": round(si["median_ms"] / sn["median_ms"], 2),
                                             "wasm_threads": d["wasm_threads"],
                                             "cross_origin_isolated": d["cross_origin_isolated"]}
            doc["artefacts"].append(row)
            print(net, prec, row)
    doc["note"] = ("ONNX Runtime Web's WASM backend (SIMD + threads) in headless Chromium on this CPU, not a "
                   "phone; web_session_run = session.run timed in the page, web_call = the runner's whole call "
                   "(tensors to and from the page over the local server)")
    p = write("web_runtime", doc)
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
