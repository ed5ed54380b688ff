"""Parity tolerances: defaults per model/format/precision, tolerance files, and the pass/fail check.

The metrics themselves (PSNR, SSIM, SNR, cosine, absolute errors and their conventions) have one
definition, in :mod:`styleport.metrics`; they are re-exported here for the runtime's callers.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from styleport.errors import BadInput
from styleport.metrics import CAP_DB, PSNR_PEAK, compare, cosine, psnr_db, snr_db, ssim  # noqa: F401

METRICS = {  # name -> direction: "max" means value must be <= threshold, "min" means >=
    "max_abs": "max", "mean_abs": "max", "p99_abs": "max",
    "psnr_db": "min", "ssim": "min", "snr_db": "min", "cosine": "min",
}


# ---- tolerances ---------------------------------------------------------------------------------

def default_tolerance(model: str, fmt: str, precision: str, runtime: str | None = None) -> dict:
    """Defaults per precision. Images: fp32 max_abs <= 1e-4 (ONNX Runtime, torch, ExecuTorch) or 1e-3
    (LiteRT, CoreML); fp16 PSNR >= 45 dB; int8 PSNR >= 30 dB. Bottleneck (predictor): cosine and SNR, no PSNR.
    The chained pipeline gets ten times the fp32 slack and 5 dB less for fp16/int8 (errors compound)."""
    precision = precision or "fp32"
    if model == "predictor":
        return {"fp32": {"snr_db": 60.0, "cosine": 0.99999},
                "fp16": {"snr_db": 35.0, "cosine": 0.999},
                "int8": {"snr_db": 15.0, "cosine": 0.98}}.get(precision, {"snr_db": 15.0})
    if precision == "fp32":
        tight = fmt in ("onnx", "pytorch", "executorch") or runtime in ("onnxruntime", "torch", "executorch")
        tol = {"max_abs": 1e-4 if tight else 1e-3}
        if model == "pipeline":
            tol["max_abs"] *= 10
        return tol
    psnr = {"fp16": 45.0, "int8": 30.0}.get(precision, 30.0)
    if model == "pipeline":
        psnr -= 5.0
    return {"psnr_db": psnr}


def load_tolerances(path: str | Path) -> list[tuple[tuple[str, str, str], dict]]:
    """Read a TOML or JSON tolerance file. Keys select "model/format/precision" (each part may be "*",
    missing trailing parts mean "*"); values are {metric: threshold}; a metric set to false drops it.

        ["transformer/tflite/int8"]
        psnr_db = 20.0
        ["*/*/fp16"]
        psnr_db = 40
        ssim = 0.98

    An optional top-level table "tolerances" holding the same keys is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"tolerance file not found: {path}")
    try:
        text = path.read_text()
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot parse tolerance file ({type(e).__name__}: {str(e)[:120]})") from None
    if isinstance(doc, dict) and isinstance(doc.get("tolerances"), dict):
        doc = doc["tolerances"]
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: tolerance file must hold a table of selectors")
    rules = []
    for key, val in doc.items():
        parts = str(key).split("/")
        if len(parts) > 3 or not all(parts):
            raise BadInput(f"{path}: selector {key!r} must be model/format/precision (parts may be *)")
        parts += ["*"] * (3 - len(parts))
        if not isinstance(val, dict):
            raise BadInput(f"{path}: [{key}] must be a table of metric = threshold")
        clean = {}
        for metric, th in val.items():
            if metric not in METRICS:
                raise BadInput(f"{path}: [{key}] unknown metric {metric!r} (use {', '.join(METRICS)})")
            if th is False or th is None:
                clean[metric] = None
            elif isinstance(th, (int, float)) and not isinstance(th, bool) and math.isfinite(th):
                clean[metric] = float(th)
            else:
                raise BadInput(f"{path}: [{key}] {metric} must be a number or false")
        rules.append((tuple(parts), clean))
    return rules


def resolve_tolerance(model: str, fmt: str, precision: str, runtime: str | None = None,
                      rules: list | None = None) -> dict:
    tol = default_tolerance(model, fmt, precision, runtime)
    if rules:
        hits = [(sum(p != "*" for p in sel), i, vals) for i, (sel, vals) in enumerate(rules)
                if all(p == "*" or p == v for p, v in zip(sel, (model, fmt, precision)))]
        for _, _, vals in sorted(hits, key=lambda t: (t[0], t[1])):
            tol.update(vals)
    return {k: v for k, v in tol.items() if v is not None}


def check(metrics: dict, tol: dict) -> tuple[bool, list[str]]:
    """(pass, reasons). NaN/Inf and shape mismatches always fail; a metric the comparison could not
    compute (e.g. PSNR of a bottleneck) fails when a threshold asks for it."""
    if "shape_mismatch" in metrics:
        r, c = metrics["shape_mismatch"]
        return False, [f"output shape {c} differs from reference {r}"]
    reasons = []
    if metrics.get("nonfinite"):
        reasons.append(f"candidate output holds {metrics['nonfinite']} NaN/Inf values")
    if metrics.get("nonfinite_reference"):
        reasons.append(f"reference output holds {metrics['nonfinite_reference']} NaN/Inf values")
    if reasons:
        return False, reasons
    for metric, th in tol.items():
        v = metrics.get(metric)
        if v is None:
            reasons.append(f"{metric} not available for this output (threshold {th:g})")
        elif METRICS[metric] == "max" and not v <= th:
            reasons.append(f"{metric} {v:.3g} > {th:g}")
        elif METRICS[metric] == "min" and not v >= th:
            reasons.append(f"{metric} {v:.4g} < {th:g}")
    return not reasons, reasons


def selector_text(sel: tuple) -> str:
    parts = list(sel)
    while len(parts) > 1 and parts[-1] == "*":
        parts.pop()
    return "/".join(parts)


def check_selectors(rules: list | None, keys) -> None:
    """Every selector of a tolerance file must match at least one (model, format, precision) of the
    run: a mistyped selector would otherwise pass silently. Raises BadInput (exit 2) naming it and
    listing what exists."""
    if not rules:
        return
    keys = {tuple(k) for k in keys}
    for sel, _ in rules:
        if not any(all(p == "*" or p == v for p, v in zip(sel, key)) for key in keys):
            def names(i):
                return ", ".join(sorted({k[i] for k in keys})) or "none"
            raise BadInput(f"tolerance selector [{selector_text(sel)}] matches no artefact in this run "
                           f"(models: {names(0)}; formats: {names(1)}; precisions: {names(2)})")
