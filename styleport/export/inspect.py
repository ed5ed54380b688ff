"""``styleport inspect``: what is inside a model file, ours or anyone's.

.onnx (onnx), .tflite (the LiteRT interpreter, delegates off), .mlpackage/.mlmodel (coremltools
spec, not compiled), .pte (ExecuTorch program, read with styleport.pte: methods, delegated vs
non-delegated ops, XNNPACK node kinds). Reports I/O, op histogram, parameter count, weight dtypes, file size and the
number of Transpose ops. Parameters are the elements of constant weight tensors: ONNX initializers
and Constant nodes with more than one element; TFLite constant (buffer-backed) tensors of float or
quantized integer type, except shape/axis operands; CoreML ``const`` ops with more than one element
(ML programs) or the values of every layer's weight fields (neuralNetwork models). CoreML image
features are described with their color space, size and (inputs) preprocessing scale and biases.
ExecuTorch constant tensors (XNNPACK delegate constants and portable kernels' constants).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from styleport.errors import BadInput
from styleport.export.wrappers import quiet_torch_export
from styleport.manifest import size_path

FORMAT_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".mlpackage": "coreml", ".mlmodel": "coreml",
                   ".pte": "executorch"}


def detect_format(path: Path) -> str:
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"unknown model file type {path.suffix or '(none)'} for {path} "
                       "(expected .onnx, .tflite, .mlpackage, .mlmodel or .pte)")
    return fmt


def inspect_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"model file not found: {path}")
    fmt = detect_format(path)
    if fmt != "coreml" and path.is_dir():
        raise BadInput(f"expected a file, got a folder: {path}")
    if size_path(path) == 0:
        raise BadInput(f"model file is empty: {path}")
    info = {"onnx": _onnx, "tflite": _tflite, "coreml": _coreml, "executorch": _executorch}[fmt](path)
    info.update(path=str(path), format=fmt, file_bytes=size_path(path))
    info["metadata"] = _metadata(path, fmt)
    if "transpose_count" not in info:
        info["transpose_count"] = sum(n for op, n in info["op_histogram"].items() if op.lower() == "transpose")
    info["op_count"] = sum(info["op_histogram"].values())
    return info


def _onnx(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - a corrupt protobuf raises several types
        raise BadInput(f"not a valid ONNX model: {path} ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    g = model.graph
    inits = {i.name for i in g.initializer}

    def vi(v):
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
                if t.elem_type else None}

    hist = collections.Counter(n.op_type for n in g.node)
    for f in model.functions:
        hist.update()
    params, dtypes = 0, collections.Counter()
    for init in g.initializer:
        n = int(numpy_helper.to_array(init).size) if not init.external_data else _numel(init.dims)
        params += n
        dtypes[onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name] += n
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.dims and _numel(a.t.dims) > 1:
                    n = _numel(a.t.dims)
                    params += n
                    dtypes[onnx.helper.tensor_dtype_to_np_dtype(a.t.data_type).name] += n
    return {"inputs": [vi(v) for v in g.input if v.name not in inits], "outputs": [vi(v) for v in g.output],
            "op_histogram": dict(hist.most_common()), "params": params, "weight_dtypes": dict(dtypes),
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
            "producer": f"{model.producer_name} {model.producer_version}".strip()}


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


# Operand positions that hold shapes/axes/paddings rather than weights.
_NON_WEIGHT_OPERANDS = {"RESHAPE": {1}, "PAD": {1}, "PADV2": {1, 2}, "MIRROR_PAD": {1}, "TRANSPOSE": {1},
                        "MEAN": {1}, "SUM": {1}, "REDUCE_MAX": {1}, "RESIZE_NEAREST_NEIGHBOR": {1},
                        "RESIZE_BILINEAR": {1}, "SLICE": {1, 2}, "STRIDED_SLICE": {1, 2, 3},
                        "REVERSE_V2": {1}, "CONCATENATION": set(), "GATHER": {1}, "SQUEEZE": set(),
                        "EXPAND_DIMS": {1}, "BROADCAST_TO": {1}, "TILE": {1}}


def _tflite(path: Path) -> dict:
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BadInput(f"not a TFLite flatbuffer: {path} (missing the TFL3 identifier)")
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise BadInput("reading .tflite needs ai-edge-litert (pip install ai-edge-litert)") from None
    try:
        with quiet_torch_export():
            it = Interpreter(model_content=data,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"not a valid TFLite model: {path} ({(str(e).splitlines() or [type(e).__name__])[0][:160]})") from None
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = it._get_ops_details()
    produced = {o for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in it.get_input_details()}
    hist = collections.Counter(op["op_name"] for op in ops)
    weights = {}
    for op in ops:
        skip = _NON_WEIGHT_OPERANDS.get(op["op_name"], set())
        for pos, t in enumerate(op["inputs"]):
            if t < 0 or t in produced or t in graph_inputs or pos in skip:
                continue
            d = tensors[t]
            if d["dtype"].__name__ in ("int64",) and op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
                continue
            weights[t] = d
    params, dtypes = 0, collections.Counter()
    for d in weights.values():
        n = _numel(d["shape"]) if len(d["shape"]) else 1
        if n <= 1:
            continue
        params += n
        dtypes[d["dtype"].__name__] += n

    def io(d):
        return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": d["dtype"].__name__}

    sigs = it.get_signature_list()
    return {"inputs": [io(d) for d in it.get_input_details()], "outputs": [io(d) for d in it.get_output_details()],
            "op_histogram": dict(hist.most_common()), "params": params, "weight_dtypes": dict(dtypes),
            "signatures": {k: v for k, v in sigs.items()}}


def _metadata(path: Path, fmt: str) -> dict | None:
    """The file's own metadata (CoreML description, TFLite TFLITE_METADATA), or None."""
    try:
        if fmt == "coreml":
            from styleport.export.coreml_export import read_metadata
            with quiet_torch_export():
                md = read_metadata(path)
            return md if any(md.get(k) for k in ("author", "license", "description", "version")) else None
        if fmt == "tflite":
            from styleport.export.tflite_metadata import read
            return read(path)
    except Exception:  # noqa: BLE001 - metadata is informative; a file without readable metadata is still a model
        return None
    return None


