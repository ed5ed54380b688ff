"""Reduced-precision variants of exported artefacts (fp16, int8) for ONNX, TFLite, CoreML and ExecuTorch.

``make_variant(fmt, precision, fp32_path, out_path, **context)`` writes one artefact and returns
its manifest details; extra variants of the same precision (``int8`` has several per format) are
written beside it and listed in ``details["variants"]`` as ``{"variant", "path", "details"}`` for
the bundle writer to add as artefacts with a ``variant`` key.

| format | fp16                          | int8 (plain)             | int8 variants (need calibration: *) |
|--------|-------------------------------|--------------------------|-------------------------------------|
| onnx   | float16 weights+compute,      | dynamic uint8 weights;   | dynamic (when calibrated), a16w8*,  |
|        | f32 I/O                       | calibrated: qlinear*     | predictor: static*                  |
| tflite | float16 weights, f32 compute  | dynamic-range int8;      | full* (W8A8; transformer),          |
|        |                               | predictor calibrated:    | dynamic (predictor, when            |
|        |                               | full-integer*            | calibrated), int16x8*               |
| coreml | FLOAT16 compute (export)      | linear int8 weights      | palettize8, palettize6, palettize4  |
| executorch | float16 program (export)  | PT2E dynamic int8 conv/  | static* (PT2E, XNNPACK quantizer)   |
|        |                               | linear, norm float       |                                     |

The plain ``int8`` of each format needs no calibration images and is the best figure measured on
Google's trained weights (benchmarks/quantization.md), except when a calibration set is given:
then the ONNX plain ``int8`` of both networks is ``qlinear`` (onnx_quant: the fastest ORT int8 at
>= 30 dB: faster than fp32 on the transformer and the predictor) and the TFLite predictor's is
full-integer (int8 activations and weights with float I/O, as Google's
style_predict_quantized_256.tflite); the calibration-free one is then written as the ``dynamic``
variant (``details["int8_kind"]`` says which the plain file is). Variants marked * are produced only when a
calibration set is given (``--calib-content/--calib-style`` folders, or ``--calib-synthetic``);
without one they are skipped with a line on stderr, never calibrated on procedural images silently.
``calibration["variants"] = False`` writes the plain artefact only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from styleport.errors import BadInput

ONNX_STATIC = ("qlinear", "static", "a16w8")  # the calibrated ONNX kinds
# The calibrated ONNX plain int8 per network, and the variants written beside it.
# No ``static`` transformer variant: on Google's weights and johnson it ran 1.08-1.15x fp32 at
# 34.7 / 35.6 dB, beaten on PSNR by ``dynamic`` (37.7 / 41.5 dB, no calibration) at the same speed
# and on speed by ``qlinear`` (0.32x / 0.47x fp32). Predictor (MobileNetV2, Google's weights, 256²):
# qlinear 0.54x fp32 at 43.1 dB (pipeline PSNR), static 0.69x at 45.0 dB: the faster one at >= 30 dB
# is the plain int8, as for the transformer; static stays as a variant.
ONNX_PLAIN = {"transformer": "qlinear", "predictor": "qlinear"}
ONNX_VARIANTS = {"transformer": ("dynamic", "a16w8"), "predictor": ("dynamic", "static", "a16w8")}
TFLITE_STATIC = ("full", "int16x8")
COREML_PALETTES = ("palettize8", "palettize6", "palettize4")
EXECUTORCH_STATIC = ("static",)


def _hw(inputs, sample) -> tuple[int, int]:
    t = sample[0]
    return (int(t.shape[1]), int(t.shape[2])) if inputs[0]["layout"] == "NHWC" else (int(t.shape[2]), int(t.shape[3]))


def _calib_feeds(ctx, network, style_views: bool = False):
    """(feeds, source) of the calibration set; kept in ``ctx["cache"]`` (one dict per export) so
    formats with the same input layout decode the images and run the predictor once."""
    from styleport.export.timing import step
    from styleport.quantization import calibration as C
    model, inputs, sample = ctx["model"], ctx["inputs"], ctx["sample"]
    cache = ctx.get("cache")
    key = (network, style_views, tuple((e["name"], e.get("layout"), bool(e.get("image")), str(e.get("shape")))
                                       for e in inputs))
    if cache is not None and key in cache:
        return cache[key]
    with step("calibrate"):
        hw = _hw(inputs, sample)
        if network == "predictor":
            style_size, size = hw[0], hw
        else:
            size = hw
            style_size = int(getattr(model, "style_size", 256) or 256)
        cal = C.build_set(ctx.get("calibration"), model, network, size, style_size, style_views=style_views)
        res = C.feeds(model, network, inputs, cal), cal.describe()
    if cache is not None:
        cache[key] = res
    return res


def _has_calibration(cal: dict | None) -> bool:
    cal = cal or {}
    return bool(cal.get("content") or cal.get("style") or cal.get("synthetic"))


def _variant_path(out_path: Path, name: str) -> Path:
    # transformer.int8.onnx -> transformer.int8-static.onnx ; .mlpackage likewise
    stem, _, ext = out_path.name.partition(".")
    rest = ext.split(".", 1)
    return out_path.with_name(f"{stem}.{rest[0]}-{name}.{rest[1]}" if len(rest) == 2 else f"{stem}-{name}.{ext}")


def make_variant(fmt: str, precision: str, fp32_path: Path, out_path: Path, **ctx) -> dict:
    from styleport.export.timing import step
    from styleport.quantization.calibration import parse_options
    # fp32_path is None for formats quantized from the torch module (formats.BASE == "module")
    fp32_path, out_path = (Path(fp32_path) if fp32_path is not None else None), Path(out_path)
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
        if fmt == "executorch":
            raise BadInput("ExecuTorch fp16 is made by the exporter (a float16 program with float32 I/O)")
        raise BadInput("CoreML fp16 is made by the exporter (compute precision FLOAT16)")
    if precision != "int8":
        raise BadInput(f"{fmt} {precision} is not supported")

    extra = []
    onnx_calibrated = tuple(k for k in (ONNX_PLAIN.get(network, "qlinear"),) + ONNX_VARIANTS.get(network, ())
                            if k != "dynamic")
    static_names = {"onnx": onnx_calibrated, "tflite": TFLITE_STATIC, "executorch": EXECUTORCH_STATIC}.get(fmt, ())
    feeds = source = None
    if static_names and _has_calibration(cal) and (want_variants or fmt == "onnx"):
        # ONNX: a calibration set changes the plain int8 itself, variants or not
        feeds, source = _calib_feeds(dict(ctx, calibration=cal), network)
    elif want_variants and static_names and not _has_calibration(cal):
        print(f"styleport: {network} {fmt} int8: static variants ({', '.join(static_names)}) skipped: "
              "no calibration images (--calib-content / --calib-style DIR, or --calib-synthetic)",
              file=sys.stderr)
    if fmt == "onnx":
        from styleport.quantization import onnx_quant as Q
        # calibrated plain int8: qlinear, the layout ORT runs on its integer kernels (faster than fp32,
        # README); uncalibrated: dynamic (on the predictor ConvInteger keeps only ~22 dB)
        primary = "dynamic" if feeds is None else ONNX_PLAIN.get(network, "qlinear")
        if primary != "dynamic":
            details = dict(Q.quantize(fp32_path, out_path, primary, feeds, method=cal["method"]), calibration=source)
        else:
            details = Q.quantize(fp32_path, out_path, "dynamic")
        details["int8_kind"] = primary
        if feeds is not None and want_variants:
            for v in ONNX_VARIANTS.get(network, ("dynamic", "a16w8")):
                p = _variant_path(out_path, v)
                with step("quantize", variant=v):
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
                with step("quantize", variant=v):
                    d = T.quantize(fp32_path, p, v, feeds if v != "dynamic" else None)
                extra.append({"variant": v, "path": p, "details": dict(d, calibration=source if v != "dynamic" else None)})
    elif fmt == "coreml":
        from styleport.quantization import coreml_quant as M
        details = dict(M.compress(fp32_path, out_path, "int8"), int8_kind="linear")
        if want_variants:
            for v in COREML_PALETTES:
                p = _variant_path(out_path, v)
                with step("quantize", variant=v):
                    extra.append({"variant": v, "path": p, "details": M.compress(fp32_path, p, v)})
    elif fmt == "executorch":
        from styleport.quantization import executorch_quant as X
        # PT2E quantizes the torch module, not the fp32 file. The plain int8 is dynamic (no calibration;
        # 41.4 dB vs the static 34.2 dB on Google's weights, benchmarks/quantization.md); the static
        # one (faster: 0.49 vs 0.58x fp32 at 1 thread) is the variant "static" when calibrated
        module, sample, inputs, outputs = ctx["module"], ctx["sample"], ctx["inputs"], ctx["outputs"]
        details = dict(X.quantize(module, sample, inputs, outputs, out_path, "dynamic"), int8_kind="dynamic")
        if feeds is not None:
            p = _variant_path(out_path, "static")
            try:
                with step("quantize", variant="static"):
                    extra.append({"variant": "static", "path": p, "details": dict(
                        X.quantize(module, sample, inputs, outputs, p, "static", feeds), calibration=source)})
            except RuntimeError as e:  # a variant XNNPACK cannot run is left out, out loud
                details["static_variant"] = f"skipped: {e}"
                print(f"styleport: {network} executorch int8 static variant skipped: {e}", file=sys.stderr)
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
    returns the chosen float layers and the size/latency-vs-PSNR curve (``export --target-psnr``)."""
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
