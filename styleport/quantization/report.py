"""Quality report of a bundle's artefacts against PyTorch fp32: ``quality.json`` + ``quality.md``.

Per artefact: bytes and ratio to the fp32 file of the same network and format, PSNR and SSIM
(styleport.metrics: peak 1.0, outputs compared as produced) of the stylised image against the fp32 torch network on **held-out** images, a rough
latency (median over the held-out runs, 2 threads, measured during export), and which op kinds ran
quantized / stayed float, counted from the graph.

* transformer artefacts: held-out content + a style input (arbitrary: the fp32 torch predictor's
  bottleneck of a held-out style image; dumoulin: one-hot rows), output vs the torch transformer.
* predictor artefacts: the artefact's bottleneck drives the fp32 torch transformer on held-out
  content; PSNR/SSIM of that image vs the all-fp32 pipeline, plus the bottleneck's SNR.
* CoreML: run with the numpy MIL interpreter (styleport.runtime.coreml.runner); latency not reported
  (a reference interpreter, not CoreML). ExecuTorch: the wheel's runtime (XNNPACK, default threadpool).
* fp16 artefacts: an fp16 headroom table (issue #16), from one emulated-fp16 run on the first
  held-out pair (styleport.runtime.numerics.emulate: every tensor stored in fp16, as a phone's GPU or
  XNNPACK fp16 path does): per layer, max |value| and log2(65504 / max|value|), the first layer that
  overflows, and the emulated PSNR beside the x86 one.

Held-out images: ``calibration["eval_content"]`` / ``["eval_style"]`` folders when given; else the
images of the calibration folders that calibration did not sample; else procedural images
(styleport.samples, seeds 1000+, distinct from ``--calib-synthetic``'s seeds) — the report says which.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from styleport import metrics
from styleport.export.timing import step

MAX_CONTENT = 4
MAX_STYLE = 2


def held_out(calibration: dict | None, size, style_size: int) -> tuple[list, list, str]:
    """(content NCHW tensors, style NCHW tensors, description)."""
    from styleport.images import list_images, load_image
    from styleport.paths import display_path
    from styleport.quantization import calibration as C
    cal = calibration or {}
    desc = []
    sets = {}
    for what, n_max in (("content", MAX_CONTENT), ("style", MAX_STYLE)):
        files = []
        if cal.get(f"eval_{what}"):
            files = list_images(cal[f"eval_{what}"])[:n_max]
            desc.append(f"{what}: {len(files)} images of {display_path(cal[f'eval_{what}'])}")
        elif cal.get(what):
            all_files = list_images(cal[what])
            used = set(C._pick(all_files, None if cal.get("count") is None else min(cal["count"], len(all_files)),
                               C.DEFAULT_COUNTS[what], what, cal[what]))
            files = [f for f in all_files if f not in used][:n_max]
            if files:
                desc.append(f"{what}: {len(files)} images of {display_path(cal[what])} not sampled for calibration")
        imgs = [load_image(f) for f in files]
        if not imgs:
            from styleport import samples
            if what == "content":
                imgs = [samples.content_scene(max(size), seed=1000 + i) for i in range(2)]
            else:
                imgs = [samples.style_pattern(samples.STYLES[i % len(samples.STYLES)], style_size, seed=1000 + i)
                        for i in range(2)]
            desc.append(f"{what}: procedural (styleport.samples, seeds 1000+; no held-out folder images)")
        sets[what] = ([C.content_tensor(im, size) for im in imgs] if what == "content"
                      else [C.style_tensor(im, style_size) for im in imgs])
    return sets["content"], sets["style"], "; ".join(desc)


class _Run:
    """feeds -> first output for one artefact file."""

    def __init__(self, fmt: str, path: Path):
        self.fmt = fmt
        if fmt == "onnx":
            from styleport.quantization.onnx_quant import session
            s = session(path)
            self.fn = lambda feeds: s.run(None, feeds)[0]
            self.runtime = "onnxruntime"
        elif fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            from styleport.export.wrappers import quiet_torch_export
            with quiet_torch_export():
                r = Interpreter(model_path=str(path), num_threads=2).get_signature_runner()
            self.fn = lambda feeds: next(iter(r(**feeds).values()))
            self.runtime = "ai-edge-litert"
        elif fmt == "executorch":
            from styleport.export.wrappers import quiet_torch_export
            from styleport.runtime.runners.executorch import load_program
            with quiet_torch_export():
                m = load_program(path).method("forward")
            self.fn = lambda feeds: m([torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])[0]
            self.runtime = "executorch"
        else:
            from styleport.runtime.coreml.runner import CoreMLMilRunner
            r = CoreMLMilRunner(str(path)).open()
            self.fn = lambda feeds: next(iter(r.run(feeds).values()))
            self.runtime = "coreml-mil (numpy reference interpreter)"

    def __call__(self, feeds):
        return np.asarray(self.fn(feeds), dtype=np.float32)


def _to_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


def evaluate(artifacts: list, root: Path, model, size, style_size: int, calibration=None,
             fp32_bytes: dict | None = None) -> dict:
    contents, styles, desc = held_out(calibration, size, style_size)
    kind = getattr(model, "kind", "single")
    with torch.no_grad():
        if kind == "arbitrary":
            seconds = [model.predictor(s).reshape(1, -1) for s in styles]
        elif kind == "multi":
            seconds = [torch.eye(model.num_styles)[i % model.num_styles].reshape(1, -1) for i in range(len(styles))]
        else:
            seconds = [None] * len(styles)
        pairs = [(c, i % len(styles)) for i, c in enumerate(contents)]

        def transform(c, s):
            if kind == "arbitrary":
                return model.transformer(c, s)
            if kind == "multi":
                return model(c, s)
            return model(c)
        refs = [transform(c, seconds[j]).numpy() for c, j in pairs]
    fp32_bytes = dict(fp32_bytes or {})
    for a in artifacts:
        if a["precision"] == "fp32" and not a.get("variant"):
            fp32_bytes.setdefault((a["model"], a["format"]), a["bytes"])
    rows = []
    for a in artifacts:
        with step("score", model=a["model"], format=a["format"], precision=a["precision"], variant=a.get("variant")):
            rows.append(_score(a, root, model, pairs, refs, styles, seconds, fp32_bytes))
    return {"schema": 1, "reference": "PyTorch fp32 (the checkpoint's network)",
            "psnr_peak": metrics.PSNR_PEAK, "metrics": "styleport.metrics (PSNR peak 1.0 on outputs as produced; "
            "SSIM skimage, data_range 1, 7x7 window)",
            "held_out": desc, "pairs": len(pairs), "size": list(size), "style_size": style_size,
            "latency": "median of the held-out runs, 2 threads, measured during export (rough)",
            "results": rows}


def _score(a: dict, root: Path, model, pairs, refs, styles, seconds, fp32_bytes: dict) -> dict:
    """One artefact's quality row (see :func:`evaluate`)."""
    from styleport.quantization import calibration as C
    row = {k: a.get(k) for k in ("model", "format", "precision", "variant", "path", "bytes")}
    base = fp32_bytes.get((a["model"], a["format"]))
    row["ratio_to_fp32"] = round(a["bytes"] / base, 4) if base else None
    ops = (a.get("details") or {}).get("ops")
    if ops:
        row["ops_quantized"] = ops.get("quantized") or ops.get("compressed_weights") or {}
        row["ops_float"] = ops.get("float", {})
    try:
        run = _Run(a["format"], root / a["path"])
    except Exception as e:  # noqa: BLE001 - report it, do not fail the export over a metric
        row["note"] = f"not run: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return row
    row["runtime"] = run.runtime
    ins = a["inputs"]
    ps, ss, ts, snrs = [], [], [], []
    try:
        for k, ((c, j), ref) in enumerate(zip(pairs, refs)):
            if a["model"] == "predictor":
                feeds = {ins[0]["name"]: C.to_feed(ins[0], styles[j])}
                t0 = time.perf_counter()
                b = run(feeds)
                ts.append(time.perf_counter() - t0)
                b = torch.from_numpy(b.reshape(1, -1))
                ref_b = seconds[j]
                snrs.append(metrics.snr_db(ref_b.numpy(), b.numpy()))
                with torch.no_grad():
                    got = model.transformer(c, b).numpy()
            else:
                feeds = {ins[0]["name"]: C.to_feed(ins[0], c)}
                if len(ins) > 1 and seconds[j] is not None:
                    feeds[ins[1]["name"]] = C.to_feed(ins[1], seconds[j])
                if k == 0 and run.fmt != "coreml":
                    run(feeds)  # warm-up
                t0 = time.perf_counter()
                got = _to_nchw(run(feeds), ins[0]["layout"])
                if (a.get("outputs") or [{}])[0].get("image"):  # CoreML image output: 0..255
                    got = got / 255.0
                ts.append(time.perf_counter() - t0)
            ps.append(metrics.psnr_db(ref, got))
            ss.append(metrics.ssim(ref, got))
    except Exception as e:  # noqa: BLE001
        row["note"] = f"run failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return row
    if a["precision"] == "fp16" and not a.get("variant"):
        row["fp16_headroom"] = _fp16_headroom(a, root, feeds, ref if a["model"] != "predictor" else None)
    row["psnr_db"] = round(float(np.mean(ps)), 2)
    row["psnr_min_db"] = round(float(np.min(ps)), 2)
    row["ssim"] = round(float(np.mean(ss)), 4)
    if snrs:
        row["bottleneck_snr_db"] = round(float(np.mean(snrs)), 2)
    if a["format"] != "coreml":
        row["latency_ms"] = round(float(np.median(ts)) * 1000, 1)
    return row