def _coreml(path: Path) -> dict:
    try:
        with quiet_torch_export():
            import coremltools as ct
    except ImportError:
        raise BadInput("reading CoreML needs coremltools (pip install coremltools)") from None
    try:
        with quiet_torch_export():
            if Path(path).is_dir():   # read-only: MLModel(path) rewrites the package's Manifest.json
                from styleport.runtime.coreml.package import read_package
                spec = read_package(path)[0]
            else:
                spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"not a valid CoreML model: {path} ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None

    kind = spec.WhichOneof("Type")
    preprocessing = {p.featureName: p for p in getattr(getattr(spec, kind, None), "preprocessing", [])}
    program_pre = _program_preprocessing(spec) if kind == "mlProgram" else {}

    def io(f):
        if f.type.WhichOneof("Type") == "imageType":
            got = _coreml_image(f, preprocessing.get(f.name))
            pre = dict(program_pre.get(f.name) or {})
            if pre:
                bias = pre.get("bias")
                if isinstance(bias, list) and len(bias) == 3:  # named as the neuralNetwork scaler's are
                    order = ("blue", "green", "red") if got["image"]["color_space"] == "BGR" else ("red", "green", "blue")
                    pre["bias"] = dict(zip(order, bias))
                elif isinstance(bias, list) and len(bias) == 1:
                    pre["bias"] = {"gray": bias[0]}
                got["image"]["preprocessing"] = pre
            return got
        t = f.type.multiArrayType
        dtype = {65568: "float32", 65552: "float16", 131104: "int32"}.get(t.dataType, str(t.dataType))
        shape = list(t.shape)
        if t.HasField("shapeRange") and t.shapeRange.sizeRanges:
            shape = [r.lowerBound if r.lowerBound == r.upperBound else f"{r.lowerBound}..{r.upperBound}"
                     for r in t.shapeRange.sizeRanges]
        return {"name": f.name, "shape": shape, "dtype": dtype}

    hist, params, dtypes = collections.Counter(), 0, collections.Counter()
    if kind == "mlProgram":
        from coremltools.proto import MIL_pb2
        dt = {v: k.lower() for k, v in MIL_pb2.DataType.items()}
        for fn in spec.mlProgram.functions.values():
            for blk in fn.block_specializations.values():
                for op in blk.operations:
                    hist[op.type] += 1
                    if op.type == "const" or op.type.startswith("constexpr"):
                        for out in op.outputs:
                            tt = out.type.tensorType
                            dims = [d.constant.size for d in tt.dimensions]
                            n = _numel(dims) if dims else 1
                            if n > 1:
                                params += n
                                dtypes[dt.get(tt.dataType, str(tt.dataType))] += n
    else:   # neuralNetwork (and its classifier / regressor forms): layers with WeightParams fields
        for layer in getattr(getattr(spec, kind), "layers", []):
            which = layer.WhichOneof("layer")
            hist[which] += 1
            if which:
                for dtype, n in _nn_weights(getattr(layer, which)):
                    params += n
                    dtypes[dtype] += n
    return {"inputs": [io(f) for f in spec.description.input], "outputs": [io(f) for f in spec.description.output],
            "op_histogram": dict(hist.most_common()), "params": params, "weight_dtypes": dict(dtypes),
            "model_type": kind, "spec_version": spec.specificationVersion}


