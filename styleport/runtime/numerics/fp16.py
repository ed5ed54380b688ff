"""fp16 arithmetic as phones compute it, in numpy: the rounding rule and the kernels whose
accumulation order matters (shared by the ONNX, TFLite and CoreML emulators of runtime/numerics/emulate.py).

Two modes (see runtime/numerics/emulate.py for which devices each stands for):

``fp16``        every tensor is stored in fp16: each op computes in fp32 from fp16 inputs and its
                output is rounded to fp16 once (overflow -> inf). Sums inside an op (convolution,
                matrix product, mean) accumulate in fp32.
``fp16-acc16``  as ``fp16``, and the accumulators of convolutions (incl. depthwise), fully-connected
                layers and matrix products are fp16 too: starting from the bias, each multiply-add
                is a fused multiply-add rounded to fp16 (what XNNPACK's ARMv8.2 f16 GEMM kernels do
                with ``vfmaq_f16``, and what its AVX2 f16 kernels emulate by rounding the accumulator
                after every FMA). Reductions (mean) still accumulate in fp32: XNNPACK's
                ``f16-f32acc-rsum`` and the TFLite GPU ``Reduce`` kernel (``float4 reducer``) both do.
                Native normalisation ops (ONNX InstanceNormalization, MIL instance_norm), whose inner
                steps no file shows, are computed as their decomposition with each step rounded.

Rounding: numpy's float -> float16 conversion rounds to nearest even, and float32 / float64 hold
every fp16 product exactly, so ``round16(a op b)`` of fp16 values is the correctly rounded fp16
result (float32 has the 2p+2 bits that make double rounding harmless for + - * / sqrt). The FMA of
acc16 is computed in float64 (exact product + one rounding). Subnormals are kept (no flush to zero).
"""

from __future__ import annotations

import math

import numpy as np

FP16_MAX = 65504.0
MODES = ("fp16", "fp16-acc16")


def round16(x) -> np.ndarray:
    """Float values rounded to fp16 and held as float32 (inf where |x| >= 65520)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float16).astype(np.float32)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown fp16 emulation mode {mode!r} (choose from {', '.join(MODES)})")
    return mode


def margin_bits(max_abs: float | None) -> float | None:
    """log2(65504 / max|value|): how many doublings are left before fp16 overflows (negative:
    overflowed). None for an empty or all-zero tensor; -inf when the value holds inf/NaN."""
    if max_abs is None:
        return None
    if not math.isfinite(max_abs):
        return -math.inf
    if max_abs <= 0:
        return None
    return math.log2(FP16_MAX / max_abs)


# --- convolution ------------------------------------------------------------------------------

def _windows(x, kh, kw, sh, sw, dh, dw, ho, wo):
    """(i, j, view [N, C, ho, wo]) for every kernel tap of a padded NCHW input."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]


