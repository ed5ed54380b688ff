"""Reduced-precision variants of exported artefacts (fp16, int8) for ONNX, TFLite and CoreML.

``make_variant(fmt, precision, fp32_path, out_path, **context)`` writes one artefact and returns
its manifest details; extra variants of the same precision (``int8`` has several per format) are
written beside it and listed in ``details["variants"]`` as ``{"variant", "path", "details"}`` for
the bundle writer to add as artefacts with a ``variant`` key.

| format | fp16                          | int8 (plain)             | int8 variants (need calibration: *) |
|--------|-------------------------------|--------------------------|-------------------------------------|
| onnx   | float16 weights+compute, f32 I/O | dynamic uint8 weights (predictor: static QDQ when calibrated) | static*/dynamic, a16w8* |
| tflite | float16 weights, f32 compute  | dynamic-range int8 (predictor: full-integer when calibrated) | full*/dynamic, int16x8* |
| coreml | FLOAT16 compute (export)      | linear int8 weights      | palettize8, palettize6, palettize4  |

The plain ``int8`` of each format needs no calibration images and is the best figure measured on
Google's trained weights (benchmarks/quantization.md), except the predictor's when a calibration
set is given: then it is static (ONNX QDQ; TFLite full-integer, int8 activations and weights with
float I/O, as Google's style_predict_quantized_256.tflite), and the calibration-free one becomes the
``dynamic`` variant. Variants marked * are produced only when a
calibration set is given (``--calib-content/--calib-style`` folders, or ``--calib-synthetic``);
without one they are skipped with a line on stderr, never calibrated on procedural images silently.
``calibration["variants"] = False`` writes the plain artefact only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from styleport.errors import BadInput

ONNX_STATIC = ("static", "a16w8")
TFLITE_STATIC = ("full", "int16x8")
COREML_PALETTES = ("palettize8", "palettize6", "palettize4")


def _hw(inputs, sample) -> tuple[int, int]:
    t = sample[0]
    return (int(t.shape[1]), int(t.shape[2])) if inputs[0]["layout"] == "NHWC" else (int(t.shape[2]), int(t.shape[3]))


def _calib_feeds(ctx, network, style_views: bool = False):
    from styleport.quantization import calibration as C
    model, inputs, sample = ctx["model"], ctx["inputs"], ctx["sample"]
    hw = _hw(inputs, sample)
    if network == "predictor":
        style_size, size = hw[0], hw
    else:
        size = hw
        style_size = int(getattr(model, "style_size", 256) or 256)
    cal = C.build_set(ctx.get("calibration"), model, network, size, style_size, style_views=style_views)
    return C.feeds(model, network, inputs, cal), cal.describe()


def _has_calibration(cal: dict | None) -> bool:
    cal = cal or {}
    return bool(cal.get("content") or cal.get("style") or cal.get("synthetic"))


def _variant_path(out_path: Path, name: str) -> Path:
    # transformer.int8.onnx -> transformer.int8-static.onnx ; .mlpackage likewise
    stem, _, ext = out_path.name.partition(".")
    rest = ext.split(".", 1)
    return out_path.with_name(f"{stem}.{rest[0]}-{name}.{rest[1]}" if len(rest) == 2 else f"{stem}-{name}.{ext}")


def make_variant(fmt: str, precision: str, fp32_path: Path, out_path: Path, **ctx) -> dict:
    from styleport.quantization.calibration import parse_options
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    cal = parse_options(ctx.get("calibration"))
    network = ctx.get("network", "transformer")
    want_variants = cal.get("variants", True)
    if precision == "fp16":
        if fmt == "onnx":
            from styleport.quantization.onnx_quant import to_fp16
            return to_fp16(fp32_path, out_path)
        if fmt == "tflite":
            from styleport.quantization.tflite_quant import quantize
            return quantize(fp32_path, out_path, "fp16")
        raise BadInput("CoreML fp16 is made by the exporter (compute precision FLOAT16)")
    if precision != "int8":
        raise BadInput(f"{fmt} {precision} is not supported")

    extra = []
    static_names = {"onnx": ONNX_STATIC, "tflite": TFLITE_STATIC}.get(fmt, ())
    feeds = source = None
    if want_variants and static_names:
        if _has_calibration(cal):
            feeds, source = _calib_feeds(dict(ctx, calibration=cal), network)
        else:
            print(f"styleport: {network} {fmt} int8: static variants ({', '.join(static_names)}) skipped: "
                  "no calibration images (--calib-content / --calib-style DIR, or --calib-synthetic)",
                  file=sys.stderr)
    if fmt == "onnx":
        from styleport.quantization import onnx_quant as Q
        # the predictor's plain int8 is static QDQ when calibrated: ConvInteger (dynamic) keeps only
        # ~22 dB on Google's MobileNetV2 vs 46 dB static (benchmarks/quantization.md)
        primary = "static" if network == "predictor" and feeds is not None else "dynamic"
        if primary == "static":
            details = dict(Q.quantize(fp32_path, out_path, "static", feeds, method=cal["method"]), calibration=source)
        else:
            details = Q.quantize(fp32_path, out_path, "dynamic")
        if feeds is not None:
            for v in ("dynamic",) + ONNX_STATIC:
                if v == primary:
                    continue
                p = _variant_path(out_path, v)
                d = Q.quantize(fp32_path, p, v, feeds, method=cal["method"])
                extra.append({"variant": v, "path": p, "details": dict(d, calibration=source if v != "dynamic" else None)})
    elif fmt == "tflite":
        from styleport.quantization import tflite_quant as T
        # the predictor's plain int8 is full-integer when calibrated: MobileNetV2 has no instance norm,
        # every op has an int8 XNNPACK kernel; dynamic-range runs 17.8 ms vs 2.5 ms for Google's
        # full-integer file (shared/DESIGN.md; README, Quantization). The transformer keeps dynamic-range (its
        # int8 DIV/RSQRT leave XNNPACK).
        # (with --no-variants too: the calibration set decides the plain artefact, variants are extra)
        primary = "full" if network == "predictor" and _has_calibration(cal) else "dynamic"
        pfeeds = psource = None
        if primary == "full":  # small style sets widened with views (calibration.py)
            pfeeds, psource = _calib_feeds(dict(ctx, calibration=cal), network, style_views=True)
        details = T.quantize(fp32_path, out_path, primary, pfeeds)
        details["int8_kind"] = primary
        if primary != "dynamic":
            details["calibration"] = psource
        if feeds is not None:
            for v in ("dynamic",) + TFLITE_STATIC:
                if v == primary:
                    continue
                p = _variant_path(out_path, v)
                d = T.quantize(fp32_path, p, v, feeds if v != "dynamic" else None)
                extra.append({"variant": v, "path": p, "details": dict(d, calibration=source if v != "dynamic" else None)})
    elif fmt == "coreml":
        from styleport.quantization import coreml_quant as M
        details = M.compress(fp32_path, out_path, "int8")
        if want_variants:
            for v in COREML_PALETTES:
                p = _variant_path(out_path, v)
                extra.append({"variant": v, "path": p, "details": M.compress(fp32_path, p, v)})
    else:
        raise BadInput(f"unknown format {fmt!r}")
    details.setdefault("calibration", None)
    if static_names and feeds is None and want_variants:
        details["static_variants"] = "skipped: no calibration set given"
    if extra:
        details["variants"] = extra
    return details


def search_target_psnr(fp32_path: Path, out_path: Path, *, model, network: str, inputs: list, sample: tuple,
                       calibration: dict, target_psnr: float, kind: str = "w8a8", style_size: int = 256) -> dict:
    """``--target-psnr DB`` on the ONNX static path (see onnx_quant.search_float_layers): calibrates
    on the calibration set, measures on held-out images (report.held_out) against torch fp32 and
    returns the chosen float layers and the size/latency-vs-PSNR curve. The lead wires the flag."""
    import torch

    from styleport.quantization import calibration as C
    from styleport.quantization.onnx_quant import search_float_layers
    from styleport.quantization.report import held_out
    cal = C.parse_options(calibration)
    if network != "transformer":
        raise BadInput("--target-psnr applies to the transformer (image output)")
    if not _has_calibration(cal):
        raise BadInput("--target-psnr needs a calibration set (--calib-content / --calib-style DIR, or --calib-synthetic)")
    feeds, source = _calib_feeds(dict(model=model, inputs=inputs, sample=sample, calibration=cal), network)
    hw = _hw(inputs, sample)
    contents, styles, desc = held_out(cal, hw, style_size)
    held = C.CalibrationSet(content=contents, style=styles)
    eval_feeds = C.feeds(model, network, inputs, held)
    with torch.no_grad():
        seconds = C.style_inputs(model, held, len(contents))
        kind_ = getattr(model, "kind", "single")
        refs = []
        for c, s in zip(contents, seconds):
            out = model.transformer(c, s) if kind_ == "arbitrary" else (model(c, s) if kind_ == "multi" else model(c))
            refs.append(out.numpy())
    res = search_float_layers(Path(fp32_path), Path(out_path), feeds, eval_feeds, refs, target_psnr,
                              kind=kind, method=cal["method"])
    res["calibration"] = source
    res["held_out"] = desc
    return res