def _fp16_headroom(a: dict, root: Path, feeds: dict, ref) -> dict:
    """One emulated-fp16 run of an fp16 artefact on the last held-out feeds (the quality report
    borrows the runtime's emulator, as it borrows the coreml-mil runner)."""
    try:
        from styleport.runtime.numerics.emulate import emulate
        e = emulate(root / a["path"], feeds, "fp16", fmt=a["format"], reference=False)
        s = e.summary()
        doc = {"mode": "fp16", "min_margin_bits": s["min_margin_bits"], "min_margin_at": s["min_margin_at"],
               "problem": e.problem(), "layers": s["headroom"]}
        if ref is not None:
            out = _to_nchw(np.asarray(next(iter(e.outputs.values())), np.float32), a["inputs"][0]["layout"])
            p = metrics.psnr_db(ref, out)   # None when the emulated output holds inf/NaN (an overflow)
            doc["emulated_psnr_db"] = round(p, 2) if p is not None else None
        return doc
    except Exception as e:  # noqa: BLE001 - a metric must not fail the export
        return {"note": f"not run: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}


def _headroom_md(doc: dict) -> list[str]:
    rows = [r for r in doc["results"] if r.get("fp16_headroom")]
    if not rows:
        return []
    lines = ["", "## fp16 headroom (emulated fp16: every tensor stored in fp16, sums in fp32)", "",
             "Margin = log2(65504 / max |value|) over the tensors of each layer (a layer = a convolution "
             "and the ops after it); negative = overflow. One run on the last held-out pair.", ""]
    for r in rows:
        h = r["fp16_headroom"]
        head = f"### {r['model']} {r['format']} fp16"
        if h.get("note"):
            lines += [head, "", h["note"], ""]
            continue
        em = f", emulated PSNR {h['emulated_psnr_db']:.1f} dB" if h.get("emulated_psnr_db") is not None else ""
        mm = "-" if h["min_margin_bits"] is None else f"{h['min_margin_bits']:.1f}"
        lines += [head, "", f"Smallest margin {mm} bits at {h['min_margin_at']}{em}. "
                  + (h["problem"] or "No overflow."), "",
                  "| layer | max abs value | margin (bits) | overflow |", "|---|---:|---:|---:|"]
        for L in h["layers"]:
            m = L["margin_bits"]
            bad = L["overflow"] or L["nonfinite"]
            lines.append(f"| {L['layer']} | {'inf' if L['max_abs'] is None and bad else '-' if L['max_abs'] is None else format(L['max_abs'], '.4g')} | "
                         f"{'OVERFLOW' if bad else '-' if m is None else format(m, '.1f')} | "
                         f"{L['overflow'] or ''} |")
        lines.append("")
    return lines


def markdown(doc: dict) -> str:
    lines = ["# Quantization quality", "",
             f"Reference: {doc['reference']}; metrics: {doc['metrics']}.", f"Held-out images: {doc['held_out']} ({doc['pairs']} pairs, "
             f"content {doc['size'][0]}x{doc['size'][1]}).", f"Latency: {doc['latency']}.", "",
             "| model | format | precision | variant | bytes | x fp32 | PSNR dB (min) | SSIM | ms | quantized ops | float ops |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|---|"]

    def ops(d):
        return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "-"
    for r in doc["results"]:
        p = f"{r['psnr_db']:.1f} ({r['psnr_min_db']:.1f})" if r.get("psnr_db") is not None else (r.get("note") or "-")
        if p != "-" and r.get("psnr_db") is not None and not np.isfinite(r["psnr_db"]):
            p = "exact"
        lines.append(f"| {r['model']} | {r['format']} | {r['precision']} | {r.get('variant') or ''} | {r['bytes']:,} | "
                     f"{r['ratio_to_fp32'] if r.get('ratio_to_fp32') is not None else '-'} | {p} | "
                     f"{r.get('ssim', '-')} | {r.get('latency_ms', '-')} | {ops(r.get('ops_quantized'))} | "
                     f"{ops(r.get('ops_float'))} |")
    lines += _headroom_md(doc)
    lines += _choice_md(doc.get("int8_choice"))
    return "\n".join(lines) + "\n"


def _choice_md(records) -> list[str]:
    """The --target-psnr table: every int8 candidate per network and format, the Pareto front, the choice."""
    if not records:
        return []
    t = records[0]["target_psnr_db"]
    lines = ["", f"## int8 choice (--target-psnr {t:g} dB)", "",
             "Per network and format, every int8 artefact timed here (interleaved, median) and scored on the "
             "held-out pairs above; the fastest whose worst pair reaches the target is the plain int8. "
             "Pareto: not beaten on both ms and worst-pair PSNR.", "",
             "| model | format | variant | bytes | ms | PSNR dB (min) | meets | Pareto | chosen |",
             "|---|---|---|---:|---:|---:|---|---|---|"]
    for rec in records:
        for r in rec["candidates"]:
            p = f"{r['psnr_db']:.1f} ({r['psnr_min_db']:.1f})" if r.get("psnr_min_db") is not None else "-"
            lines.append(f"| {rec['model']} | {rec['format']} | {r['variant']}{' (was plain)' if r['plain'] else ''} | "
                         f"{r['bytes']:,} | {r['ms'] if r['ms'] is not None else '-'} | {p} | "
                         f"{'yes' if r['meets'] else 'no'} | {'yes' if r['variant'] in rec['pareto'] else ''} | "
                         f"{'**yes**' if r['variant'] == rec['chosen'] else ''} |")
    lines.append("")
    lines += [f"- {rec['model']} {rec['format']}: {rec['chosen']} ({rec['reason']})" for rec in records]
    return lines


def write_quality_report(root, artifacts, model, fp32_paths, size, style_size, calibration=None) -> dict:
    """Evaluate every artefact of the bundle being written at ``root``; write quality.json/.md; add
    ``details.quality`` {psnr_db, ssim} to each artefact."""
    from styleport.manifest import size_path
    root = Path(root)
    if isinstance(size, int):
        size = (size, size)
    fp32_bytes = {k: size_path(p) for k, p in (fp32_paths or {}).items()}
    doc = evaluate(artifacts, root, model, size, style_size, calibration, fp32_bytes)
    for a, r in zip(artifacts, doc["results"]):
        if r.get("psnr_db") is not None:
            a.setdefault("details", {})["quality"] = {"psnr_db": r["psnr_db"], "ssim": r["ssim"],
                                                      "vs": "torch fp32, held-out images (quality.json)"}
    write_quality_files(root, doc)
    return doc


def write_quality_files(root, doc: dict) -> None:
    root = Path(root)
    (root / "quality.json").write_text(json.dumps(doc, indent=2, default=str).replace("Infinity", "null") + "\n")
    (root / "quality.md").write_text(markdown(doc))
