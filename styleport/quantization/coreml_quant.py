"""CoreML compression with ``coremltools.optimize.coreml`` on the fp32 ML program (iOS16 target).

| variant          | how                                                                        |
|------------------|----------------------------------------------------------------------------|
| fp16             | export with compute precision FLOAT16 (styleport.export.coreml_export)     |
| int8             | ``linear_quantize_weights`` linear_symmetric int8, per-channel (constexpr_affine_dequantize) |
| int8/palettize8  | ``palettize_weights`` 8-bit LUT, numpy k-means (constexpr_lut_to_dense);   |
|                  | depthwise weights stay float                                               |
| int8/palettize6  | same, 6 bits                                                                |
| int8/palettize4  | same, 4 bits                                                                |

Palettisation: "kmeans" (the coremltools default) needs scikit-learn, which styleport does not
depend on; "unique" only works when a weight already holds <= 2^nbits distinct values (never for
trained weights); "uniform" (an evenly spaced per-tensor LUT between min and max) collapsed
Google's MobileNetV2 predictor to ~6 dB (folded batch-norm weights have outliers that leave most
values in one or two LUT entries). So styleport runs its own 1-D k-means (Lloyd to convergence,
started from quantiles mixed with an even grid, numpy; :func:`kmeans_lut`) through ``mode="custom"``
+ ``lut_function``. Google's predictor stays far below the other networks even so: its weights are
per-channel int8 already (plain int8 re-quantizes them losslessly), and one LUT per tensor cannot hold
channels of very different ranges (iOS18's per-grouped-channel LUTs could; the target here is iOS16).
Every weight tensor is compressed (``weight_threshold=0``) so tiny models are compressed too.
Compute stays float (weights are decompressed at load); I/O float32.
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

PALETTES = (8, 6, 4)


def _load(path: Path):
    import coremltools as ct
    return ct.models.MLModel(str(path), skip_model_load=True)


def compress(src: Path, dst: Path, kind: str) -> dict:
    import coremltools.optimize.coreml as cto

    from styleport.export.wrappers import quiet_torch_export
    with quiet_torch_export(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = _load(src)
        if kind == "int8":
            cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
            out = cto.linear_quantize_weights(ml, cfg)
            method = "linear_quantize_weights linear_symmetric int8 per-channel, weight_threshold 0"
        elif kind.startswith("palettize"):
            nbits = int(kind[len("palettize"):])
            skip = depthwise_consts(ml)
            cfg = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(
                mode="custom", lut_function=lambda w: kmeans_lut(w, nbits), weight_threshold=0),
                op_name_configs={n: None for n in skip})
            out = cto.palettize_weights(ml, cfg)
            method = (f"palettize_weights {nbits}-bit per-tensor LUT, mode custom: numpy 1-D k-means "
                      f"(sklearn-free), weight_threshold 0; {len(skip)} depthwise weights kept float "
                      "(a per-tensor LUT cannot hold their per-channel ranges)")
        else:
            raise ValueError(f"unknown CoreML compression {kind!r}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        out.save(str(dst))
        from styleport.export.coreml_export import _stable_identifiers
        _stable_identifiers(dst)   # same weights, same bytes (the save names items with random UUIDs)
    return {"method": method, "io_dtype": "float32", "quantizer": "coremltools.optimize.coreml",
            "ops": op_kinds(dst), "prediction": "macOS only; PSNR via styleport.runtime.coreml.runner"}


def depthwise_consts(ml) -> list[str]:
    """Names of rank-4 weight consts with one input channel per group ([C,1,kh,kw], C > 1)."""
    out = []
    for f in ml.get_spec().mlProgram.functions.values():
        for blk in f.block_specializations.values():
            for op in blk.operations:
                if op.type != "const":
                    continue
                dims = [d.constant.size for d in op.outputs[0].type.tensorType.dimensions]
                if len(dims) == 4 and dims[1] == 1 and dims[0] > 1:
                    out.append(op.outputs[0].name)
    return out


def op_kinds(path: Path) -> dict:
    """constexpr_* ops (compressed weights) and the compute ops (always float on CoreML here)."""
    spec = _load(path).get_spec()
    ops = collections.Counter()
    for f in spec.mlProgram.functions.values():
        for blk in f.block_specializations.values():
            for op in blk.operations:
                ops[op.type] += 1
    const = {k: v for k, v in ops.items() if k.startswith("constexpr_")}
    compute = {k: v for k, v in ops.items() if not k.startswith("constexpr_") and k != "const"}
    return {"quantized": {}, "compressed_weights": const, "float": compute, "converters": {}}


def kmeans_lut(weight, nbits: int, max_iters: int = 500):
    """Per-tensor LUT of 2^nbits entries by 1-D k-means (Lloyd) on the weight values; returns
    (lut, indices) as coremltools' custom ``lut_function`` expects (indices in ``ravel`` order).

    Lloyd runs on the distinct values (weighted by their counts) until no value changes centroid.
    The start mixes quantiles of the values with an even grid from min to max: quantiles alone put
    no centroid near the few large weights of folded batch-norm layers, and a fixed handful of
    iterations left them there (Google's predictor: weight SNR 25.8 dB at 8 bits, below an even
    256-entry grid's 38.1 dB, 9.95 dB end to end; issue 20)."""
    import numpy as np
    w = np.asarray(weight, dtype=np.float64).ravel()
    k = 1 << nbits
    dtype = np.uint8 if k <= 256 else np.uint16
    vals, counts = np.unique(w, return_counts=True)
    if vals.size <= k:
        lut = np.concatenate([vals, np.full(k - vals.size, vals[-1] if vals.size else 0.0)])
        return lut.astype(np.float32), np.searchsorted(vals, w).astype(dtype)
    cum = np.cumsum(counts)
    quantiles = np.interp((np.arange(k) + 0.5) / k * cum[-1], cum, vals)
    grid = np.linspace(vals[0], vals[-1], k)
    c = np.unique(np.concatenate([quantiles[::2], grid[1::2]]))
    assign = None
    for _ in range(max_iters):
        new_assign = np.searchsorted((c[1:] + c[:-1]) / 2, vals)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        sums = np.bincount(assign, weights=vals * counts, minlength=c.size)
        n = np.bincount(assign, weights=counts, minlength=c.size)
        c = np.where(n > 0, sums / np.where(n > 0, n, 1), c)   # an emptied centroid stays put
    lut = np.concatenate([c, np.full(k - c.size, c[-1])])
    return lut.astype(np.float32), np.searchsorted((c[1:] + c[:-1]) / 2, w).astype(dtype)