_XNN_DTYPES = {"fp32": "float32", "fp16": "float16", "qint8": "int8", "qcint8": "int8", "qdint8": "int8",
               "quint8": "uint8", "qint32": "int32", "qcint32": "int32", "qcint4": "int4"}


def _executorch(path: Path) -> dict:
    """Methods, I/O (names from the ``input_names`` / ``output_names`` constant methods when present),
    ops per backend: ``xnnpack:KIND`` nodes inside XNNPACK delegates and ``portable:OP`` kernel calls
    outside them, and the delegated vs non-delegated count."""
    from styleport import pte
    with quiet_torch_export():
        doc = pte.read(path)
    methods = doc["methods"]
    if "forward" not in methods:
        raise BadInput(f"{path}: the program has no 'forward' method (methods: {', '.join(methods) or 'none'})")
    fwd = methods["forward"]

    def names(key, n, kind):
        got = (methods.get(key) or {}).get("constant") or []
        return [str(v) for v in got] if len(got) == n else [f"{kind}_{i}" for i in range(n)]

    def io(entries, key, kind):
        return [{"name": nm, "shape": e.get("shape"), "dtype": e.get("dtype")}
                for nm, e in zip(names(key, len(entries), kind), entries)]

    hist = collections.Counter()
    delegated = collections.Counter()
    decoded = True
    for d in doc["delegates"]:
        if d.get("nodes") is None:
            decoded = False
            continue
        for k, n in d["nodes"].items():
            hist[f"xnnpack:{k}"] += n
            delegated[k] += n
    portable = collections.Counter(fwd["ops"])
    for k, n in portable.items():
        hist[f"portable:{k}"] += n
    consts = collections.Counter(doc.get("portable_constant_values") or {})
    for d in doc["delegates"]:  # XNNPACK names: fp32, fp16, qint8 (per-tensor), qcint8 (per-channel), ...
        for k, n in (d.get("constant_values") or {}).items():
            consts[_XNN_DTYPES.get(k, k)] += n
    return {"inputs": io(fwd["inputs"], "input_names", "input"),
            "outputs": io(fwd["outputs"], "output_names", "output"),
            "op_histogram": dict(hist.most_common()), "params": int(sum(consts.values())),
            "weight_dtypes": dict(consts.most_common()),
            "methods": sorted(methods), "constant_methods": {k: m["constant"] for k, m in methods.items()
                                                              if m["constant"] is not None},
            "delegation": {"delegates": [{"backend": d["backend"], "bytes": d["bytes"],
                                          "nodes": sum((d.get("nodes") or {}).values())} for d in doc["delegates"]],
                           "delegated_ops": sum(delegated.values()) if decoded else None,
                           "non_delegated_ops": sum(portable.values()),
                           "non_delegated": dict(portable.most_common())},
            "precision": pte.precision(doc),
            "transpose_count": delegated.get("StaticTranspose", 0) + sum(
                n for k, n in portable.items() if "permute" in k or "transpose" in k)}


