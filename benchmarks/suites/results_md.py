"""Render benchmarks/RESULTS.md from benchmarks/results/*.json (called by benchmarks/run.py)."""

from __future__ import annotations

import json
from pathlib import Path


def _load(folder: Path, name: str):
    p = folder / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _ms(s) -> str:
    if not s:
        return "-"
    f = ".1f" if s["median_ms"] < 20 else ".0f"
    return f"{s['median_ms']:.1f} ({s['min_ms']:{f}}-{s['max_ms']:{f}})"


def _r(x) -> str:
    return f"{x['paired_median']:.2f} ({x['paired_min']:.2f}-{x['paired_max']:.2f})"


def _la(la) -> str:
    if not la:
        return "-"
    if isinstance(la[0], list):
        return f"{la[0][0]:.1f}→{la[1][0]:.1f}"
    return f"{la[0]:.1f}"


def _top(ops: dict, n=7) -> str:
    return ", ".join(f"{k} {v}" for k, v in list(ops.items())[:n])


def machine_section(doc) -> list[str]:
    m = doc["machine"]
    t = m.get("tools", {})
    c = m.get("cpu_info") or {}
    keep = ("python", "torch", "onnx", "onnxruntime", "onnxsim", "litert-torch", "ai-edge-litert",
            "ai-edge-quantizer", "coremltools", "executorch", "torchao", "numpy")
    cpu = f"- CPU: {m['cpu']} ({m['arch']})"
    if c.get("vendor"):
        cpu += (f", {c['vendor']} family {c.get('family')} model {c.get('model')} stepping {c.get('stepping')}, "
                f"nominal {c.get('mhz')} MHz, flags {' '.join(c.get('flags') or []) or '-'}")
    cpu += f"; {m['cores']} cores ({m['cores_usable']} usable), {m.get('mem_total_gb', '?')} GB RAM, {m['os']}"
    return [cpu, "- " + ", ".join(f"{k} {t.get(k)}" for k in keep if t.get(k))]


