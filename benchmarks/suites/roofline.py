"""Suite 3 - roofline: this CPU's theoretical fp32 and int8 peaks (from its vendor, family and SIMD
flags, at the nominal clock), its measured fp32 GEMM rate (large square matmul: torch, numpy and ONNX
Runtime's MLAS through a one-MatMul graph, 1 and 2 threads), and the GFLOP/s the transformer achieves
at 384² in ONNX Runtime fp32 and torch eager. The roofline ceiling is the theoretical peak at the
higher of the nominal clock and the clock the best measured GEMM implies (cores boost above the
nominal clock /proc/cpuinfo shows); the suite checks that no network's rate exceeds it
(``ceiling_ok``) and says which does when one does.

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


# FLOP per cycle per core for fp32 FMA, and int8 multiply-add ops per cycle (VNNI vpdpbusd counts a
# multiply and an add per byte pair). AMD: family 0x19 (Zen 3 / Zen 4: AVX-512 on 256-bit datapaths,
# so two 256-bit FMA pipes), 0x1A (Zen 5 server: four 512-bit-wide FP pipes, two of them FMA); Intel
# with avx512f: two 512-bit FMA ports on server parts (one on some client parts: then this over-states
# the peak, which keeps it a ceiling). Sources: AMD "Zen 5" Hot Chips 2024, AMD SOG for family 19h,
# Intel optimization manual (FMA ports); int8: VNNI does 4x the multiply-adds of fp32 per lane.
def theoretical_peak(info: dict, threads: int, mhz: float | None = None) -> dict:
    flags = set(info.get("flags") or [])
    fam, vendor = info.get("family"), (info.get("vendor") or "")
    mhz = mhz or info.get("mhz")
    if "avx512f" in flags:
        lanes = 16
        fma_units = 1 if vendor == "AuthenticAMD" and fam == 0x19 else 2   # Zen 4: 512-bit op split in two
        basis = ("AVX-512, 2x256-bit FMA (Zen 4 double-pumps 512-bit ops)" if fma_units == 1 else
                 "AVX-512, 2x512-bit FMA")
    elif "avx2" in flags and "fma" in flags:
        lanes, fma_units, basis = 8, 2, "AVX2, 2x256-bit FMA"
    else:
        return {"basis": "unknown SIMD: no theoretical peak", "fp32_gflops": None, "int8_gops": None}
    fp32_per_cycle = 2 * lanes * fma_units                  # multiply + add per lane per FMA unit
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    int8_per_cycle = fp32_per_cycle * 4 if vnni else fp32_per_cycle * 2   # VNNI: 4 int8 pairs per 32-bit lane
    if not mhz:
        return {"basis": basis + "; clock unknown", "fp32_gflops": None, "int8_gops": None}
    ghz = mhz / 1000
    return {"basis": f"{basis}; {'VNNI' if vnni else 'no VNNI'}; {round(mhz)} MHz x {threads} core(s)", "mhz": round(mhz),
            "fp32_flop_per_cycle_core": fp32_per_cycle, "int8_op_per_cycle_core": int8_per_cycle,
            "fp32_gflops": round(fp32_per_cycle * ghz * threads, 1),
            "int8_gops": round(int8_per_cycle * ghz * threads, 1)}


def ort_matmul(n: int, threads: int):
    """A one-node MatMul graph: ONNX Runtime's own GEMM (MLAS) rate on this CPU."""
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {"a": np.random.rand(n, n).astype(np.float32), "b": np.random.rand(n, n).astype(np.float32)}
    return lambda: sess.run(None, feeds)


def gemm_peak(n: int, runs: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    an, bn = a.numpy(), b.numpy()
    t = interleave({"torch": lambda: torch.mm(a, b), "numpy": lambda: an @ bn,
                    "onnxruntime": ort_matmul(n, threads)}, runs, 2)
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
    from styleport.runtime.harness.machine import cpu_info
    cpu = cpu_info()
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
            # /proc/cpuinfo's clock is the nominal one; the cores boost above it (a VM shows no cpufreq).
            # The clock the best GEMM implies (best run, FLOP/cycle from the flags) is a lower bound on
            # the running clock: the ceiling is taken at the higher of the two, so no GEMM exceeds it
            nominal = theoretical_peak(cpu, th)
            best = max(v["gflops_at_min"] for k, v in peak[th].items() if isinstance(v, dict) and "gflops_at_min" in v)
            per_cycle = nominal.get("fp32_flop_per_cycle_core")
            implied = best * 1e3 / (per_cycle * th) if per_cycle else None
            peak[th]["nominal"] = nominal
            peak[th]["implied_mhz"] = round(implied) if implied else None
            peak[th]["theoretical"] = theoretical_peak(cpu, th, max(cpu.get("mhz") or 0, implied or 0) or None)
            peak[th]["theoretical"]["clock"] = ("nominal" if not implied or implied <= (cpu.get("mhz") or 0) else
                                                "implied by the best measured GEMM (above the nominal clock)")
            ceiling = peak[th]["theoretical"].get("fp32_gflops")
            peak[th]["ceiling_ok"] = None if not ceiling else best <= ceiling * 1.001   # rounding
            print(f"GEMM {args.gemm}² {th}t: torch {peak[th]['torch']['gflops_at_median']} GFLOP/s, numpy "
                  f"{peak[th]['numpy']['gflops_at_median']}, ORT {peak[th]['onnxruntime']['gflops_at_median']}; "
                  f"theoretical {peak[th]['theoretical'].get('fp32_gflops')}", file=sys.stderr, flush=True)
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
                # measured GEMM = the best of the interleaved torch GEMM and the separate numpy and ORT MatMul (medians)
                row["gemm_interleaved"] = g
                pk = max(g["gflops_at_median"], peak[th]["numpy"]["gflops_at_median"],
                         peak[th]["onnxruntime"]["gflops_at_median"])
                for k, v in t.items():
                    s = stats(v)
                    s["gflops_at_median"] = round(fl["flops"] / (s["median_ms"] / 1e3) / 1e9, 2)
                    s["pct_of_peak"] = round(100 * s["gflops_at_median"] / pk, 1)
                    row["runtimes"][k] = s
                row["peak_gflops"] = pk   # measured GEMM (achievable), not the ceiling
                th_peak = peak[th]["theoretical"]
                row["theoretical"] = th_peak
                ceiling = th_peak.get("fp32_gflops")
                if ceiling:
                    for v in row["runtimes"].values():
                        v["pct_of_theoretical"] = round(100 * v["gflops_at_median"] / ceiling, 1)
                rates = {k: v["gflops_at_median"] for k, v in row["runtimes"].items()}
                rates["gemm/torch interleaved"] = g["gflops_at_median"]
                over = {k: r for k, r in rates.items() if ceiling and r > ceiling}
                row["ceiling_ok"] = None if not ceiling else not over
                if over:
                    row["ceiling_exceeded_by"] = over
                nets.append(row)
                print(f"{preset} {th}t {row['gflop']} GFLOP: " + ", ".join(
                    f"{k} {v['median_ms']:.0f} ms {v['gflops_at_median']} GFLOP/s ({v['pct_of_peak']}%)"
                    for k, v in row["runtimes"].items()), file=sys.stderr, flush=True)
    write("roofline", {"suite": "roofline", "gemm_n": args.gemm, "runs": args.runs, "cpu": cpu,
                       "peak": {str(k): v for k, v in peak.items()}, "networks": nets, "goal_pct_of_peak": 40,
                       "ceiling_ok": all(r.get("ceiling_ok") is not False for r in nets)
                       and all(p.get("ceiling_ok") is not False for p in peak.values())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
