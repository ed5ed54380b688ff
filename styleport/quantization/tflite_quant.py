"""TFLite precisions with ai-edge-quantizer recipes applied to the fp32 ``.tflite`` (float I/O always).

| variant       | recipe                                                       | calibration |
|---------------|--------------------------------------------------------------|-------------|
| fp16          | weight-only FLOAT_CASTING to 16 bits (DEQUANTIZE to f32)     | no          |
| int8          | dynamic-range: int8 per-channel weights, activations float,  | no          |
|               | quantized on the fly by the CONV/FC kernels (``dynamic_wi8``) |             |
| int8/full     | static int8 weights + int8 activations on every supported op | yes         |
|               | except the model's INPUT/OUTPUT (float I/O); the predictor's  |             |
|               | plain ``int8`` when calibrated (full-integer, as Google's)    |             |
| int8/conv8    | static int8 on CONV_2D / DEPTHWISE / FULLY_CONNECTED only:    | yes         |
|               | the mean/var instance norm (MEAN, SUB, MUL, RSQRT) stays float |             |
| int8/int16x8  | static 16-bit activations, 8-bit weights on CONV/FC (norm     | yes         |
|               | float: an int16 variance feeding RSQRT hits 0 and fails)       |             |

Why dynamic-range is the transformer's plain ``int8``: it keeps ~40 dB at about fp32 speed,
while full int8 (quantized DIV/RSQRT/MEAN of the instance norm) leaves XNNPACK and runs several
times slower (benchmarks/quantization.md). The predictor (MobileNetV2: CONV, DEPTHWISE, ADD, MEAN)
has no such op: full-integer runs every op in XNNPACK's int8 kernels, so with a calibration set it
is the predictor's plain ``int8``. Static ranges are min/max over the whole calibration set
(:func:`calibrate_minmax`), whatever ``--calib-method`` says (ai-edge-quantizer has no histogram
calibration). Tensor names (long torch module paths, ~140 KB of a
0.85 MB transfer file) are shortened to ``t<index>`` in every variant, signature names kept.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

STATIC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MEAN", "RSQRT",
              "CONCATENATION", "SLICE", "STRIDED_SLICE", "RESHAPE", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC",
              "PAD", "AVERAGE_POOL_2D", "SQUARED_DIFFERENCE", "DIV", "SQRT", "MAXIMUM")
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SIGNATURE = "serving_default"


def _quiet():
    from styleport.export.wrappers import quiet_torch_export
    return quiet_torch_export()


def _present_ops(path: Path) -> set[str]:
    return set(op_histogram(path))


def quantize(src: Path, dst: Path, kind: str, calib_feeds: list | None = None) -> dict:
    """Write ``dst`` from the fp32 ``src``; ``kind`` in fp16, dynamic, full, conv8, int16x8."""
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    Op = qtyping.TFLOperationName
    src, dst = Path(src), Path(dst)
    present = _present_ops(src)
    with _quiet():
        q = quantizer.Quantizer(str(src))
        if kind == "fp16":
            q.add_weight_only_config(".*", Op.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
            method = "ai-edge-quantizer weight-only float16 (FLOAT_CASTING), float compute"
        elif kind == "dynamic":
            q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            method = "ai-edge-quantizer dynamic_wi8_afp32 (int8 per-channel weights, dynamic-range activations)"
        else:
            ops = {"full": STATIC_OPS, "int16x8": CONV_OPS, "conv8": CONV_OPS}[kind]
            abits = 16 if kind == "int16x8" else 8
            for op in ops:
                if op in present and hasattr(Op, op):
                    q.add_static_config(".*", getattr(Op, op), abits, 8)
            method = (f"ai-edge-quantizer static int{abits} activations / int8 per-channel weights on "
                      f"{', '.join(o for o in ops if o in present)}; INPUT/OUTPUT float")
        res = None
        if q.need_calibration:
            if not calib_feeds:
                raise ValueError("static TFLite quantization needs calibration feeds")
            res = calibrate_minmax(q, calib_feeds)
            method += "; activation ranges: min/max over the whole calibration set"
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = bytes(q.quantize(res).quantized_model)
    dst.write_bytes(compact(data))
    return {"method": method, "io_dtype": "float32", "quantizer": "ai-edge-quantizer",
            "ops": op_dtypes(dst)}


def calibrate_minmax(q, feeds: list) -> dict:
    """Activation ranges as the min and max over every calibration sample.

    ``Quantizer.calibrate`` folds samples into an exponential moving average (weight 0.95 on the
    past), so with a small calibration set the first image sets most ranges and a held-out image
    clips. Each sample is calibrated on its own and the ranges merged here (public API only).
    Measured on Google's MobileNetV2 predictor, 4 paintings, leave-one-out: bottleneck -> image
    PSNR min 34.4 dB with the moving average, 37.9 dB with min/max (README, Quantization).
    """
    merged: dict = {}
    for f in feeds:
        one = q.calibrate({SIGNATURE: [f]}, num_threads=2)
        for name, qsv in one.items():
            if name not in merged or not merged[name]:
                merged[name] = dict(qsv)
                continue
            m = merged[name]
            if "min" in qsv and "min" in m:
                m["min"] = np.minimum(m["min"], qsv["min"])
            if "max" in qsv and "max" in m:
                m["max"] = np.maximum(m["max"], qsv["max"])
    return merged


def compact(data: bytes) -> bytes:
    """Shorten tensor names (torch module paths) to ``t<index>``; signatures keep their own names."""
    from ai_edge_litert.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for sg in model.subgraphs:
        for i, t in enumerate(sg.tensors):
            t.name = f"t{i}".encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _interp(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    with _quiet():
        it = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    return it


def op_histogram(path: Path) -> dict:
    it = _interp(path)
    return dict(collections.Counter(o["op_name"] for o in it._get_ops_details()))


def op_dtypes(path: Path) -> dict:
    """Op kinds that ran quantized and that stayed float, counted from the tensors' dtypes (an op is
    quantized when its main input or output is an integer tensor; DEQUANTIZE/QUANTIZE are converters)."""
    it = _interp(path)
    td = {d["index"]: d for d in it.get_tensor_details()}
    quant, flt, conv = collections.Counter(), collections.Counter(), collections.Counter()
    for o in it._get_ops_details():
        name = o["op_name"]
        if name in ("QUANTIZE", "DEQUANTIZE"):
            conv[name] += 1
            continue
        ins = [td[i] for i in o["inputs"] if i >= 0 and i in td]
        outs = [td[i] for i in o["outputs"] if i >= 0 and i in td]
        int_act = any(np.dtype(t["dtype"]).kind in "iu" for t in ins[:1] + outs[:1])
        int_w = name in CONV_OPS and any(np.dtype(t["dtype"]) in (np.int8, np.int16) for t in ins[1:2])
        if int_act:
            quant[f"{name}"] += 1
        elif int_w:
            quant[f"{name} (int8 weights, dynamic-range)"] += 1
        else:
            flt[name] += 1
    weights = constant_dtypes(path)
    return {"quantized": dict(quant), "float": dict(flt), "converters": dict(conv),
            "weight_values_by_dtype": dict(weights)}


_TFL_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 17: "int4"}


def constant_dtypes(path: Path) -> dict:
    """Values held in constant tensors (weights, biases, tables) by dtype, from the flatbuffer."""
    from ai_edge_litert.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model(str(path))
    out = collections.Counter()
    for sg in model.subgraphs:
        for t in sg.tensors:
            b = model.buffers[t.buffer]
            if b.data is not None and len(b.data) and t.shape is not None and len(t.shape) >= 1:
                n = int(np.prod(t.shape)) if len(t.shape) else 1
                if n > 1:
                    out[_TFL_TYPES.get(t.type, str(t.type))] += n
    return dict(out)
