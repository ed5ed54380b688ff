"""Render benchmarks/RESULTS.md from benchmarks/results/*.json (called by benchmarks/run.py)."""

from __future__ import annotations

import json
from pathlib import Path

from styleport.paths import scrub


def _load(folder: Path, name: str):
    p = folder / f"{name}.json"   # absolute paths of the machine that ran are not printed (issue 20)
    return json.loads(scrub(p.read_text(), folder.resolve().parents[1])) if p.exists() else None


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
         "Weights: " + "; ".join(f"{k}: {v}" for k, v in doc["weights"].items()) + ". "
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
    L = ["ExecuTorch (XNNPACK delegate; int8 = the plain PT2E dynamic int8, int8 static = the calibrated "
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
         f"again through `export_bundle(..., ['tflite'], ['fp16','int8'], size={doc['size']})`"
         + (f", calibrated on {doc['calibration']}: ours int8 = " + ", ".join(
             f"{k} {v}" for k, v in doc["int8_kinds"].items()) + " (full = int8 activations and weights, "
             "dynamic = int8 weights, float activations)" if doc.get("int8_kinds") else
             ": ours int8 = dynamic-range (int8 weights, float activations)") + ". "
         f"LiteRT (XNNPACK), {doc['threads']} threads, {doc['runs']} runs after {doc['warmup']} warmup "
         f"({doc.get('predictor_runs', doc['runs'])} for the predictors), sides "
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
    pq = doc.get("predictor_quality")
    if pq:
        o, g = pq["ours"], pq["google"]
        L += ["", f"Predictor int8 quality ({pq['protocol']}; {pq['pairs']} pairs, content {pq['content_size']}², "
              f"ours: {', '.join(pq['our_int8_kind'])}). Goal (issue 13): no worse than Google's own int8 predictor.", "",
              "| predictor | PSNR dB mean | median | worst |", "|---|---|---|---|",
              f"| Google's style_predict_quantized_256.tflite | {g['mean']} | {g['median']} | {g['min']} |",
              f"| ours, TFLite int8 plain | {o['mean']} | {o['median']} | {o['min']} |", "",
              f"Difference of means: {o['mean'] - g['mean']:+.2f} dB; of medians {o['median'] - g['median']:+.2f} dB; "
              f"of worst pairs {o['min'] - g['min']:+.2f} dB."]
    L += ["", "Op histograms side by side (transfer networks):", "", "| file | top ops |", "|---|---|"]
    for k in ("google/transfer_int8", "google/transfer_f16", "ours/transfer_int8", "ours/transfer_fp16",
              "google/predict_int8", "ours/predict_int8"):
        L.append(f"| {k} | {_top(f[k]['ops'], 10)} |")
    return L


def suite3(doc) -> list[str]:
    L = ["## 3. Roofline (fp32)", ""]
    cpu = doc.get("cpu") or {}
    if cpu:
        L += [f"CPU: {cpu.get('model_name')}, {cpu.get('vendor')} family {cpu.get('family')} model "
              f"{cpu.get('model')}, nominal {cpu.get('mhz')} MHz, flags {' '.join(cpu.get('flags') or [])}.", ""]
    L += [f"Ceiling: the theoretical peak from those flags (benchmarks/suites/roofline.py `theoretical_peak`: FMA "
          f"width and units per core, VNNI = 4 int8 multiply-adds per fp32 lane) at the higher of the nominal "
          f"clock and the clock the best measured GEMM implies (the cores boost above nominal). "
          f"Measured GEMM: {doc['gemm_n']}² fp32 matmul, median of {doc['runs']} runs, torch.mm, numpy (fresh "
          "process per thread count) and ONNX Runtime's MLAS (a one-MatMul graph); torch.mm is also "
          "interleaved with each network below.", "",
          "| threads | clock MHz (nominal / implied) | ceiling fp32 GFLOP/s | ceiling int8 GOP/s | torch.mm median (best) "
          "| numpy median (best) | ORT MatMul median (best) | all <= ceiling | load |", "|---|---|---|---|---|---|---|---|---|"]
    for th, p in doc["peak"].items():
        t = p.get("theoretical") or {}
        ort = p.get("onnxruntime")
        L.append(f"| {th} | {(p.get('nominal') or {}).get('mhz', '-')} / {p.get('implied_mhz', '-')} | "
                 f"{t.get('fp32_gflops', '-')} | {t.get('int8_gops', '-')} | "
                 f"{p['torch']['gflops_at_median']} ({p['torch']['gflops_at_min']}) | "
                 f"{p['numpy']['gflops_at_median']} ({p['numpy']['gflops_at_min']}) | "
                 f"{(str(ort['gflops_at_median']) + ' (' + str(ort['gflops_at_min']) + ')') if ort else '-'} | "
                 f"{_yes(p.get('ceiling_ok'))} | {_la(p['loadavg'])} |")
    L += ["", "FLOPs = 2 x MACs of Conv/Gemm/MatMul from onnx shape inference of the exported fp32 graph "
          "(norms, pads and activations left out: achieved rates are lower bounds). % theor. = achieved / "
          "theoretical ceiling; % GEMM = achieved / the best measured GEMM median (interleaved torch.mm, numpy or "
          "ORT MatMul) at the same thread count.", "",
          "| preset | size | thr | GFLOP | ceiling GFLOP/s | GEMM GFLOP/s | ORT fp32 ms | ORT GFLOP/s (% theor., % GEMM) "
          "| torch eager ms | eager GFLOP/s (% theor., % GEMM) | <= ceiling | load |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["networks"]:
        o, e = r["runtimes"]["onnxruntime/fp32"], r["runtimes"]["torch/eager"]
        ceil = (r.get("theoretical") or {}).get("fp32_gflops", "-")
        L.append(f"| {r['preset']} | {r['size']}² | {r['threads']} | {r['gflop']} | {ceil} | {r['peak_gflops']} | "
                 f"{_ms(o)} | {o['gflops_at_median']} ({o.get('pct_of_theoretical', '-')}%, {o['pct_of_peak']}%) | "
                 f"{_ms(e)} | {e['gflops_at_median']} ({e.get('pct_of_theoretical', '-')}%, {e['pct_of_peak']}%) | "
                 f"{_yes(r.get('ceiling_ok'))} | {_la(r['loadavg'])} |")
    over = [r for r in doc["networks"] if r.get("ceiling_exceeded_by")]
    for r in over:
        L.append(f"\n{r['preset']} {r['threads']}t exceeds the nominal-clock ceiling: {r['ceiling_exceeded_by']} "
                 "(the core runs above its nominal clock).")
    L.append("")
    return L


def first_run(folder) -> list[str]:
    """Time to a newcomer's first result (issue 21): the demo (demo_run.json), the demo's export
    (export_cost_demo.json) and `make test` (test_runs.json), each with its command."""
    L = []
    d = _load(folder, "demo_run")
    if d and d.get("phases_s"):
        ph = ", ".join(f"{k} {v:.0f}" for k, v in d["phases_s"].items())
        par = d.get("export_parallel") or {}
        walls = d.get("runs_wall_s") or [d["wall_s"]]
        side = d["export_timings"]["by_step"].get("alongside")
        L += [f"`{d.get('demo_command', 'styleport demo')}` (`{d['command']}`, commit {d.get('commit')}): "
              f"**{d['wall_s']:.0f} s** wall"
              + (f", median of {len(walls)} runs ({', '.join(f'{w:.0f}' for w in walls)} s)" if len(walls) > 1 else "")
              + f" (interpreter start included); phases of the median run {ph} s; {d['artifacts']} artefacts, "
              f"{d['gallery_images']} gallery images, Google column {'yes' if d.get('google_column') else 'no'}, "
              f"browser step {'yes' if (d.get('web') or {}).get('present') else 'no'}; export "
              f"{d['export_timings']['wall_s']:.0f} s"
              + (f" (the gallery's {side:.0f} s included: it runs beside the ExecuTorch worker)" if side else "")
              + (" with ExecuTorch in a worker (" + ", ".join(f"{f} {w['wall_s']:.0f} s" for f, w in par.items()) + ")"
                 if par else "")
              + f"; load {d['loadavg_1min']['before']}->{d['loadavg_1min']['after']}.", ""]
    e = _load(folder, "export_cost_demo")
    if e and "total_s" in e:
        L += [f"The demo's export alone (`{e['command']}`): {e['total_s']['median']:.0f} s median of {e['repeats']}"
              + (f"; the same export serial (ExecuTorch in the main process) {e['serial_total_s']['median']:.0f} s, "
                 f"{e['serial_over_parallel']}x" if e.get("serial_total_s") else "")
              + f"; by format {', '.join(f'{k} {v:.0f}' for k, v in e['timings']['by_format'].items())} s; "
              f"load {_la(e['loadavg'])}.", ""]
    t = _load(folder, "test_runs")
    if t and t.get("runs"):
        L += ["`make test` runs (test_runs.json):", "", "| commit | command | workers | ../shared | result | tests min | wall min |",
              "|---|---|---|---|---|---|---|"]
        for r in t["runs"]:
            L.append(f"| {r.get('commit')} | `{r.get('command')}` | {r.get('workers', 1)} | {r.get('shared_data', '')[:7]} | "
                     f"{r.get('pytest_summary')} | {r.get('tests_minutes')} | {r.get('wall_minutes', '-')} |")
        L.append("")
        inst = t.get("install_runs")
        if inst:
            L += [f"The install alone (`{inst['command']}`, {inst['note']}), seconds wall per pair: " + "; ".join(
                "(" + ", ".join(f"{x['commit']} {x['wall_s']:.0f}" for x in pair) + ")" for pair in inst["pairs"]) + ".", ""]
        for r in t["runs"]:
            if r.get("slowest"):
                L.append(f"Slowest tests, {r.get('commit')} ({r.get('workers', 1)} worker(s)): " + "; ".join(
                    f"{x['seconds']:.0f} s {x['when']} {x['test']}" for x in r["slowest"][:20]) + ".")
                L.append("")
    return L


def _yes(v) -> str:
    return "-" if v is None else ("yes" if v else "**no**")


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
    f = doc.get("export_cost_fp32")
    if f and "total_s" in f:
        t = f["total_s"]
        L += [f"fp32 only (`{f['command']}`: predictor + transformer x ONNX, TFLite, CoreML): **{t['median']:.0f} s** "
              f"median of {f['repeats']} (min {t['min']:.0f}, max {t['max']:.0f}); load {_la(f['loadavg'])}.", ""]
    elif f:
        L += [f"fp32 export failed: {f.get('error')}", ""]
    L += first_run(folder)
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


def suite_int8(doc) -> list[str]:
    """int8 vs fp32 per runtime, per preset (issue 13 / 17)."""
    L = ["## int8 vs fp32 per runtime (transformer)", "",
         f"Each preset's transformer exported by styleport at fp32 and int8 (calibrated on scikit-image sample "
         f"images that are not the held-out photos), every side of one row timed interleaved in one process "
         f"({doc['runs']} runs after {doc['warmup']} warm-up). Ratio = median of per-round int8/fp32 ratios. "
         f"Goals: ONNX Runtime int8 <= {doc['goals_ort_int8_vs_fp32'].get('johnson')}x fp32 on johnson, "
         f"<= {doc['goals_ort_int8_vs_fp32'].get('magenta-mobile')}x on magenta-mobile at >= {doc['psnr_goal_db']} dB "
         "(issue 13); ExecuTorch int8 <= 0.6x its fp32 (issue 17). PSNR: int8 vs fp32 PyTorch on the held-out "
         "pairs, mean (worst).", ""]
    for key, q in doc["quality"].items():
        preset, size = key.split("/")
        kinds = doc.get("int8", {}).get(key, {})
        L += [f"### {preset}, {size}² ({doc['weights'].get(preset)})", "",
              f"Held out: {q['held_out']}. Plain int8 kinds: " + ", ".join(
                  f"{f} {k.get('int8_kind')}" for f, k in kinds.items()) + ".", "",
              "| threads | runtime | fp32 ms | int8 side | int8 ms | int8 / fp32 | goal | PSNR dB | load |",
              "|---|---|---|---|---|---|---|---|---|"]
        goal_ort = doc["goals_ort_int8_vs_fp32"].get(preset)
        for r in (r for r in doc["rows"] if r["preset"] == preset and str(r["size"]) == size):
            for name, ratio in r["ratios"].items():
                side, base = name.split(" vs ")
                rt, prec = side.split("/", 1)
                goal = goal_ort if rt == "onnxruntime" and prec == "int8" else (0.6 if rt == "executorch" else None)
                ps = q["psnr"].get(f"{ {'onnxruntime': 'onnx', 'litert': 'tflite'}.get(rt, rt) }/{prec}") or {}
                pt = f"{ps['psnr_db']} ({ps['psnr_min_db']})" if ps.get("psnr_db") is not None else "-"
                met = "" if goal is None else (" met" if ratio["paired_median"] <= goal and (
                    ps.get("psnr_db") is None or ps["psnr_db"] >= doc["psnr_goal_db"]) else " **missed**")
                L.append(f"| {r['threads']} | {rt} | {_ms(r['latency'][base])} | {prec} | {_ms(r['latency'][side])} | "
                         f"{ratio['paired_median']} | {'' if goal is None else f'<= {goal}{met}'} | {pt} | "
                         f"{_la(r['loadavg'])} |")
        L.append("")
        prof = [(r["threads"], k, v) for r in doc["rows"] if r["preset"] == preset and str(r["size"]) == size
                for k, v in (r.get("profiles") or {}).items() if v]
        if prof:
            L += ["Where the ONNX Runtime time goes (`--profile`: ORT's session profiler, per-op-type share of the "
                  "summed node time):", "", "| threads | side | top op types (% of node time) |", "|---|---|---|"]
            for th, k, v in prof:
                tops = ", ".join(f"{o['op']} {o['pct']:.0f}%" for o in (v.get("by_op_type") or [])[:6]
                                 if o.get("pct") is not None)
                L.append(f"| {th} | {k} | {tops or '-'} |")
            L.append("")
    return L


def suite_fp16(doc) -> list[str]:
    """fp16 on x86 vs emulated fp16 device arithmetic (issue 16)."""
    L = ["## fp16: x86 vs emulated device arithmetic", "",
         f"Each network's fp16 bundle, PSNR against {doc['reference']} (peak {doc['psnr_peak']}), {doc['size']}² "
         f"content, images: {', '.join(doc['images'])}. x86 = the file run as it is here (ONNX Runtime / LiteRT "
         "compute fp16-weight graphs in fp32; CoreML via coreml-mil); emulated = every tensor stored in fp16 "
         "(styleport.runtime.numerics.emulate), acc16 = fp16 accumulation too. "
         f"Run took {doc['seconds']} s at load {_la(doc['loadavg'])}.", "",
         "| network | format | x86 PSNR dB mean (min) | emulated fp16 | emulated fp16-acc16 | first problem (fp16) |",
         "|---|---|---|---|---|---|"]

    def db(r, k):
        m, n = r.get(f"{k}_psnr_db_mean"), r.get(f"{k}_psnr_db_min")
        return "inf/NaN" if m is None else f"{m} ({n})"
    for r in doc["rows"]:
        prob = next((x["fp16_problem"] for x in r["images"] if x.get("fp16_problem")), "") or ""
        L.append(f"| {r['network']} | {r['format']} | {db(r, 'x86')} | {db(r, 'fp16')} | {db(r, 'acc16')} | "
                 f"{prob[:100]} |")
    for n in doc.get("notes") or []:
        L.append(f"\nNote: {n}")
    L.append("")
    return L


def suite_arm64(doc, setup) -> list[str]:
    """x86 vs the real aarch64 kernels under QEMU vs the fp16 emulator (issue 22)."""
    L = ["## ARM: x86 vs the aarch64 kernels under QEMU (separate run, needs `styleport device setup arm64`)", "",
         f"`{doc.get('command', '')}`: each network's transformer artefacts, PSNR against {doc['reference']} "
         f"(peak {doc['psnr_peak']}), {doc['size']}² content, images: {', '.join(doc['images'])}; ARM = PyPI's "
         f"aarch64 wheels {', '.join(f'{k} {v}' for k, v in (doc.get('wheels_aarch64') or {}).items())} under "
         f"qemu-aarch64 {doc.get('qemu')} (cpu {doc.get('arm_cpu')}), sysroot Debian {doc.get('sysroot')}. "
         "ARM fp16 = LiteRT with XNNPACK forced to fp16 (--arm-fp16); x86 fp16 = the same on x86; emulated = "
         f"--emulate fp16 / fp16-acc16. Run took {doc['seconds']} s at load {_la(doc['loadavg'])}; no time here "
         "is a latency.", "",
         "| network | format | precision | x86 | ARM | ARM fp16 | x86 fp16 | emulated fp16 | emulated fp16-acc16 "
         "| ARM vs x86 dB | bit-identical |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        cells = [str(r.get(f"{k}_psnr_db_mean", "-")) for k in ("x86", "arm", "arm_fp16", "x86_fp16", "emu_fp16",
                                                                  "emu_acc16")]
        vs = min(x["arm_vs_x86_psnr_db"] for x in r["images"])
        L.append(f"| {r['network']} | {r['format']} | {r['precision']} | " + " | ".join(cells)
                 + f" | {vs} | {'yes' if r['arm_bit_identical'] else 'no'} |")
    for g in doc.get("google_originals") or []:
        L.append(f"\nGoogle's original {g['file']}: x86 vs ARM bit-identical: {'yes' if g['bit_identical'] else 'no'} "
                 f"(max abs {g['max_abs']}).")
    if setup:
        runs = {r["run"]: r["seconds"] for r in setup["runs"]}
        L.append(f"\nSetup cost (`{setup.get('command', '')}`): {runs.get('fresh')} s from an empty cache (downloads "
                 f"included), {runs.get('again')} s cached; disk {setup['disk_mb']['total']} MB (sysroot "
                 f"{setup['disk_mb']['sysroot']} MB, wheels {setup['disk_mb']['wheels']} MB, debs "
                 f"{setup['disk_mb']['debs']} MB).")
    L.append("")
    return L


def suite_web(doc) -> list[str]:
    """ONNX Runtime Web (WASM) in headless Chromium beside native ONNX Runtime (issue 23)."""
    v = doc.get("versions") or {}
    L = ["## Browser: ONNX Runtime Web (WASM) vs native ONNX Runtime", "",
         f"{doc['model']} exported at {doc['size']}² (style {doc['style_size']}²); onnxruntime-web "
         f"{v.get('onnxruntime-web')} in {v.get('chromium')} (playwright {v.get('playwright')}), page cross-origin "
         f"isolated; {doc['runs']} timed runs per side after one untimed, sides one after another (not interleaved), "
         f"load {_la(doc.get('loadavg_start'))} at the start. {doc['note']}.", "",
         "| model | precision | browser vs native | latency (threads: native ORT / web session.run / web call, median ms) | web / native |",
         "|---|---|---|---|---|"]
    for r in doc["artefacts"]:
        m = r["web_vs_native"]
        q = (f"PSNR {m['psnr_db']} dB" if m.get("psnr_db") is not None else
             ("identical" if m["max_abs"] == 0 else "")) if "psnr_db" in m else ("identical" if m["max_abs"] == 0 else "")
        q = (q + "; " if q else "") + f"max abs {m['max_abs']:.2e}, rel L2 {m['rel_l2']:.1e}"
        lat = "; ".join(f"{t}: {x['native_ort']['median_ms']} / {x['web_session_run']['median_ms']} / "
                        f"{x['web_call']['median_ms']}" for t, x in r["latency_ms"].items()) or "-"
        ratio = ", ".join(f"{x['web_over_native_p50']}x at {t}" for t, x in r["latency_ms"].items()) or "-"
        L.append(f"| {r['model']} | {r['precision']} | {q} | {lat} | {ratio} |")
    for r in doc["artefacts"]:
        if "web_vs_native_unfused" in r:
            a, b, c = r["web_vs_native_unfused"], r["native_fused_vs_unfused"], r["web_fused_vs_native_unfused"]
            L += ["", f"Int8 {r['model']}, graph optimizations off on both sides (QDQ kept, float kernels): browser vs "
                  f"native PSNR {a.get('psnr_db') or 'identical'} dB. Against that unfused native result: native "
                  f"fused (integer kernels) {b.get('psnr_db')} dB, browser fused {c.get('psnr_db')} dB."]
    L.append("")
    return L


def render(folder: Path) -> str:
    docs = {n: _load(folder, n) for n in ("exported_vs_eager", "exported_vs_eager_large", "ours_vs_google",
                                          "roofline", "toolkit_cost", "scaling", "import_fidelity",
                                          "int8_runtimes", "fp16_emulation", "default_fidelity",
                                          "stylize_memory", "quant_quality", "web_runtime")}
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
    if docs["int8_runtimes"]:
        L += suite_int8(docs["int8_runtimes"])
    if docs["fp16_emulation"]:
        L += suite_fp16(docs["fp16_emulation"])
    arm = _load(folder, "arm64_numerics")
    if arm:
        L += suite_arm64(arm, _load(folder, "arm64_setup"))
    if docs["web_runtime"]:
        L += suite_web(docs["web_runtime"])
    if docs["import_fidelity"]:
        L += suite_import(docs["import_fidelity"])
    if docs["quant_quality"] and not docs["quant_quality"].get("skipped"):
        d = docs["quant_quality"]
        q = d["quality"]
        L += ["## Quantization quality (Google's imported weights)", "",
              f"`export_bundle` of {d['weights']} at {d['size']}², formats {', '.join(d['formats'])}, fp32/fp16/int8 "
              f"with every variant, calibrated on {d['calibration']}; the bundle's own quality report: PSNR against "
              f"fp32 PyTorch on {q['held_out']} ({q['pairs']} pairs). Plain int8 kinds: "
              + ", ".join(f"{k} {v}" for k, v in d["int8_plain_kind"].items()) + ".", "",
              "| model | format | precision | variant | bytes | x fp32 | PSNR dB mean (worst) | SSIM |",
              "|---|---|---|---|---|---|---|---|"]
        for r in q["results"]:
            if r["precision"] == "fp32":
                continue
            p = f"{r['psnr_db']} ({r['psnr_min_db']})" if r.get("psnr_db") is not None else (r.get("note") or "-")
            L.append(f"| {r['model']} | {r['format']} | {r['precision']} | {r.get('variant') or 'plain'} | "
                     f"{r['bytes']:,} | {r.get('ratio_to_fp32', '-')} | {p} | {r.get('ssim', '-')} |")
        L.append("")
    if docs["stylize_memory"]:
        d = docs["stylize_memory"]
        L += ["## `styleport stylize` on huge photos: peak memory", "",
              f"A fresh `styleport stylize` process per case ({d['model']} model, {d['threads']} threads), peak RSS "
              f"from the kernel (os.wait4 ru_maxrss, what /usr/bin/time reports); load {_la(d['loadavg'])}.", "",
              "| case | --max-size | exit | output | peak RSS MB | s |", "|---|---|---|---|---|---|"]
        for r in d["rows"]:
            L.append(f"| {r['case']} | {r['max_size']} | {r['rc']} | {'x'.join(map(str, r.get('output') or [])) or '-'} "
                     f"| {r['peak_rss_mb']:.0f} | {r['seconds']} |")
        L.append("")
    if docs["default_fidelity"]:
        d = docs["default_fidelity"]
        L += ["## Default model vs Google's pipeline (`tools/default_model.py fidelity`)", "",
              "`styleport stylize` with the embedded default model against Google's int8 predictor + f16 transfer "
              f"files in LiteRT, every photo x painting of ../shared/data/images at 384x384 ({d['pairs']} pairs): "
              f"PSNR min {d['psnr_db_min']} dB, mean {d['psnr_db_mean']} dB; SSIM min {d['ssim_min']}.", ""]
    return "\n".join(L) + "\n"


# ---- README highlights: the figures the README quotes, computed here and written between markers ----

README_START = "<!-- bench:start (written by benchmarks/run.py from benchmarks/results/*.json; do not edit) -->"
README_END = "<!-- bench:end -->"


def _span(vals) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}x"