def suite1(doc, title) -> list[str]:
    L = [f"### {title}", "",
         f"Weights: " + "; ".join(f"{k}: {v}" for k, v in doc["weights"].items()) + ". "
         f"Median (min-max) ms of {doc['runs']} runs after {doc['warmup']} warmup, all seven sides "
         "interleaved run by run in one process. Ratios: median of per-round ratios (min-max).", "",
         "| preset | size | thr | torch eager | ORT fp32 | ORT fp16 | ORT int8 | LiteRT fp32 | LiteRT fp16 | "
         "LiteRT int8 | ORT fp32/eager | LiteRT fp32/eager | ORT int8/fp32 | LiteRT int8/fp32 | load 1-min |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    g = doc["goals"]
    miss = {"fp32": [], "int8": []}
    for r in doc["rows"]:
        lat, ra = r["latency"], r["ratios"]
        cells = [r["preset"], f"{r['size']}²", str(r["threads"])] + [_ms(lat[k]) for k in (
            "torch/eager", "onnxruntime/fp32", "onnxruntime/fp16", "onnxruntime/int8", "litert/fp32",
            "litert/fp16", "litert/int8")]
        for key, goal, bucket in (("onnxruntime/fp32 vs torch", g["exported_fp32_vs_eager"], "fp32"),
                                  ("litert/fp32 vs torch", g["exported_fp32_vs_eager"], "fp32"),
                                  ("onnxruntime/int8 vs onnxruntime/fp32", g["int8_vs_fp32"], "int8"),
                                  ("litert/int8 vs litert/fp32", g["int8_vs_fp32"], "int8")):
            ok = ra[key]["paired_median"] <= goal
            cells.append(("" if ok else "**") + _r(ra[key]) + ("" if ok else "**"))
            if not ok:
                miss[bucket].append(f"{r['preset']} {r['size']}² {r['threads']}t {key.split(' vs')[0]} "
                                    f"{ra[key]['paired_median']:.2f}")
        cells.append(_la(r["loadavg"]))
        L.append("| " + " | ".join(cells) + " |")
    n = len(doc["rows"])
    L += ["", f"Goal exported fp32 <= {g['exported_fp32_vs_eager']}x eager: missed in "
          f"{len(miss['fp32'])} of {2 * n} (runtime, row) cells" + (": " + "; ".join(miss["fp32"]) if miss["fp32"] else "") + ".",
          f"Goal int8 <= {g['int8_vs_fp32']}x fp32 (same runtime): missed in {len(miss['int8'])} of {2 * n}"
          + (": " + "; ".join(miss["int8"]) if miss["int8"] else "") + ". Bold = goal missed.", ""]
    if any("executorch/fp32" in r["latency"] for r in doc["rows"]):
        L += executorch_table(doc)
    if doc.get("op_histograms"):
        L += ["Op histograms of the exported transformers (first size; top ops, Transpose count):", "",
              "| preset | artefact | ops | Transpose | top ops |", "|---|---|---|---|---|"]
        for preset, h in doc["op_histograms"].items():
            for k, v in h.items():
                L.append(f"| {preset} | {k} | {sum(v['ops'].values())} | {v['transpose']} | {_top(v['ops'])} |")
        L.append("")
    return L


def executorch_table(doc) -> list[str]:
    """ExecuTorch (XNNPACK) sides of the same interleaved rounds, against LiteRT (XNNPACK) and eager."""
    g = doc["goals"]
    goal_lt = g.get("executorch_fp32_vs_litert_fp32", 1.1)
    L = [f"ExecuTorch (XNNPACK delegate; int8 = the plain PT2E dynamic int8, int8 static = the calibrated "
         "variant; instance norm float in both), same rounds as above:", "",
         "| preset | size | thr | ET fp32 | ET fp16 | ET int8 | ET int8 static | ET fp32/LiteRT fp32 | "
         "ET int8/ET fp32 | ET int8 static/ET fp32 | ET fp32/eager | load 1-min |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    miss = []
    for r in doc["rows"]:
        lat, ra = r["latency"], r["ratios"]
        if "executorch/fp32" not in lat:
            continue
        cells = [r["preset"], f"{r['size']}²", str(r["threads"])] + [
            _ms(lat[f"executorch/{p}"]) if f"executorch/{p}" in lat else "-"
            for p in ("fp32", "fp16", "int8", "int8-static")]
        for key, goal in (("executorch/fp32 vs litert/fp32", goal_lt),
                          ("executorch/int8 vs executorch/fp32", g["int8_vs_fp32"]),
                          ("executorch/int8-static vs executorch/fp32", g["int8_vs_fp32"]),
                          ("executorch/fp32 vs torch", g["exported_fp32_vs_eager"])):
            if key not in ra:
                cells.append("-")
                continue
            ok = ra[key]["paired_median"] <= goal
            cells.append(("" if ok else "**") + _r(ra[key]) + ("" if ok else "**"))
            if not ok:
                miss.append(f"{r['preset']} {r['size']}² {r['threads']}t {key} {ra[key]['paired_median']:.2f}")
        cells.append(_la(r["loadavg"]))
        L.append("| " + " | ".join(cells) + " |")
    L += ["", f"Goals: ExecuTorch fp32 <= {goal_lt}x LiteRT fp32, int8 <= {g['int8_vs_fp32']}x its fp32, fp32 <= "
          f"{g['exported_fp32_vs_eager']}x eager; missed: " + ("; ".join(miss) if miss else "none") + ".", ""]
    return L


def suite2(doc) -> list[str]:
    if doc.get("skipped"):
        return ["## 2. Ours vs Google", "", f"Skipped: {doc['skipped']}", ""]
    lat, f, q = doc["latency"], doc["files"], doc["quality_psnr_db"]
    L = ["## 2. Ours vs Google's TFLite, same weights", "",
         f"Google's Magenta files imported (`magenta_from_tflite`: int8 predictor + f16 transfer) and exported "
         f"again through `export_bundle(..., ['tflite'], ['fp16','int8'], size={doc['size']}, "
         "calibration={'variants': False})`: ours int8 = dynamic-range (int8 weights, float activations). "
         f"LiteRT (XNNPACK), {doc['threads']} threads, {doc['runs']} runs after {doc['warmup']} warmup, sides "
         f"interleaved per round (predictors together, transfer networks together); load {_la(doc['loadavg'])}. "
         "Inputs: astronaut.png + first painting.", "",
         "| network | file | ms median (min-max) | bytes | ops | Transpose |", "|---|---|---|---|---|---|"]
    for k in ("google/predict_int8", "ours/predict_int8", "ours/predict_fp16", "google/transfer_int8",
              "google/transfer_f16", "ours/transfer_int8", "ours/transfer_fp16"):
        L.append(f"| {k.split('/')[1].split('_')[0]} | {k} | {_ms(lat[k])} | {f[k]['bytes']:,} | "
                 f"{sum(f[k]['ops'].values())} | {f[k]['transpose']} |")
    L += ["", "| ratio (ours / theirs) | latency, paired median (min-max) | size |", "|---|---|---|"]
    for k, v in doc["latency_ratios"].items():
        L.append(f"| {k} | {_r(v)} | {doc['size_ratios'].get(k, '-') if k in doc['size_ratios'] else '-'} |")
    L += ["", "Output PSNR (dB, styleport.metrics: peak 1.0, outputs as produced), transfer networks fed the same bottleneck "
          "(Google's int8 predictor), pairs: " + "; ".join(doc["pairs"]) + ":", "",
          "| comparison | mean | worst |", "|---|---|---|"]
    for k, v in q.items():
        if k.startswith("bottleneck"):
            L.append(f"| {k} (cosine) | {v['mean']:.5f} | {v['min']:.5f} |")
        else:
            L.append(f"| {k} | {v['mean']:.2f} | {v['min']:.2f} |")
    L += ["", "Op histograms side by side (transfer networks):", "", "| file | top ops |", "|---|---|"]
    for k in ("google/transfer_int8", "google/transfer_f16", "ours/transfer_int8", "ours/transfer_fp16",
              "google/predict_int8", "ours/predict_int8"):
        L.append(f"| {k} | {_top(f[k]['ops'], 10)} |")
    return L


def suite3(doc) -> list[str]:
    L = ["## 3. Roofline (fp32)", "",
         f"GEMM peak: {doc['gemm_n']}² fp32 matmul, median of {doc['runs']} runs; numpy in a fresh process per "
         "thread count (OpenBLAS threads fixed at import); torch.mm also interleaved with each network below.", "",
         "| threads | torch.mm GFLOP/s median (best) | numpy GFLOP/s median (best) | load |", "|---|---|---|---|"]
    for th, p in doc["peak"].items():
        L.append(f"| {th} | {p['torch']['gflops_at_median']} ({p['torch']['gflops_at_min']}) | "
                 f"{p['numpy']['gflops_at_median']} ({p['numpy']['gflops_at_min']}) | {_la(p['loadavg'])} |")
    L += ["", "FLOPs = 2 x MACs of Conv/Gemm/MatMul from onnx shape inference of the exported fp32 graph. "
          "% of peak = achieved / max(interleaved torch.mm median, numpy median) at the same thread count.", "",
          "| preset | size | thr | GFLOP | peak GFLOP/s | ORT fp32 ms | ORT GFLOP/s (% peak) | torch eager ms | "
          "eager GFLOP/s (% peak) | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["networks"]:
        o, e = r["runtimes"]["onnxruntime/fp32"], r["runtimes"]["torch/eager"]
        L.append(f"| {r['preset']} | {r['size']}² | {r['threads']} | {r['gflop']} | {r['peak_gflops']} | {_ms(o)} | "
                 f"{o['gflops_at_median']} ({o['pct_of_peak']}%) | {_ms(e)} | {e['gflops_at_median']} "
                 f"({e['pct_of_peak']}%) | {_la(r['loadavg'])} |")
    L.append("")
    return L


def suite4(doc, folder) -> list[str]:
    L = ["## 4. Toolkit cost", ""]
    e = doc["export_cost"]
    if "total_s" in e:
        t = e["total_s"]
        L += [f"Full export matrix (`{e['command']}`; predictor + transformer x 3 formats x 3 precisions, "
              "CoreML int8 with its palettisation variants as the CLI makes them, no calibration set so no "
              f"static int8 variants): **{t['median']:.0f} s** median of {e['repeats']} "
              f"(min {t['min']:.0f}, max {t['max']:.0f}); load {_la(e['loadavg'])}.", "",
              "| artefact | s |", "|---|---|"]
        for k, v in sorted(e["per_artifact_s"].items(), key=lambda kv: -kv[1]):
            L.append(f"| {k} | {v:.1f} |")
        L.append("")
    else:
        L += [f"Export matrix failed: {e.get('error')}", ""]
    h = doc["harness_overhead"]
    L += [f"Harness overhead (`{h['command']}`, exit {h['rc']}: 0 = within 2% on every model); load "
          f"{_la(h['loadavg'])}:", "",
          "| model | bare median ms (min) | harness median ms (min) | overhead (medians) | paired median | samples |",
          "|---|---|---|---|---|---|"]
    for r in h.get("results", []):
        L.append(f"| {r['model']} | {r['bare_median_ms']:.2f} ({r['bare_min_ms']:.2f}) | {r['harness_median_ms']:.2f} "
                 f"({r['harness_min_ms']:.2f}) | {r['overhead_pct']:+.2f}% | {r['paired_median_ratio_pct']:+.2f}% | "
                 f"{r['samples']} |")
    L.append("")
    return L


def suite5(doc) -> list[str]:
    L = ["## 5. Scaling with pixels", "",
         f"{doc['preset']} transformer ({doc['weights']}), {doc['threads']} threads, ONNX Runtime fp32 from one "
         f"`--dynamic` export and torch eager; each cell a fresh subprocess (median of {doc['runs']} runs; "
         "peak RSS = VmHWM of that process, which includes torch + the runtime imports, ~350 MB before any tensor).", "",
         "| runtime | size | MP | ms median (min-max) | ms / MP | peak RSS MB | load |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if "error" in r:
            L.append(f"| {r['runtime']} | {r['size']}² | - | error: {r['error']} | | | |")
            continue
        L.append(f"| {r['runtime']} | {r['size']}² | {r['megapixels']:.3f} | {_ms(r['latency'])} | "
                 f"{r['latency']['median_ms'] / r['megapixels']:.0f} | {r['peak_rss_mb']:.0f} | {_la(r['loadavg'])} |")
    L += ["", "Least-squares fit latency = a + b x MP:", "",
          "| runtime | b ms/MP | a ms | R² | RSS growth MB/MP |", "|---|---|---|---|---|"]
    for rt, f in doc["fits"].items():
        L.append(f"| {rt} | {f['ms_per_mp']} | {f['intercept_ms']} | {f['r2']} | {f['rss_mb_per_mp']} |")
    L.append("")
    return L


def suite_import(doc) -> list[str]:
    if doc.get("skipped"):
        return ["## Import fidelity", "", f"Skipped: {doc['skipped']}", ""]
    b, t, p = doc["bottleneck_snr_db"], doc["transfer_psnr_db"], doc["pipeline_psnr_db"]
    return ["## Import fidelity (`styleport import --from magenta-tflite`)", "",
            f"Our PyTorch import of {' + '.join(doc['files'])} against Google's own files in LiteRT, "
            f"{doc['styles']} paintings x {doc['contents']} photos ({doc['pairs']} pairs), content "
            f"{doc['size']}², style {doc['style_size']}²; metrics: {doc['metrics']}.", "",
            "| comparison | min | mean | max |", "|---|---|---|---|",
            f"| bottleneck SNR dB (ours vs Google's int8 predictor; cosine >= {doc['bottleneck_cosine']['min']}) | "
            f"{b['min']} | {b['mean']} | {b['max']} |",
            f"| transfer output PSNR dB (same bottleneck, ours fp32 vs Google's f16 file) | {t['min']} | {t['mean']} | "
            f"{t['max']} |",
            f"| whole pipeline PSNR dB (ours end to end vs Google's predictor + transfer) | {p['min']} | {p['mean']} | "
            f"{p['max']} |", ""]


def render(folder: Path) -> str:
    docs = {n: _load(folder, n) for n in ("exported_vs_eager", "exported_vs_eager_large", "ours_vs_google",
                                          "roofline", "toolkit_cost", "scaling", "import_fidelity")}
    run = _load(folder, "run") or {}
    any_doc = next((d for d in docs.values() if d and "machine" in d), None)
    loads = [v["loadavg_start"][0] for v in run.values() if v.get("loadavg_start")]
    L = ["# Benchmark results", "",
         "Written entirely by `benchmarks/run.py` (`make bench`) from `benchmarks/results/*.json`: every figure "
         "and every sentence that quotes one is computed from those files; rerun to refresh. Every latency is a "
         "median of >= 10 timed runs after warmup with min-max beside it (the export matrix, minutes long, "
         "states its repeat count); every ratio is taken between sides timed in one process, interleaved run "
         "by run, which cancels slow drift but not burst contention. The machine may be shared: the 1-minute "
         "load average is recorded beside each result"
         + (f" (at the start of each suite of this run: {min(loads):.1f}-{max(loads):.1f} on "
            f"{(any_doc or {}).get('machine', {}).get('cores_usable', '?')} cores)." if loads and any_doc else "."), ""]
    if any_doc:
        L += ["## Machine", ""] + machine_section(any_doc) + [""]
    if run:
        L += ["## Commands", "", "```"] + [f"{v['command']}    # rc {v['rc']}, {v['seconds']} s, "
                                          f"{v['finished']}, load {v['loadavg_start'][0]}" for v in run.values()]
        L += ["```", ""]
    if docs["exported_vs_eager"] or docs["exported_vs_eager_large"]:
        L += ["## 1. Exported vs eager (transformer)", ""]
        if docs["exported_vs_eager"]:
            L += suite1(docs["exported_vs_eager"], "Default run")
        if docs["exported_vs_eager_large"]:
            L += suite1(docs["exported_vs_eager_large"], "Larger sizes (separate run: "
                        f"`{docs['exported_vs_eager_large'].get('command', '')}`)")
    if docs["ours_vs_google"]:
        L += suite2(docs["ours_vs_google"])
    if docs["roofline"]:
        L += suite3(docs["roofline"])
    if docs["toolkit_cost"]:
        L += suite4(docs["toolkit_cost"], folder)
    if docs["scaling"]:
        L += suite5(docs["scaling"])
    if docs["import_fidelity"]:
        L += suite_import(docs["import_fidelity"])
    return "\n".join(L) + "\n"
