"""Parity metrics and tolerances (comparators only compare).

Images (canonical float32 NCHW in [0,1]):
  max_abs, mean_abs, p99_abs      absolute error
  psnr_db                         10*log10(peak^2 / MSE) with peak = 1.0 (the [0,1] value range)
  ssim                            skimage.metrics.structural_similarity, channel_axis=-1, data_range=1
                                  (mean over the batch; window shrunk to fit images under 7 px)
  snr_db                          10*log10(sum(ref^2) / sum((cand-ref)^2))
  cosine                          cosine similarity of the flattened tensors
Vectors (the 100-d style bottleneck is not an image, so a peak of 1.0 means nothing): psnr_db and
ssim are None; judge with cosine, max_abs and snr_db.
PSNR and SNR are capped at 200 dB (= identical outputs). NaN or Inf in the candidate always fails.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np

from styleport.errors import BadInput

CAP_DB = 200.0
METRICS = {  # name -> direction: "max" means value must be <= threshold, "min" means >=
    "max_abs": "max", "mean_abs": "max", "p99_abs": "max",
    "psnr_db": "min", "ssim": "min", "snr_db": "min", "cosine": "min",
}


def _db(num: float, den: float) -> float:
    if den <= 0:
        return CAP_DB
    if num <= 0:
        return -CAP_DB
    return float(min(CAP_DB, 10.0 * math.log10(num / den)))


def ssim(ref: np.ndarray, cand: np.ndarray) -> float | None:
    from skimage.metrics import structural_similarity
    h, w = ref.shape[2], ref.shape[3]
    side = min(h, w)
    if side < 3:
        return None
    win = min(7, side if side % 2 else side - 1)
    vals = [structural_similarity(r.transpose(1, 2, 0), c.transpose(1, 2, 0), channel_axis=-1,
                                  data_range=1.0, win_size=win)
            for r, c in zip(ref.astype(np.float64), cand.astype(np.float64))]
    return float(np.mean(vals))


def compare(ref: np.ndarray, cand: np.ndarray, kind: str = "image") -> dict:
    """Metrics of ``cand`` against ``ref`` (same shape). ``kind`` image or vector."""
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    if ref.shape != cand.shape:
        return {"shape_mismatch": [list(ref.shape), list(cand.shape)], "nonfinite": 0}
    bad = int((~np.isfinite(cand)).sum())
    bad_ref = int((~np.isfinite(ref)).sum())
    m = {"kind": kind, "nonfinite": bad, "nonfinite_reference": bad_ref, "numel": int(ref.size)}
    if bad or bad_ref:
        m.update(max_abs=None, mean_abs=None, p99_abs=None, psnr_db=None, ssim=None, snr_db=None, cosine=None)
        return m
    d = np.abs(cand - ref)
    mse = float(np.mean(d * d))
    m["max_abs"] = float(d.max()) if d.size else 0.0
    m["mean_abs"] = float(d.mean()) if d.size else 0.0
    m["p99_abs"] = float(np.percentile(d, 99)) if d.size else 0.0
    m["snr_db"] = _db(float(np.sum(ref * ref)), float(np.sum(d * d)))
    nr, nc = float(np.linalg.norm(ref)), float(np.linalg.norm(cand))
    m["cosine"] = float(np.dot(ref.ravel(), cand.ravel()) / (nr * nc)) if nr > 0 and nc > 0 else (
        1.0 if nr == nc else 0.0)
    if kind == "image":
        m["psnr_db"] = _db(1.0, mse)
        m["ssim"] = ssim(ref, cand) if ref.ndim == 4 and ref.shape[1] == 3 else None
    else:
        m["psnr_db"] = None
        m["ssim"] = None
    return m


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