def _program_preprocessing(spec) -> dict:
    """An ML program keeps an image input's scale and bias as ops at its start (coremltools names their
    outputs ``NAME__scaled__`` and ``NAME__biased__``): {NAME: {"scale": s, "bias": [r, g, b]}}."""
    import numpy as np
    consts, found = {}, {}
    for fn in spec.mlProgram.functions.values():
        for blk in fn.block_specializations.values():
            for op in blk.operations:
                if op.type == "const" and op.outputs and "val" in op.attributes:
                    t = op.attributes["val"].immediateValue.tensor
                    which = t.WhichOneof("value")
                    if which == "floats":
                        consts[op.outputs[0].name] = [float(v) for v in t.floats.values]
                    elif which == "bytes" and op.attributes["val"].type.tensorType.dataType == 10:  # FLOAT16
                        consts[op.outputs[0].name] = np.frombuffer(t.bytes.values, np.float16).astype(float).tolist()
                for out in op.outputs:
                    for suffix, key in (("__scaled__", "scale"), ("__biased__", "bias")):
                        if out.name.endswith(suffix) and "y" in op.inputs and op.inputs["y"].arguments:
                            arg = op.inputs["y"].arguments[0]
                            val = consts.get(arg.name)
                            if val is not None:
                                found.setdefault(out.name[:-len(suffix)], {})[key] = (
                                    val[0] if key == "scale" and len(val) == 1 else val)
    return found


_COLOR_SPACES = {10: "GRAYSCALE", 20: "RGB", 30: "BGR", 40: "GRAYSCALE_FLOAT16"}


def _coreml_image(f, pre) -> dict:
    """An image feature: [1, C, H, W] (ranges as "lo..hi"), color space, and an input's preprocessing."""
    im = f.type.imageType
    color = _COLOR_SPACES.get(im.colorSpace, str(im.colorSpace))
    h, w = int(im.height), int(im.width)
    if im.WhichOneof("SizeFlexibility") == "imageSizeRange":
        r = im.imageSizeRange

        def span(sr):
            return sr.lowerBound if sr.lowerBound == sr.upperBound else f"{sr.lowerBound}..{sr.upperBound}"
        h, w = span(r.heightRange), span(r.widthRange)
    elif im.WhichOneof("SizeFlexibility") == "enumeratedSizes":
        sizes = [(s.height, s.width) for s in im.enumeratedSizes.sizes]
        h = h if len({a for a, _ in sizes}) == 1 else "|".join(str(a) for a, _ in sizes)
        w = w if len({b for _, b in sizes}) == 1 else "|".join(str(b) for _, b in sizes)
    image = {"color_space": color, "height": h, "width": w}
    if pre is not None:
        which = pre.WhichOneof("preprocessor")
        if which == "scaler":
            sc = pre.scaler
            bias = {"gray": sc.grayBias} if color.startswith("GRAY") else {
                "red": sc.redBias, "green": sc.greenBias, "blue": sc.blueBias}
            image["preprocessing"] = {"scale": sc.channelScale, "bias": bias}
        elif which == "meanImage":
            image["preprocessing"] = {"mean_image_values": len(pre.meanImage.meanImage)}
    return {"name": f.name, "shape": [1, 1 if color.startswith("GRAY") else 3, h, w], "dtype": "image",
            "image": image}


def _nn_weights(msg):
    """(dtype, count) of every WeightParams inside a neuralNetwork layer's parameters. Sub-byte quantized
    weights are counted from their packed bytes (a tensor may gain up to 7 padding slots)."""
    if type(msg).__name__ == "WeightParams":
        if len(msg.floatValue):
            yield "float32", len(msg.floatValue)
        elif len(msg.float16Value):
            yield "float16", len(msg.float16Value) // 2
        elif len(msg.int8RawValue):
            yield "int8", len(msg.int8RawValue)
        elif len(msg.rawValue):
            nbits = int(msg.quantization.numberOfBits) or 8
            yield f"uint{nbits}", len(msg.rawValue) * 8 // nbits
        return
    for field, value in msg.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in (value if not hasattr(value, "ListFields") else [value]):
            yield from _nn_weights(item)