def _j(name: str) -> str:
    return f"[{name}.json](benchmarks/results/{name}.json)"


def highlights(folder: Path) -> list[str]:
    """Bullets for README.md's Benchmarks section; every figure names the JSON it comes from."""
    L = []
    m = None
    e = _load(folder, "exported_vs_eager")
    if e and e.get("rows"):
        m = e.get("machine")
        rows = e["rows"]
        g = e.get("goals", {})

        def ratio(key, th=None, preset=None):
            return [r["ratios"][key]["paired_median"] for r in rows if key in r["ratios"]
                    and (th is None or r["threads"] == th) and (preset is None or r["preset"] == preset)]
        sizes = sorted({r["size"] for r in rows})
        L.append(f"- Exported fp32 vs torch eager, {', '.join(f'{s}²' for s in sizes)}, 1 and 2 threads, "
                 f"{len({r['preset'] for r in rows})} presets ({_j('exported_vs_eager')}): LiteRT "
                 f"{_span(ratio('litert/fp32 vs torch'))}, ONNX Runtime {_span(ratio('onnxruntime/fp32 vs torch'))}, "
                 f"ExecuTorch {_span(ratio('executorch/fp32 vs torch'))} (goal <= {g.get('exported_fp32_vs_eager')}x). "
                 f"LiteRT fp32 at 1 thread: magenta-mobile {_span(ratio('litert/fp32 vs torch', 1, 'magenta-mobile'))}, "
                 f"johnson {_span(ratio('litert/fp32 vs torch', 1, 'johnson'))} of eager (issue 13 goal <= 0.8x).")
        et = [(r["preset"], r["threads"], r["ratios"]["executorch/fp32 vs litert/fp32"]["paired_median"])
              for r in rows if "executorch/fp32 vs litert/fp32" in r["ratios"]]
        if et:
            goal = g.get("executorch_fp32_vs_litert_fp32", 1.1)
            L.append(f"- ExecuTorch fp32 vs LiteRT fp32 (both XNNPACK, {_j('exported_vs_eager')}): " + ", ".join(
                f"{p} {t}t {v:.2f}x" for p, t, v in et) + f"; goal <= {goal}x: met on "
                f"{sum(v <= goal for _, _, v in et)} of {len(et)} rows.")
    i8 = _load(folder, "int8_runtimes")
    if i8 and i8.get("rows"):
        m = m or i8.get("machine")
        parts = []
        for r in i8["rows"]:
            q = i8["quality"].get(f"{r['preset']}/{r['size']}", {}).get("psnr", {})
            parts.append(f"{r['preset']} {r['threads']}t: ORT int8 {r['ratios']['onnxruntime/int8 vs onnxruntime/fp32']['paired_median']:.2f}x "
                         f"({q.get('onnx/int8', {}).get('psnr_db')} dB), LiteRT "
                         f"{r['ratios']['litert/int8 vs litert/fp32']['paired_median']:.2f}x "
                         f"({q.get('tflite/int8', {}).get('psnr_db')} dB), ExecuTorch "
                         f"{r['ratios'].get('executorch/int8 vs executorch/fp32', {}).get('paired_median', float('nan')):.2f}x "
                         f"({q.get('executorch/int8', {}).get('psnr_db')} dB; static "
                         f"{r['ratios'].get('executorch/int8 static vs executorch/fp32', {}).get('paired_median', float('nan')):.2f}x)")
        L.append(f"- int8 vs fp32 of the same runtime, 384², PSNR vs fp32 PyTorch on held-out pairs "
                 f"({_j('int8_runtimes')}): " + "; ".join(parts) + ". Goals: ORT <= 0.6x (johnson) / 0.8x "
                 "(magenta-mobile) at >= 30 dB, ExecuTorch <= 0.6x.")
    o = _load(folder, "ours_vs_google")
    if o and not o.get("skipped"):
        lr, q = o["latency_ratios"], o["quality_psnr_db"]
        pq = o.get("predictor_quality") or {}
        L.append(f"- Google's network imported and re-exported, LiteRT {o['threads']} threads ({_j('ours_vs_google')}): "
                 f"our int8 transfer {lr['transfer int8 ours/google']['paired_median']:.2f}x their int8 latency, our "
                 f"fp16 {lr['transfer fp16 ours / google f16']['paired_median']:.2f}x their f16; "
                 f"{sum(f['transpose'] for f in o['files'].values())} TRANSPOSE ops in the seven files; our int8 output "
                 f"{q['ours_int8_vs_google_f16']['mean']} dB against their f16 where theirs scores "
                 f"{q['google_int8_vs_google_f16']['mean']} dB. Predictor int8 ("
                 + ", ".join(f"{k} {v}" for k, v in (o.get("int8_kinds") or {}).items() if k == "predictor")
                 + f"): {lr['predict int8 ours/google']['paired_median']:.2f}x Google's latency (goal <= 1.2x)"
                 + (f"; quality leave-one-painting-out, {pq['pairs']} pairs: ours {pq['ours']['mean']} dB mean "
                    f"(worst {pq['ours']['min']}), Google's {pq['google']['mean']} (worst {pq['google']['min']})"
                    if pq else "") + ".")
    rf = _load(folder, "roofline")
    if rf and rf.get("networks"):
        parts = [f"{n['preset']} {n['threads']}t {n['runtimes']['onnxruntime/fp32']['gflops_at_median']} GFLOP/s "
                 f"({n['runtimes']['onnxruntime/fp32'].get('pct_of_theoretical', '-')}%)" for n in rf["networks"]]
        L.append(f"- Roofline ({_j('roofline')}): ONNX Runtime fp32 at 384², share of the theoretical ceiling: "
                 + ", ".join(parts) + "; every rate under its ceiling: "
                 + ("yes" if rf.get("ceiling_ok") else "no") + ".")
    sc = _load(folder, "scaling")
    if sc and sc.get("fits"):
        f = sc["fits"].get("onnxruntime") or next(iter(sc["fits"].values()))
        L.append(f"- Cost grows linearly with pixels ({_j('scaling')}): ONNX Runtime {f['ms_per_mp']} ms per "
                 f"megapixel, R² {f['r2']}.")
    tc = _load(folder, "toolkit_cost")
    if tc:
        f32, mat = tc.get("export_cost_fp32", {}), tc.get("export_cost", {})
        ho = tc.get("harness_overhead", {}).get("results", [])
        L.append(f"- Toolkit cost ({_j('toolkit_cost')}, {_j('export_cost_fp32')}, {_j('harness_overhead')}): "
                 + (f"fp32 export of both networks to ONNX + TFLite + CoreML {f32['total_s']['median']:.0f} s "
                    f"(median of {f32['repeats']}; limit 2 minutes); " if "total_s" in f32 else "")
                 + (f"the 2 networks x 3 formats x 3 precisions matrix {mat['total_s']['median']:.0f} s; "
                    if "total_s" in mat else "")
                 + "harness overhead vs a bare runtime loop " + ", ".join(
                     f"{r['paired_median_ratio_pct']:+.2f}%" for r in ho) + ".")
    dr, tr = _load(folder, "demo_run"), _load(folder, "test_runs")
    if dr and dr.get("phases_s"):
        fresh = [r for r in (tr or {}).get("runs", []) if r.get("wall_minutes")]   # fresh clones
        last = next((r for r in reversed(fresh) if r.get("shared_data", "").startswith("present")), {})
        new_user = next((r for r in reversed(fresh) if r.get("shared_data", "").startswith("absent")), {})
        n = len(dr.get("runs_wall_s") or [1])
        L.append(f"- Time to first result ({_j('demo_run')}, {_j('test_runs')}): `{dr.get('demo_command', 'styleport demo')}` "
                 f"{dr['wall_s']:.0f} s wall{f' (median of {n})' if n > 1 else ''} (export with the gallery "
                 f"{dr['export_timings']['wall_s']:.0f} s, latency {dr['phases_s'].get('latency', 0):.0f} s, "
                 + (f"browser {dr['phases_s'].get('web', 0):.0f} s)" if (dr.get("web") or {}).get("present")
                    else "no browser step: no Chromium on that machine)")
                 + (f"; `{last.get('command')}` beside `../shared` as in CI {last.get('wall_minutes')} min wall, tests "
                    f"{last.get('tests_minutes')} min ({last.get('pytest_summary')}, {last.get('commit')})" if last else "")
                 + (f"; without `../shared`, as a new user, {new_user.get('wall_minutes')} min wall, tests "
                    f"{new_user.get('tests_minutes')} min ({new_user.get('commit')})" if new_user else "") + ".")
    imp = _load(folder, "import_fidelity")
    df = _load(folder, "default_fidelity")
    if imp and not imp.get("skipped"):
        L.append(f"- Import of Google's files vs their own files in LiteRT ({_j('import_fidelity')}), "
                 f"{imp['pairs']} pairs: transfer {imp['transfer_psnr_db']['min']}-{imp['transfer_psnr_db']['max']} dB "
                 f"with the same bottleneck, bottleneck SNR {imp['bottleneck_snr_db']['min']}-{imp['bottleneck_snr_db']['max']} dB, "
                 f"pipeline {imp['pipeline_psnr_db']['min']}-{imp['pipeline_psnr_db']['max']} dB"
                 + (f"; the embedded default through `styleport stylize` ({_j('default_fidelity')}): min "
                    f"{df['psnr_db_min']}, mean {df['psnr_db_mean']} dB" if df else "") + ".")
    fe = _load(folder, "fp16_emulation")
    if fe and fe.get("rows"):
        L.append(f"- fp16 on x86 vs emulated fp16 device arithmetic, {fe['size']}² ({_j('fp16_emulation')}): " + "; ".join(
            f"{r['network']} {r['format']} {r['x86_psnr_db_mean']} -> {r['fp16_psnr_db_mean']} dB" for r in fe["rows"]) + ".")
    sm = _load(folder, "stylize_memory")
    if sm and sm.get("rows"):
        L.append(f"- `styleport stylize` peak memory ({_j('stylize_memory')}): " + "; ".join(
            f"{r['case']} {r['peak_rss_mb']:.0f} MB in {r['seconds']} s" for r in sm["rows"]) + ".")
    qq = _load(folder, "quant_quality")
    if qq and not qq.get("skipped"):
        rows = [r for r in qq["quality"]["results"] if r["precision"] != "fp32" and r["model"] == "transformer"]
        L.append(f"- Quantization quality on Google's weights, transformer, PSNR vs fp32 PyTorch mean (worst) and size "
                 f"({_j('quant_quality')}): " + "; ".join(
                     f"{r['format']} {r['precision']}{' ' + r['variant'] if r.get('variant') else ''} "
                     f"{r.get('psnr_db')} ({r.get('psnr_min_db')}) dB, {r.get('ratio_to_fp32')}x"
                     for r in rows) + ".")
    if m:
        c = m.get("cpu_info") or {}
        L.insert(0, f"Machine: {m.get('cpu')}, {c.get('vendor')} family {c.get('family')} model {c.get('model')} "
                    f"({' '.join(c.get('flags') or [])}), {m.get('cores_usable')} cores; the load average of each "
                    "run is in RESULTS.md.")
        L.insert(1, "")
    return L


def update_readme(readme: Path, folder: Path) -> bool:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_START + "\n" + "\n".join(highlights(folder)) + "\n" + README_END + tail)
    return True
