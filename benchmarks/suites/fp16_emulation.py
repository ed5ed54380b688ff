"""Suite - fp16 on x86 vs fp16 as phones compute it (issue #16).

For every bundle format (ONNX, TFLite, CoreML), the fp16 transformer's PSNR against the fp32
PyTorch checkpoint, computed four ways on the same inputs:

    x86       the artefact in its own runtime here (ORT / LiteRT+XNNPACK / coreml-mil), i.e. what
              `styleport parity` measured so far (fp16 weights, mostly fp32 arithmetic)
    fp16      `--emulate fp16`: every tensor stored in fp16, sums in fp32
    acc16     `--emulate fp16-acc16`: conv/matmul accumulators in fp16 too

on two networks:
    google    Google's Magenta transfer network imported from ../shared/data/magenta (skipped when
              absent), exported with the default (fp16-safe) export
    ex255     a pytorch/examples-style 0..255 network (styleport/models/examples255.py: conv1 peaks at
              2,800 on the procedural scene), exported with and without the fp16 rescale

    .venv/bin/python benchmarks/suites/fp16_emulation.py [--size 384] [--images 2]

Faithfulness (ex255, TFLite fp16 artefacts, --faith-size px): the TFLite emulator's fp16 output
against two independent implementations of the same arithmetic on the same decomposition -
PyTorch's CPU float16 kernels running the export module in the TFLite op forms (fp16 storage per op,
fp32 inside), and ORT with Cast pairs on an ONNX twin of that module - plus the interpreter's fp32
mode against LiteRT. No fp16-accumulating hardware is reachable here: acc16 has no such check.

Inputs: the first N content photos of ../shared/data/images/content (procedural scenes when
absent); Google's network gets the fp32 predictor's bottleneck of the first painting. Writes
benchmarks/results/fp16_emulation.json (PSNR peak 1.0; the first overflowing layer when there is one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import IMAGES, MAGENTA, ROOT, loadavg, machine, write  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PLAIN = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml-mil"}


def images(n: int, size: int) -> list[tuple[str, np.ndarray]]:
    from PIL import Image
    out = []
    files = sorted((IMAGES / "content").glob("*")) if (IMAGES / "content").is_dir() else []
    for f in files[:n]:
        img = Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)
        out.append((f.name, (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)[None].copy()))
    if not out:
        from styleport.samples import content_scene
        for seed in range(n):
            out.append((f"scene{seed}", (np.asarray(content_scene(size, seed=seed), np.float32) / 255.0)
                        .transpose(2, 0, 1)[None].copy()))
    return out


def style_bottleneck(ckpt: Path) -> np.ndarray | None:
    from PIL import Image

    from styleport.runtime.harness.reference import Reference
    files = sorted((IMAGES / "style").glob("*")) if (IMAGES / "style").is_dir() else []
    if files:
        img = Image.open(files[0]).convert("RGB").resize((256, 256), Image.BICUBIC)
    else:
        from styleport.samples import style_pattern
        img = style_pattern("swirl", 256)
    x = (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
    ref = Reference(ckpt)
    try:
        return ref.run("predictor", {"style_image": x})["style_bottleneck"]
    finally:
        ref.close()


def measure(bundle: Path, ckpt: Path, inputs, bottleneck, label: str) -> list[dict]:
    from styleport import manifest as mf
    from styleport.runtime.harness.adapt import IOPlan
    from styleport.runtime.numerics.emulate import emulate
    from styleport.runtime.harness.reference import Reference
    from styleport.runtime.harness.targets import manifest_specs
    from styleport.runtime.harness.tolerances import compare
    from styleport.runtime.runners.registry import make_runner
    doc = mf.load(bundle)
    ref = Reference(ckpt)
    rows = []
    for a in doc["artifacts"]:
        if a["model"] != "transformer" or a["precision"] != "fp16" or a.get("variant"):
            continue
        path = mf.artifact_path(bundle, a)
        row = {"network": label, "format": a["format"], "path": a["path"],
               "fp16_rescale": (a["details"].get("fp16_rescale") or {}).get("scaled"), "images": []}
        for name, x in inputs:
            canonical = {"content_image": x}
            if bottleneck is not None:
                canonical["style_bottleneck"] = bottleneck
            want = ref.run("transformer", canonical)["stylized_image"]
            res = {"image": name}
            with make_runner(PLAIN[a["format"]], path, threads=2) as r:
                plan = IOPlan(manifest_specs(a["inputs"]), manifest_specs(a["outputs"]), x.shape[2:])
                feeds = plan.feeds(canonical)
                t0 = time.perf_counter()
                got = plan.canonical_outputs(r.run(feeds))["stylized_image"]
                res["x86_s"] = round(time.perf_counter() - t0, 2)
            res["x86_psnr_db"] = compare(want, got)["psnr_db"]
            for mode, key in (("fp16", "fp16"), ("fp16-acc16", "acc16")):
                t0 = time.perf_counter()
                e = emulate(path, feeds, mode, reference=False)
                res[f"{key}_s"] = round(time.perf_counter() - t0, 1)
                out = plan.canonical_outputs(e.outputs)["stylized_image"]
                m = compare(want, out)
                res[f"{key}_psnr_db"] = m["psnr_db"]
                res[f"{key}_nonfinite"] = m["nonfinite"]
                s = e.summary()
                res[f"{key}_min_margin_bits"] = None if s["min_margin_bits"] is None else round(s["min_margin_bits"], 2)
                res[f"{key}_problem"] = e.problem()
            print(f"{label} {a['format']} {name}: x86 {res['x86_psnr_db']:.1f} dB, fp16 "
                  f"{res['fp16_psnr_db'] if res['fp16_psnr_db'] is None else round(res['fp16_psnr_db'], 1)} dB, "
                  f"acc16 {res['acc16_psnr_db'] if res['acc16_psnr_db'] is None else round(res['acc16_psnr_db'], 1)} dB"
                  f"{'; ' + res['fp16_problem'] if res['fp16_problem'] else ''}", file=sys.stderr, flush=True)
            row["images"].append(res)
        for key in ("x86", "fp16", "acc16"):
            vals = [r[f"{key}_psnr_db"] for r in row["images"]]
            row[f"{key}_psnr_db_mean"] = None if any(v is None for v in vals) else round(float(np.mean(vals)), 2)
            row[f"{key}_psnr_db_min"] = None if any(v is None for v in vals) else round(float(np.min(vals)), 2)
        rows.append(row)
    ref.close()
    return rows


def _db(a, b):
    from styleport.metrics import psnr_db
    got = psnr_db(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return None if got is None else round(got, 2)


def faithfulness(ckpt: Path, bundle: Path, rescaled: bool, size: int) -> dict:
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from styleport.export.fp16safe import make_fp16_safe
    from styleport.export.wrappers import export_module, io_spec, quiet_torch_export
    from styleport.models.checkpoint import load_checkpoint
    from styleport.runtime.numerics.onnx import OnnxEmulator
    from styleport.runtime.numerics.tflite import TFLiteEmulator
    model, _ = load_checkpoint(ckpt)
    path = bundle / "tflite" / "transformer.fp16.tflite"
    x = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32)
    emu = TFLiteEmulator(path, "fp16").run({"content_image": x})[0]["stylized_image"]
    interp32 = TFLiteEmulator(path, "fp32").run({"content_image": x})[0]["stylized_image"]
    with quiet_torch_export():
        litert = next(iter(Interpreter(model_path=str(path)).get_signature_runner()(content_image=x).values()))
    mod = export_module(model, "transformer", "tflite")
    if rescaled:
        ins, _, sample = io_spec(model, "transformer", "tflite", (size, size), 256)
        make_fp16_safe(mod, sample, ins)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(p.half().float())          # the artefact's fp16 weights
        ref32 = mod(torch.from_numpy(x)).numpy()
        with quiet_torch_export():
            twin = torch.onnx.export(mod, (torch.from_numpy(x),), input_names=["content_image"],
                                     output_names=["stylized_image"], dynamo=True, opset_version=20,
                                     optimize=True, verify=False).model_proto
        half = mod.half()(torch.from_numpy(x).half()).float().numpy()
    ort_twin = OnnxEmulator(twin, "fp16").run({"content_image": x})[0]["stylized_image"]
    return {"size": size, "fp16_rescale": rescaled,
            "interpreter_fp32_vs_litert_max_abs": float(np.abs(interp32 - litert).max()),
            "psnr_db": {"emulator_vs_torch_half_cpu": _db(emu, half), "emulator_vs_ort_cast_twin": _db(emu, ort_twin),
                        "torch_half_cpu_vs_ort_cast_twin": _db(half, ort_twin),
                        "emulator_vs_fp32": _db(emu, ref32), "torch_half_cpu_vs_fp32": _db(half, ref32),
                        "ort_cast_twin_vs_fp32": _db(ort_twin, ref32)},
            "identical_fraction_emulator_vs_torch_half": float(np.mean(emu == half))}


GOOGLE_LABEL = "google (magenta f16 import)"
EX255_LABEL = "ex255 (0-255, fp16 rescale on)"


def measured_networks(tmp: Path, notes: list) -> list:
    """The two networks these suites measure, imported into ``tmp``: [(google checkpoint or None,
    its style bottleneck), (the 0-255 example checkpoint, None)] (Google's needs ../shared/data/magenta;
    without it a note says so). Shared with arm64_numerics.py."""
    import torch

    from styleport.models.examples255 import examples255_state_dict
    from styleport.models.importers import import_fast_neural_style_to, import_magenta_tflite_to
    out = [(None, None)]
    if (MAGENTA / "style_transfer_f16_384.tflite").is_file():
        ck = tmp / "google"
        import_magenta_tflite_to(MAGENTA / "style_predict_quantized_256.tflite",
                                 MAGENTA / "style_transfer_f16_384.tflite", ck)
        out = [(ck, style_bottleneck(ck))]
    else:
        notes.append("../shared/data/magenta absent: Google's network skipped")
    pth = tmp / "ex255.pth"
    torch.save(examples255_state_dict(), pth)
    ck = tmp / "ex255"
    import_fast_neural_style_to(pth, ck)
    return out + [(ck, None)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--formats", default="onnx,tflite,coreml")
    ap.add_argument("--faith-size", type=int, default=64)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from styleport.export.bundle import export_bundle
    la0 = loadavg()
    t_start = time.perf_counter()
    formats = [f for f in args.formats.split(",") if f]
    inputs = images(args.images, args.size)
    rows, notes, faith = [], [], []
    with tempfile.TemporaryDirectory(prefix="fp16emu-") as tmp:
        tmp = Path(tmp)
        (g, gb), (ex, _) = measured_networks(tmp, notes)
        nets = [(GOOGLE_LABEL, g, True, gb)] if g else []
        nets.append((EX255_LABEL, ex, True, None))
        nets.append(("ex255 (0-255, --no-fp16-rescale)", ex, False, None))
        for i, (label, ckpt, rescale, bottleneck) in enumerate(nets):
            b = tmp / f"b{i}"
            t0 = time.perf_counter()
            export_bundle(ckpt, b, formats, ["fp16"], size=args.size, progress=False,
                          calibration={"variants": False}, fp16_rescale=rescale)
            print(f"exported {label} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            rows += measure(b, ckpt, inputs, bottleneck, label)
            if label.startswith("ex255") and "tflite" in formats:
                fb = tmp / f"f{i}"
                export_bundle(ckpt, fb, ["tflite"], ["fp16"], size=args.faith_size, progress=False,
                              calibration={"variants": False}, fp16_rescale=rescale)
                faith.append(faithfulness(ckpt, fb, rescale, args.faith_size))
                print(f"faithfulness {label}: {faith[-1]}", file=sys.stderr, flush=True)
    print("\n| network | format | x86 fp16 PSNR dB | emulated fp16 | emulated fp16-acc16 | first problem (fp16) |",
          file=sys.stderr)
    for r in rows:
        prob = next((x["fp16_problem"] for x in r["images"] if x["fp16_problem"]), "")
        print(f"| {r['network']} | {r['format']} | {r['x86_psnr_db_mean']} | {r['fp16_psnr_db_mean']} | "
              f"{r['acc16_psnr_db_mean']} | {prob[:90]} |", file=sys.stderr)
    write("fp16_emulation", {"suite": "fp16_emulation", "size": args.size, "images": [n for n, _ in inputs],
                             "machine": machine(), "threads": 2, "loadavg": [la0, loadavg()],
                             "seconds": round(time.perf_counter() - t_start, 1), "psnr_peak": 1.0,
                             "reference": "fp32 PyTorch checkpoint", "rows": rows, "faithfulness": faith, "notes": notes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
