"""litert-torch vs onnx2tf for our transformer: parity with PyTorch, latency, op histogram.

onnx2tf pins its own TensorFlow / numpy / onnx (1.29.24: tensorflow 2.19, numpy 1.26), so it cannot
live in the project's venv: this script runs in two halves.

    # 1. in the project venv: export ONNX + litert-torch TFLite of a checkpoint, save inputs/reference
    .venv/bin/python benchmarks/tflite_converters.py prepare CKPT WORKDIR [--size 384]
    # 2. in a separate venv with `pip install onnx2tf==1.29.24` (it pulls tensorflow 2.19):
    #    convert the ONNX with onnx2tf, run both TFLite files, compare
    OTHER_VENV/bin/python benchmarks/tflite_converters.py compare WORKDIR [--threads 2 --runs 10]

Writes WORKDIR/converters.json; figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def prepare(ckpt: str, work: Path, size: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np
    import torch

    from styleport.export.bundle import export_bundle
    from styleport.models.checkpoint import load_checkpoint
    work.mkdir(parents=True, exist_ok=True)
    export_bundle(ckpt, work / "bundle", ["onnx", "tflite"], ["fp32"], size=size, force=True, progress=False)
    model, _ = load_checkpoint(ckpt)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    content = torch.stack([xx, yy, 0.5 + 0.5 * torch.sin(12 * xx * yy)])[None]
    content = (content + 0.05 * torch.rand(content.shape, generator=g)).clamp(0, 1)
    bottleneck = model.predictor(torch.rand(1, 3, 256, 256, generator=g)).detach()
    with torch.no_grad():
        ref = model.transformer(content, bottleneck)
    np.savez(work / "io.npz", content_nhwc=content.permute(0, 2, 3, 1).numpy(),
             bottleneck_nhwc=bottleneck.reshape(1, 1, 1, 100).numpy(), ref_nhwc=ref.permute(0, 2, 3, 1).numpy())
    print(f"prepared {work}")


def _time(fn, runs):
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return {"p50": statistics.median(ts), "min": min(ts), "max": max(ts), "runs": runs}


def _run_tflite(path: Path, io, threads, runs):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    ins = it.get_input_details()
    for d in ins:
        arr = io["bottleneck_nhwc"] if int(np.prod(d["shape"])) == 100 else io["content_nhwc"]
        it.set_tensor(d["index"], arr.reshape(d["shape"]).astype(np.float32))
    out = it.get_output_details()[0]
    lat = _time(it.invoke, runs)
    y = it.get_tensor(out["index"])
    ops = {}
    for op in it._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    err = float(np.abs(y.reshape(io["ref_nhwc"].shape) - io["ref_nhwc"]).max())
    return {"max_abs_vs_torch": err, "latency_ms": lat, "transpose": ops.get("TRANSPOSE", 0),
            "ops": sum(ops.values()), "bytes": path.stat().st_size}


def compare(work: Path, threads: int, runs: int) -> None:
    import numpy as np
    io = dict(np.load(work / "io.npz"))
    onnx_path = work / "bundle" / "onnx" / "transformer.fp32.onnx"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(work / "o2t"),
                           "-osd", "-n"], capture_output=True, text=True)
    conv_s = time.perf_counter() - t0
    res = {"threads": threads, "litert_torch": _run_tflite(work / "bundle" / "tflite" / "transformer.fp32.tflite",
                                                            io, threads, runs)}
    produced = sorted((work / "o2t").glob("*float32.tflite"))
    if proc.returncode != 0 or not produced:
        res["onnx2tf"] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"],
                          "seconds": conv_s}
    else:
        res["onnx2tf"] = _run_tflite(produced[0], io, threads, runs)
        res["onnx2tf"]["convert_seconds"] = round(conv_s, 1)
    (work / "converters.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("prepare", "compare"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.args[0], Path(a.args[1]), a.size)
    else:
        compare(Path(a.args[0]), a.threads, a.runs)
