"""ONNX Runtime precisions (float32 I/O kept in every variant).

| variant       | how                                                                          | calibration |
|---------------|------------------------------------------------------------------------------|-------------|
| fp16          | onnxconverter-common float16, keep_io_types                                  | no          |
| int8/dynamic  | ``quantize_dynamic``: per-channel uint8 weights (ConvInteger / MatMulInteger), activations | no          |
|               | quantized per run by DynamicQuantizeLinear                                    |             |
| int8/qlinear  | runs on ORT's integer kernels: exact graph rewrites (onnx_rewrite: space-to-  | yes         |
|               | depth 9x9 convs, sub-pixel upsample convs, CIN affine folded into the norm),  |             |
|               | per-channel range equalization of the convs in front of instance norm, then   |             |
|               | ``quantize_static`` QDQ on Conv/Pad/Relu/Clip/DepthToSpace/SpaceToDepth (s8   |             |
|               | per-channel weights, u8 activations, conv outputs quantized so every conv     |             |
|               | fuses into QLinearConv), then Pad/DepthToSpace/SpaceToDepth moved onto the    |             |
|               | 8-bit tensors, space-to-depth kernels stored at their original size (rebuilt  |             |
|               | by ORT's constant folding), the conditional-norm Gemm weight-only int8;       |             |
|               | instance norm, its affine, residual adds and Sigmoid stay float               |             |
| int8/static   | (the predictor's calibrated plain int8; no longer a transformer variant)      | yes         |
|               | ``quantize_static`` QDQ, per-channel int8 weights, uint8 activations on the   |             |
|               | inputs of Conv/Gemm/Pad/Resize/Relu; **instance norm kept float**: the        |             |
|               | InstanceNormalization nodes, the conditional affine Mul/Add, Sigmoid and the   |             |
|               | *outputs* of Conv/Gemm (the norm's input) get no QDQ                         |             |
| int8/a16w8    | ``quantize_static`` QDQ on every op incl. instance norm, 16-bit activations   | yes         |
|               | (uint16, com.microsoft Q/DQ), int8 per-channel weights                        |             |

Which is the plain ``int8`` (quantization/__init__.py): ``dynamic`` without a calibration set;
with one, ``qlinear`` for the transformer and ``static`` for the predictor.

Why ``static`` leaves conv outputs float, and what ``qlinear`` does instead: one per-tensor
activation scale at a norm's input drowns the low-range channels that the norm then scales up
(shared/DESIGN.md). But a conv whose output is float cannot become QLinearConv: ORT folds the
weight DequantizeLinear and runs a float conv behind a Q/DQ pair, slower than fp32 (johnson 384²:
351 vs 297 ms). ``qlinear`` quantizes the conv output and makes that scale fit: instance norm
ignores a per-channel scale and shift of its input, so each conv in front of a norm is rescaled to
span [-1, 1] per channel on the calibration set (onnx_rewrite.equalize_norm_inputs).
Measured on Google's trained weights (benchmarks/quantization.md, 384², 4 held-out pairs):
plain W8A8 QDQ on every op 30.4 dB mean, 26.5 dB worst image; instance norm float 36-38 dB;
16-bit activations 46 dB; ``qlinear`` 34.2 dB (worst 32.0) at 0.28-0.44x the fp32 latency on ORT
(README: magenta-mobile and johnson at 384², 1 and 2 threads).

Graphs are compacted after quantization: value_info dropped and intermediate tensor/node names
shortened (the quantizer's ``*_QuantizeLinear_Output`` names are a large part of a 200 KB file).
"""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from styleport import metrics

FLOAT_OPS = ("InstanceNormalization", "Mul", "Add", "Sigmoid", "Slice", "Unsqueeze", "Reshape", "Squeeze",
             "ReduceMean", "Sub", "Div", "Sqrt", "Pow")  # never quantized in ``static``
OUTPUT_FLOAT = ("Conv", "Gemm", "MatMul")  # their outputs feed the norms: no QDQ there
QLINEAR_OPS = ("Conv", "Pad", "Relu", "Clip", "DepthToSpace", "SpaceToDepth")  # quantized in ``qlinear``


