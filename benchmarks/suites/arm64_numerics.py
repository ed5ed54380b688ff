"""Suite - x86 vs the real aarch64 kernels under QEMU (issue 22), and our fp16 emulator vs them.

For each network's transformer artefacts (ONNX and TFLite at fp32, fp16 and int8), PSNR against
the fp32 PyTorch checkpoint on the same inputs, computed by:

    x86          the artefact in its own runtime here (onnxruntime / litert)
    arm          the same file in onnxruntime-arm64 / litert-arm64 (QEMU, cortex-a76)
    arm_fp16     TFLite float files: litert-arm64 --arm-fp16 (XNNPACK FORCE_FP16, Android's
                 fp16-allowed CPU inference)
    x86_fp16     TFLite float files: the same CompiledModel + FORCE_FP16 on x86 (XNNPACK's x86 fp16 path)
    emu_fp16 / emu_acc16   `--emulate fp16` / `fp16-acc16` (float files)

and, for Google's original Magenta int8 files (../shared/data/magenta), x86 vs arm bit for bit.

    .venv/bin/python benchmarks/suites/arm64_numerics.py [--size 128] [--formats onnx,tflite]

Needs `styleport device setup arm64` (QEMU user mode + the sysroot); writes
benchmarks/results/arm64_numerics.json with the QEMU and wheel versions. Emulated runs are slow
(~10-50x native), hence the small default size; no time here is a latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import MAGENTA, ROOT, loadavg, machine, write  # noqa: E402
from suites.fp16_emulation import EX255_LABEL, GOOGLE_LABEL, images, measured_networks  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = {"onnx": "onnxruntime", "tflite": "litert"}
ARM = {"onnx": "onnxruntime-arm64", "tflite": "litert-arm64"}


def _r(v):
    return None if v is None else round(float(v), 2)


def run_runner(rt, path, plan, canonical, **options):
    from styleport.runtime.runners.registry import make_runner
    with make_runner(rt, path, threads=2, **options) as r:
        return plan.canonical_outputs(r.run(plan.feeds(canonical)))["stylized_image"]


def x86_forced_fp16(path, plan, canonical):
    """The arm64 worker run by this host's Python: CompiledModel + FORCE_FP16 on x86's XNNPACK."""
    from styleport.runtime.runners.arm64 import _litert_spec, host_worker
    w = host_worker("litert x86 fp16")
    try:
        info = w.request({"op": "open", "runtime": "litert", "model": str(path), "threads": 2, "fp16": True})
        names = [_litert_spec(d).name for d in info["inputs"]]
        feeds = plan.feeds(canonical)
        out = w.run({n: feeds[n] for n in names})
    finally:
        w.close()
    return plan.canonical_outputs(out)["stylized_image"]


def measure(bundle: Path, ckpt: Path, inputs, bottleneck, label: str) -> list[dict]:
    from styleport import manifest as mf
    from styleport.runtime.harness.adapt import IOPlan
    from styleport.runtime.harness.reference import Reference
    from styleport.runtime.harness.targets import manifest_specs
    from styleport.runtime.harness.tolerances import compare
    from styleport.runtime.numerics.emulate import emulate
    doc = mf.load(bundle)
    ref = Reference(ckpt)
    rows = []
    for a in doc["artifacts"]:
        if a["model"] != "transformer" or a.get("variant") or a["format"] not in HOST:
            continue
        path = mf.artifact_path(bundle, a)
        row = {"network": label, "format": a["format"], "precision": a["precision"], "path": a["path"], "images": []}
        for name, x in inputs:
            canonical = {"content_image": x}
            if bottleneck is not None:
                canonical["style_bottleneck"] = bottleneck
            want = ref.run("transformer", canonical)["stylized_image"]
            plan = IOPlan(manifest_specs(a["inputs"]), manifest_specs(a["outputs"]), x.shape[2:])
            res = {"image": name}
            outs = {"x86": run_runner(HOST[a["format"]], path, plan, canonical)}
            t0 = time.perf_counter()
            outs["arm"] = run_runner(ARM[a["format"]], path, plan, canonical)
            res["arm_emulated_s"] = round(time.perf_counter() - t0, 1)
            if a["format"] == "tflite" and a["precision"] != "int8":
                outs["arm_fp16"] = run_runner("litert-arm64", path, plan, canonical, arm_fp16=True)
                outs["x86_fp16"] = x86_forced_fp16(path, plan, canonical)
            if a["precision"] != "int8":
                for mode, key in (("fp16", "emu_fp16"), ("fp16-acc16", "emu_acc16")):
                    e = emulate(path, plan.feeds(canonical), mode, reference=False)
                    outs[key] = plan.canonical_outputs(e.outputs)["stylized_image"]
            for k, v in outs.items():
                res[f"{k}_psnr_db"] = _r(compare(want, v)["psnr_db"])
            res["arm_vs_x86_psnr_db"] = _r(compare(outs["x86"], outs["arm"])["psnr_db"])
            res["arm_vs_x86_max_abs"] = float(np.abs(outs["x86"].astype(np.float64) - outs["arm"]).max())
            res["arm_bit_identical"] = bool(np.array_equal(outs["x86"], outs["arm"]))
            print(f"{label} {a['format']} {a['precision']} {name}: "
                  + ", ".join(f"{k} {res[f'{k}_psnr_db']}" for k in outs), file=sys.stderr, flush=True)
            row["images"].append(res)
        for k in [k[:-8] for k in row["images"][0] if k.endswith("_psnr_db") and k != "arm_vs_x86_psnr_db"]:
            vals = [r[f"{k}_psnr_db"] for r in row["images"]]
            row[f"{k}_psnr_db_mean"] = None if any(v is None for v in vals) else _r(np.mean(vals))
        row["arm_bit_identical"] = all(r["arm_bit_identical"] for r in row["images"])
        rows.append(row)
    ref.close()
    return rows


def google_originals() -> list[dict]:
    """Google's own int8 files, x86 vs arm on a seeded random input (their fixed sizes)."""
    from styleport.runtime.runners.registry import make_runner
    out = []
    rng = np.random.default_rng(0)
    bott = None
    for f in ("style_predict_quantized_256.tflite", "style_transfer_quantized_384.tflite"):
        p = MAGENTA / f
        if not p.is_file():
            continue
        res = {"file": f}
        with make_runner("litert", p, threads=2) as h:
            feeds = {}
            for s in h.input_specs():
                shape = s.concrete_shape()
                feeds[s.name] = bott if (bott is not None and shape[-1] == 100) else rng.random(shape, dtype=np.float32)
            x86 = h.run(feeds)
        t0 = time.perf_counter()
        with make_runner("litert-arm64", p, threads=2) as a:
            arm = a.run(feeds)
        res["arm_emulated_s"] = round(time.perf_counter() - t0, 1)
        if bott is None:
            bott = next(iter(x86.values()))
        res["bit_identical"] = all(np.array_equal(x86[k], arm[k]) for k in x86)
        res["max_abs"] = max(float(np.abs(x86[k] - arm[k]).max()) for k in x86)
        print(f"google original {f}: bit-identical {res['bit_identical']}", file=sys.stderr, flush=True)
        out.append(res)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--formats", default="onnx,tflite")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from styleport.device import arm64 as D
    from styleport.export.bundle import export_bundle
    sysroot = D.find()   # RuntimeUnavailable (exit 3) with the setup command when missing
    stamp = sysroot.info()
    la0 = loadavg()
    t_start = time.perf_counter()
    formats = [f for f in args.formats.split(",") if f]
    inputs = images(args.images, args.size)
    rows, notes = [], []
    originals = google_originals()
    with tempfile.TemporaryDirectory(prefix="arm64num-") as tmp:
        tmp = Path(tmp)
        (g, gb), (ex, _) = measured_networks(tmp, notes)
        nets = ([(GOOGLE_LABEL, g, gb)] if g else []) + [(EX255_LABEL, ex, None)]
        for i, (label, ckpt, bottleneck) in enumerate(nets):
            b = tmp / f"b{i}"
            t0 = time.perf_counter()
            export_bundle(ckpt, b, formats, ["fp32", "fp16", "int8"], size=args.size, progress=False,
                          calibration={"variants": False})
            print(f"exported {label} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            rows += measure(b, ckpt, inputs, bottleneck, label)
    cols = ("x86", "arm", "arm_fp16", "x86_fp16", "emu_fp16", "emu_acc16")
    print("\n| network | format | precision | " + " | ".join(cols) + " | arm = x86 bit for bit |", file=sys.stderr)
    for r in rows:
        print(f"| {r['network']} | {r['format']} | {r['precision']} | "
              + " | ".join(str(r.get(f"{c}_psnr_db_mean", "-")) for c in cols) + f" | {r['arm_bit_identical']} |",
              file=sys.stderr)
    write("arm64_numerics", {"suite": "arm64_numerics", "size": args.size, "images": [n for n, _ in inputs],
                             "machine": machine(), "threads": 2, "loadavg": [la0, loadavg()],
                             "seconds": round(time.perf_counter() - t_start, 1), "psnr_peak": 1.0,
                             "reference": "fp32 PyTorch checkpoint", "arm_cpu": D.DEFAULT_CPU,
                             "qemu": stamp.get("qemu"), "sysroot": stamp.get("debian"),
                             "wheels_aarch64": stamp.get("wheels"), "guest": stamp.get("guest"),
                             "google_originals": originals, "rows": rows, "notes": notes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
