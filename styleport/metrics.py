"""The one definition of every comparison metric in styleport (numpy only; every layer imports it).

Parity, the quantization quality report, the demo report, the benchmarks and the tools all call
these functions, so a figure means the same thing wherever it is printed. Conventions:

  images        compared as produced: float NCHW (or HWC) values, nominal range [0, 1]; no clipping
                inside a metric (a caller that wants the displayed image clips both sides itself and
                says so)
  psnr_db       10*log10(peak^2 / MSE), peak = 1.0 (the [0,1] value range); MSE over every value
                in float64
  snr_db        10*log10(sum(ref^2) / sum((cand-ref)^2)), for tensors that are not images (the
                100-d style bottleneck)
  cap           PSNR and SNR are capped at +-200 dB: 200 dB means identical outputs
  ssim          skimage.metrics.structural_similarity, data_range 1.0, channel_axis on the colour
                axis, 7x7 window (shrunk to fit images under 7 px); mean over a batch
  cosine        cosine similarity of the flattened tensors
  NaN / Inf     psnr_db/snr_db/ssim/cosine return None for a non-finite input; compare() counts them
                and parity always fails them
"""

from __future__ import annotations

import math

import numpy as np

CAP_DB = 200.0
PSNR_PEAK = 1.0


def db(num: float, den: float) -> float:
    """10*log10(num/den), capped at +-CAP_DB (den 0: identical; num 0: nothing)."""
    if den <= 0:
        return CAP_DB
    if num <= 0:
        return -CAP_DB
    return float(max(-CAP_DB, min(CAP_DB, 10.0 * math.log10(num / den))))


def _pair(ref, cand) -> tuple[np.ndarray, np.ndarray] | None:
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"shapes differ: {list(ref.shape)} vs {list(cand.shape)}")
    if not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        return None
    return ref, cand


def mse(ref, cand) -> float | None:
    p = _pair(ref, cand)
    if p is None:
        return None
    d = p[1] - p[0]
    return float(np.mean(d * d)) if d.size else 0.0


def psnr_db(ref, cand, peak: float = PSNR_PEAK) -> float | None:
    """PSNR of ``cand`` against ``ref`` with peak 1.0 (see the module docstring)."""
    m = mse(ref, cand)
    return None if m is None else db(peak * peak, m)


def snr_db(ref, cand) -> float | None:
    p = _pair(ref, cand)
    if p is None:
        return None
    ref, cand = p
    d = cand - ref
    return db(float(np.sum(ref * ref)), float(np.sum(d * d)))


def cosine(ref, cand) -> float | None:
    p = _pair(ref, cand)
    if p is None:
        return None
    ref, cand = p
    nr, nc = float(np.linalg.norm(ref)), float(np.linalg.norm(cand))
    if nr == 0 or nc == 0:
        return 1.0 if nr == nc else 0.0
    return float(np.dot(ref.ravel(), cand.ravel()) / (nr * nc))


def ssim(ref, cand, channel_axis: int = 1) -> float | None:
    """SSIM of image batches [B,C,H,W] (channel_axis=1), or of single images [C,H,W] / [H,W,C]
    (channel_axis 0 or -1/2). None when an image side is under 3 px or a value is not finite."""
    from skimage.metrics import structural_similarity
    p = _pair(ref, cand)
    if p is None:
        return None
    ref, cand = p
    if ref.ndim == 3:
        ref, cand = ref[None], cand[None]
        channel_axis = 1 if channel_axis == 0 else 3
    if ref.ndim != 4:
        return None
    if channel_axis in (-1, 3):
        ref, cand = ref.transpose(0, 3, 1, 2), cand.transpose(0, 3, 1, 2)
    h, w = ref.shape[2], ref.shape[3]
    side = min(h, w)
    if side < 3:
        return None
    win = min(7, side if side % 2 else side - 1)
    vals = [structural_similarity(r.transpose(1, 2, 0), c.transpose(1, 2, 0), channel_axis=-1,
                                  data_range=PSNR_PEAK, win_size=win) for r, c in zip(ref, cand)]
    return float(np.mean(vals))


def compare(ref, cand, kind: str = "image") -> dict:
    """Every metric of ``cand`` against ``ref`` (same shape). ``kind``: "image" (canonical
    [B,3,H,W] in [0,1]: PSNR and SSIM too) or "vector" (PSNR/SSIM are None: a peak means nothing)."""
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
    m["max_abs"] = float(d.max()) if d.size else 0.0
    m["mean_abs"] = float(d.mean()) if d.size else 0.0
    m["p99_abs"] = float(np.percentile(d, 99)) if d.size else 0.0
    m["snr_db"] = snr_db(ref, cand)
    m["cosine"] = cosine(ref, cand)
    if kind == "image":
        m["psnr_db"] = psnr_db(ref, cand)
        m["ssim"] = ssim(ref, cand) if ref.ndim == 4 and ref.shape[1] == 3 else None
    else:
        m["psnr_db"] = None
        m["ssim"] = None
    return m