def conv2d(x, w, bias=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilations=(1, 1), groups=1,
           acc16: bool = False) -> np.ndarray:
    """2-D convolution, NCHW input, OIHW weight (I = C / groups), explicit (top, bottom), (left, right)
    zero pads. fp32 accumulation (one matmul per tap, BLAS) or, with ``acc16``, a sequential fp16
    fused multiply-add over taps (row-major) and input channels, starting from the bias.
    Returns float32 (not rounded: the caller rounds the op's output)."""
    x = np.asarray(x, np.float32)
    w = np.asarray(w, np.float32)
    x = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])])
    n, c, hp, wp = x.shape
    o, cg, kh, kw = w.shape
    if c != cg * groups or o % groups:
        raise ValueError(f"conv: weight {w.shape} does not fit {c} input channels in {groups} groups")
    og = o // groups
    (sh, sw), (dh, dw) = strides, dilations
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv: input {x.shape} is smaller than the kernel {w.shape}")
    b = np.zeros(o, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o)
    if acc16:
        acc = np.broadcast_to(b.astype(np.float64)[None, :, None, None], (n, o, ho, wo)).copy()
        acc = acc.astype(np.float16).astype(np.float64)
        for i, j, win in _windows(x, kh, kw, sh, sw, dh, dw, ho, wo):
            for g in range(groups):
                for ci in range(cg):
                    xv = win[:, g * cg + ci][:, None].astype(np.float64)          # [N,1,ho,wo]
                    wv = w[g * og:(g + 1) * og, ci, i, j].astype(np.float64)[None, :, None, None]
                    with np.errstate(over="ignore", invalid="ignore"):
                        acc[:, g * og:(g + 1) * og] = (acc[:, g * og:(g + 1) * og] + xv * wv).astype(
                            np.float16).astype(np.float64)
        return acc.astype(np.float32)
    out = np.zeros((n, o, ho, wo), np.float32)
    if cg == 1 and groups > 1:   # depthwise: multiply-accumulate per tap
        xr = np.repeat(x, og, axis=1) if og > 1 else x
        for i, j, win in _windows(xr, kh, kw, sh, sw, dh, dw, ho, wo):
            out += win * w[:, 0, i, j][None, :, None, None]
    else:
        for g in range(groups):
            xg, wg = x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
            acc = out[:, g * og:(g + 1) * og].reshape(n, og, ho * wo)
            for i, j, win in _windows(xg, kh, kw, sh, sw, dh, dw, ho, wo):
                acc += wg[:, :, i, j] @ win.reshape(n, cg, ho * wo)
            out[:, g * og:(g + 1) * og] = acc.reshape(n, og, ho, wo)
    return out + b[None, :, None, None]


def matmul(a, b, bias=None, acc16: bool = False) -> np.ndarray:
    """a @ b (+ bias) with fp32 accumulation, or sequential fp16 FMA over the inner dimension."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if not acc16:
        y = np.matmul(a, b)
        return y + np.asarray(bias, np.float32) if bias is not None else y
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    acc = np.zeros(shape, np.float64)
    if bias is not None:
        acc += np.asarray(bias, np.float64)
    acc = acc.astype(np.float16).astype(np.float64)
    for k in range(a.shape[-1]):
        with np.errstate(over="ignore", invalid="ignore"):
            acc = (acc + a[..., :, k:k + 1].astype(np.float64) * b[..., k:k + 1, :].astype(np.float64)
                   ).astype(np.float16).astype(np.float64)
    return acc.astype(np.float32)


def mean(x, axes, keepdims=True) -> np.ndarray:
    """Mean with fp32 accumulation (pairwise, numpy) in every mode."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.mean(np.asarray(x, np.float32), axis=tuple(axes), keepdims=keepdims, dtype=np.float32)


def instance_norm(x, eps, axes, gamma=None, beta=None, steps: bool = False, record=None) -> np.ndarray:
    """Instance norm over ``axes``. ``steps=False``: one op, fp32 inside (output not rounded here).
    ``steps=True``: the decomposition mean -> sub -> square -> mean -> add eps -> rsqrt -> mul
    (-> mul gamma -> add beta), each step rounded to fp16; ``record(name, value_before_rounding)``
    sees every step (for the headroom table)."""
    x = np.asarray(x, np.float32)
    if not steps:
        m = x.mean(axis=tuple(axes), keepdims=True, dtype=np.float32)
        d = x - m
        v = (d * d).mean(axis=tuple(axes), keepdims=True, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = d / np.sqrt(v + np.float32(eps))
            if gamma is not None:
                y = y * gamma
            if beta is not None:
                y = y + beta
        return y

    def r(name, v):
        if record is not None:
            record(name, v)
        return round16(v)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = r("mean", mean(x, axes))
        d = r("sub", x - m)
        d2 = r("square", d * d)
        v = r("variance", mean(d2, axes))
        ve = r("add_eps", v + round16(np.float32(eps)))
        inv = r("rsqrt", 1.0 / np.sqrt(ve))
        y = d * inv
        if gamma is not None:
            y = r("normalize", y) * round16(gamma)
        if beta is not None:
            y = r("scale", y) + round16(beta)
    return y
