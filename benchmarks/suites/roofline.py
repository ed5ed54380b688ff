"""Suite 3 - roofline: this CPU's measured fp32 GEMM peak (large square matmul, torch and numpy,
1 and 2 threads) vs the GFLOP/s the transformer achieves at 384² in ONNX Runtime fp32 and torch eager.

    .venv/bin/python benchmarks/suites/roofline.py [--presets magenta-mobile,johnson] [--size 384] \
        [--gemm 2048] [--runs 10]

FLOPs are counted from the exported ONNX graph: 2 x MACs of every Conv / ConvTranspose / Gemm /
MatMul, shapes from onnx shape inference (everything else - norms, pads, activations - is left out,
so the achieved figure is a lower bound on work done). Goal: >= 40% of the GEMM peak.
Writes benchmarks/results/roofline.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import (build_model, export_transformer, feeds_for, interleave, loadavg, ort_session,  # noqa: E402
                           stats, write)


def onnx_flops(path) -> dict:
    import onnx
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = m.graph
    shapes = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    for i in g.initializer:
        shapes[i.name] = list(i.dims)
    total, by_op, convs = 0, {}, 0
    for n in g.node:
        f = 0
        if n.op_type in ("Conv", "ConvTranspose", "ConvInteger"):
            w, y = shapes[n.input[1]], shapes[n.output[0]]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if n.op_type == "ConvTranspose":
                x = shapes[n.input[0]]
                f = 2 * int(np.prod(x)) * w[1] * int(np.prod(w[2:]))
            else:
                f = 2 * int(np.prod(y)) * (w[1]) * int(np.prod(w[2:]))
            convs += 1
            _ = group
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes[n.input[0]], shapes[n.output[0]]
            f = 2 * int(np.prod(y)) * a[-1]
        if f:
            total += f
            by_op[n.op_type] = by_op.get(n.op_type, 0) + f
    return {"flops": total, "by_op": by_op, "conv_nodes": convs}


def gemm_peak(n: int, runs: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    an, bn = a.numpy(), b.numpy()
    t = interleave({"torch": lambda: torch.mm(a, b), "numpy": lambda: an @ bn}, runs, 2)
    out = {}
    for k, v in t.items():
        s = stats(v)
        s["gflops_at_median"] = round(2 * n ** 3 / (s["median_ms"] / 1e3) / 1e9, 2)
        s["gflops_at_min"] = round(2 * n ** 3 / (s["min_ms"] / 1e3) / 1e9, 2)
        out[k] = s
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="magenta-mobile,johnson")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--gemm", type=int, default=2048)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gemm-only", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.gemm_only:
        import json
        print(json.dumps(gemm_peak(args.gemm, args.runs, args.gemm_only)))
        return 0
    import json
    import os
    import subprocess

    import torch

    from styleport.export.wrappers import export_module
    threads = [int(t) for t in args.threads.split(",")]
    peak, nets = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for th in threads:
            # a fresh process per thread count: numpy's BLAS reads its thread count at import
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(th), OMP_NUM_THREADS=str(th), MKL_NUM_THREADS=str(th))
            la = loadavg()
            out = subprocess.run([sys.executable, __file__, "--gemm-only", str(th), "--gemm", str(args.gemm),
                                  "--runs", str(args.runs)], env=env, capture_output=True, text=True, check=True)
            peak[th] = json.loads(out.stdout.strip().splitlines()[-1])
            peak[th]["loadavg"] = [la, loadavg()]
            print(f"GEMM {args.gemm}² {th}t: torch {peak[th]['torch']['gflops_at_median']} GFLOP/s, numpy "
                  f"{peak[th]['numpy']['gflops_at_median']}", file=sys.stderr, flush=True)
        for preset in args.presets.split(","):
            model, wdesc = build_model(preset)
            path = export_transformer(model, Path(tmp) / preset, "onnx", ["fp32"], args.size)["fp32"]
            fl = onnx_flops(path)
            eager = export_module(model, "transformer", "onnx").eval()
            feeds = feeds_for(model, args.size, False)
            targs = tuple(torch.from_numpy(v) for v in feeds.values())
            for th in threads:
                torch.set_num_threads(th)
                sess = ort_session(path, th)

                def eager_run():
                    with torch.inference_mode():
                        eager(*targs)
                la = loadavg()
                a, b = torch.rand(args.gemm, args.gemm), torch.rand(args.gemm, args.gemm)
                # the GEMM is timed in the same rounds as the network, so load drift hits both alike
                t = interleave({"onnxruntime/fp32": lambda: sess.run(None, feeds), "torch/eager": eager_run,
                                "gemm/torch": lambda: torch.mm(a, b)}, args.runs, 2)
                gm = t.pop("gemm/torch")
                g = stats(gm)
                g["gflops_at_median"] = round(2 * args.gemm ** 3 / (g["median_ms"] / 1e3) / 1e9, 2)
                row = {"preset": preset, "weights": wdesc, "size": args.size, "threads": th,
                       "gflop": round(fl["flops"] / 1e9, 3), "flops_by_op": fl["by_op"],
                       "loadavg": [la, loadavg()], "runtimes": {}}
                # peak = the better of the interleaved torch GEMM and the separate numpy GEMM (medians)
                row["gemm_interleaved"] = g
                pk = max(g["gflops_at_median"], peak[th]["numpy"]["gflops_at_median"])
                for k, v in t.items():
                    s = stats(v)
                    s["gflops_at_median"] = round(fl["flops"] / (s["median_ms"] / 1e3) / 1e9, 2)
                    s["pct_of_peak"] = round(100 * s["gflops_at_median"] / pk, 1)
                    row["runtimes"][k] = s
                row["peak_gflops"] = pk
                nets.append(row)
                print(f"{preset} {th}t {row['gflop']} GFLOP: " + ", ".join(
                    f"{k} {v['median_ms']:.0f} ms {v['gflops_at_median']} GFLOP/s ({v['pct_of_peak']}%)"
                    for k, v in row["runtimes"].items()), file=sys.stderr, flush=True)
    write("roofline", {"suite": "roofline", "gemm_n": args.gemm, "runs": args.runs,
                       "peak": {str(k): v for k, v in peak.items()}, "networks": nets, "goal_pct_of_peak": 40})
    return 0


if __name__ == "__main__":
    sys.exit(main())