def to_fp16(src: Path, dst: Path) -> dict:
    from onnxconverter_common import float16

    import warnings
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "number truncated to 1e-07" for every tiny weight
        half = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.checker.check_model(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(half, str(dst))
    return {"method": "onnxconverter-common float16, keep_io_types", "io_dtype": "float32",
            "ops": op_kinds(dst)}


class FeedReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of {input name: array}."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)


def _reader(feeds):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(FeedReader, CalibrationDataReader):
        pass
    return Reader(feeds)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def preprocess(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process
    quant_pre_process(str(src), str(dst))
    return dst


def quantize(src: Path, dst: Path, kind: str, calib_feeds: list | None = None, method: str = "minmax",
             keep_float_nodes: list | None = None) -> dict:
    """Write ``dst`` from the fp32 ``src``; ``kind`` in dynamic, qlinear, static, a16w8, w8a8 (every op,
    the plain QDQ baseline). ``keep_float_nodes``: node names excluded from quantization (sensitivity)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from styleport.export.wrappers import quiet_torch_export
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra_details = {}
    with tempfile.TemporaryDirectory() as td, quiet_torch_export():
        if kind == "qlinear":
            if not calib_feeds:
                raise ValueError("qlinear ONNX quantization needs calibration feeds")
            from styleport.quantization import onnx_rewrite as R
            fp, notes = R.rewrite(onnx.load(str(src)))
            fp, eq = R.equalize_norm_inputs(fp, calib_feeds)
            onnx.save_model(fp, str(Path(td) / "rewritten.onnx"))
            extra_details["rewrites"] = _count_notes(notes + eq)
            src_q = Path(td) / "rewritten.onnx"
        else:
            src_q = src
        pre = preprocess(src_q, Path(td) / "pre.onnx")
        raw = Path(td) / "q.onnx"
        if kind == "dynamic":
            dw = depthwise_nodes(onnx.load(str(pre)))
            quantize_dynamic(str(pre), str(raw), weight_type=QuantType.QUInt8, per_channel=True,
                             nodes_to_exclude=dw)
            what = "quantize_dynamic, per-channel uint8 weights, dynamic uint8 activations"
            if dw:
                what += f"; {len(dw)} depthwise Conv kept float (ConvInteger collapsed them: 8 dB)"
        else:
            if not calib_feeds:
                raise ValueError("static ONNX quantization needs calibration feeds")
            ops = sorted({n.op_type for n in onnx.load(str(pre)).graph.node})
            kw = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                      weight_type=QuantType.QInt8, calibrate_method=_method(method), extra_options={},
                      nodes_to_exclude=list(keep_float_nodes or []))
            if kind == "qlinear":
                kw["op_types_to_quantize"] = [o for o in ops if o in QLINEAR_OPS]
                what = ("qlinear: exact rewrites for integer kernels + norm-input equalization, quantize_static "
                        "QDQ on Conv/Pad/Relu/Clip/DepthToSpace/SpaceToDepth (every conv -> QLinearConv), "
                        "per-channel int8 weights, uint8 activations; instance norm, affine, adds, Sigmoid float")
            elif kind == "static":
                kw["op_types_to_quantize"] = [o for o in ops if o not in FLOAT_OPS]
                kw["extra_options"]["OpTypesToExcludeOutputQuantization"] = list(OUTPUT_FLOAT)
                what = ("quantize_static QDQ, per-channel int8 weights, uint8 activations; instance norm, "
                        "its input (Conv/Gemm outputs) and the affine Mul/Add kept float")
            elif kind == "a16w8":
                kw["activation_type"] = QuantType.QUInt16
                kw["extra_options"]["UseQDQContribOps"] = True
                what = "quantize_static QDQ on every op, uint16 activations (com.microsoft Q/DQ), int8 weights"
            elif kind == "w8a8":
                what = "quantize_static QDQ on every op incl. instance norm, uint8 activations"
            else:
                raise ValueError(f"unknown ONNX quantization {kind!r}")
            quantize_static(str(pre), str(raw), _reader(calib_feeds), **kw)
            what += f"; calibration {method}, {len(calib_feeds)} samples"
        model = onnx.load(str(raw))
        if kind == "qlinear":
            from styleport.quantization.onnx_rewrite import compact_s2d_weights, integer_movers
            model, moved = integer_movers(model)
            model, packed = compact_s2d_weights(model)
            model, wo = weight_only_int8(model)
            extra_details["rewrites"].update(_count_notes(moved + packed + wo))
        model = compact(model)
        onnx.save_model(model, str(dst))
    out = {"method": what, "io_dtype": "float32", "quantizer": "onnxruntime.quantization", "ops": op_kinds(dst)}
    if kind == "qlinear":
        out.update(extra_details, ort_kernels=ort_kernels(dst))
    return out


def weight_only_int8(model: onnx.ModelProto, op_types=("Gemm",)) -> tuple[onnx.ModelProto, list[str]]:
    """Float weights of ``op_types`` (the conditional-norm head: a 100 -> 2*sum(C) Gemm, 40% of the
    magenta transformer's bytes) as per-output-channel symmetric int8 + DequantizeLinear. Weights
    only: the bottleneck input and the gamma/beta it makes stay float (a per-tensor scale there
    would shift every norm of the network)."""
    from onnx import helper, numpy_helper
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users = collections.Counter(i for n in g.node for i in n.input)
    notes, new_nodes = [], []
    for n in g.node:
        if n.op_type not in op_types or len(n.input) < 2 or n.input[1] not in inits or users[n.input[1]] != 1:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if w.dtype != np.float32 or w.ndim != 2:
            continue
        trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
        axis = 0 if trans_b else 1  # the output-feature axis of B
        amax = np.abs(w).max(axis=1 - axis)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        shape = [-1, 1] if axis == 0 else [1, -1]
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        base = n.input[1]
        g.initializer.remove(inits[base])
        g.initializer.extend([numpy_helper.from_array(q, base + "_w8"), numpy_helper.from_array(scale, base + "_w8_scale"),
                              numpy_helper.from_array(np.zeros(scale.shape, np.int8), base + "_w8_zp")])
        new_nodes.append(helper.make_node("DequantizeLinear", [base + "_w8", base + "_w8_scale", base + "_w8_zp"],
                                          [base], axis=axis, name=base + "_w8_dq"))
        notes.append(f"weight-only int8: {n.name} {list(w.shape)}")
    if new_nodes:
        nodes = list(g.node)
        del g.node[:]
        g.node.extend(new_nodes + nodes)
    return model, notes


def _count_notes(notes: list[str]) -> dict:
    """{"s2d": 2, "subpixel": 2, ...} from the rewrite notes ("s2d: ...")."""
    return dict(collections.Counter(n.split(":", 1)[0] for n in notes))


def ort_kernels(path: Path) -> dict:
    """Op counts of the graph ONNX Runtime actually runs (its optimized graph, CPU provider): where
    QDQ groups became QLinearConv and which ops stayed float."""
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as td:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        so.optimized_model_filepath = str(Path(td) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        g = onnx.load(so.optimized_model_filepath).graph
    return dict(collections.Counter(n.op_type for n in g.node))


def depthwise_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop value_info and doc strings; rename intermediate tensors and initializers to short names."""
    g = model.graph
    del g.value_info[:]
    keep = {v.name for v in list(g.input) + list(g.output)}
    names: dict[str, str] = {}

    def short(n: str) -> str:
        if not n or n in keep:
            return n
        if n not in names:
            names[n] = f"t{len(names)}"
        return names[n]

    for init in g.initializer:
        init.name = short(init.name)
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.doc_string = ""
        for j, n in enumerate(node.input):
            node.input[j] = short(n)
        for j, n in enumerate(node.output):
            node.output[j] = short(n)
    model.doc_string = ""
    return model


NO_INTEGER_KERNEL = ("InstanceNormalization", "LayerNormalization", "BatchNormalization")


def _from_dq(tensors: list, producer: dict) -> bool:
    return bool(tensors) and all(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                                 for i in tensors)


def _only_into_q(users: list) -> bool:
    return bool(users) and all(u.op_type == "QuantizeLinear" for u in users)


def op_kinds(path: Path) -> dict:
    """Op kinds counted from the graph: quantized (QLinear*, ConvInteger, MatMulInteger, ops fed by a
    DequantizeLinear: "(QDQ)", ops on 8-bit tensors: "(int8)"), float, converters. Norms count as
    float even between Q/DQ: ORT has no integer kernel for them (``ort_kernels`` tells what ORT runs)."""
    m = onnx.load(str(path))
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    integer = set()  # tensors that hold 8-bit values (QuantizeLinear outputs and ops moving them)
    quant, flt, conv = collections.Counter(), collections.Counter(), collections.Counter()
    for n in g.node:
        t = n.op_type
        if t in ("QuantizeLinear", "DynamicQuantizeLinear"):
            integer.update(n.output[:1])
        if t in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast"):
            conv[t] += 1
        elif t.startswith("QLinear") or t in ("ConvInteger", "MatMulInteger", "MatMulIntegerToFloat"):
            quant[t] += 1
        elif n.input and n.input[0] in integer:
            quant[t + " (int8)"] += 1
            integer.update(n.output)
        elif t not in NO_INTEGER_KERNEL and _from_dq(n.input[:1], producer) and (
                t in ("Conv", "Gemm", "MatMul")
                or (_from_dq([i for i in n.input if i in producer], producer)
                    and _only_into_q(consumers.get(n.output[0], [])))):
            quant[t + " (QDQ)"] += 1
        else:
            flt[t] += 1
    weights = collections.Counter()
    for init in g.initializer:
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if n > 1:
            weights[onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name] += n
    return {"quantized": dict(quant), "float": dict(flt), "converters": dict(conv),
            "weight_values_by_dtype": dict(weights)}


def session(path: Path, threads: int = 2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def conv_nodes(path: Path) -> list[str]:
    """Names of the quantizable compute nodes (Conv, Gemm, MatMul) in graph order (after preprocess)."""
    with tempfile.TemporaryDirectory() as td:
        from styleport.export.wrappers import quiet_torch_export
        with quiet_torch_export():
            pre = preprocess(Path(path), Path(td) / "pre.onnx")
        g = onnx.load(str(pre)).graph
    return [n.name for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul")]


def _psnr_of(path: Path, eval_feeds: list[dict], refs: list[np.ndarray]) -> tuple[float, float]:
    import time
    s = session(path)
    ps, ts = [], []
    s.run(None, eval_feeds[0])
    for f, r in zip(eval_feeds, refs):
        t0 = time.perf_counter()
        o = s.run(None, f)[0]
        ts.append(time.perf_counter() - t0)
        ps.append(metrics.psnr_db(r, o))
    return float(np.mean(ps)), float(np.median(ts) * 1000)


def search_float_layers(src: Path, dst: Path, calib_feeds: list[dict], eval_feeds: list[dict],
                        refs: list[np.ndarray], target_psnr: float, kind: str = "w8a8",
                        method: str = "minmax", max_float: int | None = None) -> dict:
    """``--target-psnr``: the smallest set of Conv/Gemm layers to keep float on the static QDQ path.

    1. quantize everything (``kind``: ``w8a8`` = every op incl. instance norm, the plain baseline;
       ``static`` = norm already float) and measure PSNR vs ``refs`` (fp32 outputs, NCHW) on
       ``eval_feeds`` (held-out, not the calibration feeds);
    2. per-layer sensitivity: re-quantize with each layer alone kept float, gain = PSNR - base;
    3. greedily keep layers float in order of gain until the target is reached (or ``max_float``).
    Writes the final model to ``dst``; returns the layers, the per-layer gains and the curve
    (layers kept float -> bytes, latency_ms, psnr_db). Cost: (2 + layers + steps) quantizations."""
    import shutil
    src, dst = Path(src), Path(dst)
    layers = conv_nodes(src)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)

        def trial(float_nodes, name):
            p = td / f"{name}.onnx"
            quantize(src, p, kind, calib_feeds, method=method, keep_float_nodes=float_nodes)
            psnr, ms = _psnr_of(p, eval_feeds, refs)
            return p, psnr, ms

        p, base, ms = trial([], "base")
        curve = [{"float_layers": 0, "bytes": p.stat().st_size, "latency_ms": round(ms, 1), "psnr_db": round(base, 2)}]
        best = p
        gains = {}
        if base < target_psnr:
            for i, n in enumerate(layers):
                _, ps, _ = trial([n], f"one{i}")
                gains[n] = round(ps - base, 2)
            order = sorted(layers, key=lambda n: -gains[n])
            chosen: list[str] = []
            for n in order[: max_float or len(order)]:
                chosen.append(n)
                p, ps, ms = trial(chosen, f"step{len(chosen)}")
                curve.append({"float_layers": len(chosen), "layer": n, "bytes": p.stat().st_size,
                              "latency_ms": round(ms, 1), "psnr_db": round(ps, 2)})
                best = p
                if ps >= target_psnr:
                    break
        else:
            chosen = []
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, dst)
    fp32_ms = _psnr_of(src, eval_feeds, refs)[1]
    return {"target_psnr_db": target_psnr, "reached": curve[-1]["psnr_db"] >= target_psnr, "kind": kind,
            "float_layers": chosen, "layer_gain_db": gains, "curve": curve,
            "fp32": {"bytes": src.stat().st_size, "latency_ms": round(fp32_ms, 1)},
            "ops": op_kinds(dst)}


_ = os  # noqa: keep import for type checkers
