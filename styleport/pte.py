"""What is inside an ExecuTorch program (``.pte``), read without running it.

Used by ``styleport inspect`` and by the executorch runner (precision, names). The program
flatbuffer is read with ExecuTorch's own deserializer (``executorch.exir._serialize``); an XNNPACK
delegate's payload (an ``XNNGraph`` flatbuffer behind an ``XH00`` header) is turned into JSON by the
``flatc`` that ships in the executorch wheel, with the wheel's own XNNPACK schema, so node kinds and
value dtypes are counted from the file rather than assumed.

``read(path)`` returns::

    {"methods": {name: {"inputs": [{"shape", "dtype"}], "outputs": [...],
                        "ops": {op: n},               # portable (non-delegated) kernel calls
                        "delegate_calls": {backend: n}, "constant": [values] | None}},
     "delegates": [{"backend", "bytes", "nodes": {XNN node kind: n}, "value_dtypes": {dtype: n},
                    "nodes_quantized": {kind: n}, "nodes_float": {kind: n},    # by their inputs' dtypes
                    "constant_values": {dtype: elements}}],
     "constant_bytes": N}

``constant`` holds the values a constant method returns (styleport writes ``input_names``,
``output_names`` and ``layout`` so the positional inputs keep their bundle names).
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from styleport.errors import BadInput

# executorch ScalarType codes (exir/scalar_type.fbs) -> numpy dtype names
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool", 15: "bfloat16"}
MAGIC = b"ET12"


def is_pte(data: bytes) -> bool:
    """ExecuTorch program files carry 'ET' + a version at bytes 4..8 (flatbuffer file identifier)."""
    return len(data) >= 8 and data[4:6] == b"ET"


def _value(ev) -> object:
    v = ev.val
    name = type(v).__name__
    if name == "Tensor":
        return {"shape": [int(d) for d in v.sizes], "dtype": SCALAR_TYPES.get(int(v.scalar_type), str(v.scalar_type))}
    if name == "String":
        return v.string_val
    if name in ("Int", "Double", "Bool"):
        return next(iter(vars(v).values()))
    return name


def read(path: str | os.PathLike) -> dict:
    path = Path(path)
    data = path.read_bytes()
    if not is_pte(data):
        raise BadInput(f"not an ExecuTorch program: {path} (missing the 'ET' file identifier)")
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        raise BadInput("reading .pte needs executorch (pip install executorch)") from None
    try:
        pte = deserialize_pte_binary(data)
    except Exception as e:  # noqa: BLE001 - a corrupt flatbuffer raises many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise BadInput(f"not a valid ExecuTorch program: {path} ({first})") from None
    program = pte.program
    methods, delegates, consts = {}, [], collections.Counter()
    for plan in program.execution_plan:
        ops, calls = collections.Counter(), collections.Counter()
        for chain in plan.chains:
            for ins in chain.instructions:
                a = ins.instr_args
                kind = type(a).__name__
                if kind == "KernelCall":
                    op = plan.operators[a.op_index]
                    ops[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
                elif kind == "DelegateCall":
                    calls[plan.delegates[a.delegate_index].id] += 1
        for ev in plan.values:  # constant tensors of portable kernels (in the program's constant buffer)
            v = ev.val
            if type(v).__name__ == "Tensor" and int(v.data_buffer_idx) > 0:
                n = 1
                for d in v.sizes:
                    n *= int(d)
                consts[SCALAR_TYPES.get(int(v.scalar_type), str(v.scalar_type))] += n
        ins_ = [_value(plan.values[i]) for i in plan.inputs]
        outs = [_value(plan.values[i]) for i in plan.outputs]
        constant = None
        if not plan.inputs and not any(ch.instructions for ch in plan.chains):
            constant = outs
        methods[plan.name] = {"inputs": ins_, "outputs": outs, "ops": dict(ops.most_common()),
                              "delegate_calls": dict(calls), "constant": constant}
        for d in plan.delegates:
            blob = _delegate_bytes(program, d)
            entry = {"backend": d.id, "bytes": len(blob) if blob is not None else None}
            if blob is not None and d.id == "XnnpackBackend":
                entry.update(xnnpack_graph(blob))
            delegates.append(entry)
    const = sum(len(b.storage) for b in program.constant_buffer)
    if pte.named_data is not None:
        const += sum(len(b) for b in getattr(pte.named_data, "buffers", []) or [])
    return {"methods": methods, "delegates": delegates, "constant_bytes": const, "version": program.version,
            "portable_constant_values": dict(consts)}


def _delegate_bytes(program, delegate) -> bytes | None:
    ref = delegate.processed
    try:
        return bytes(program.backend_delegate_data[ref.index].data)
    except (IndexError, AttributeError):
        return None


def xnnpack_graph(blob: bytes) -> dict:
    """Node kinds and value dtypes of an XNNPACK delegate payload (via flatc and the wheel's schema)."""
    import struct
    if blob[4:8] == b"XH00":
        off, size = struct.unpack_from("<II", blob, 10)
        fb = blob[off:off + size]
    else:
        fb = blob
    try:
        doc = _flatc_json(fb)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"nodes": None, "value_dtypes": None, "nodes_quantized": None, "nodes_float": None,
                "constant_values": None, "note": f"XNNPACK payload not decoded: {e}"}
    dtype_of = {}
    dtypes, consts = collections.Counter(), collections.Counter()
    for v in doc.get("xvalues", []):
        inner = v.get("xvalue_union") or {}
        t = inner.get("tensor_value", inner)
        dt = str(t.get("datatype", "?")).removeprefix("xnn_datatype_")
        dtypes[dt] += 1
        dtype_of[int(t.get("id_out", 0))] = dt
        if int(t.get("constant_buffer_idx", 0)) > 0:  # weights, biases and other constants
            n = 1
            for d in t.get("dims", []):
                n *= int(d)
            consts[dt] += n
    nodes, quant, flt = collections.Counter(), collections.Counter(), collections.Counter()
    for n in doc.get("xnodes", []):
        kind = n.get("xnode_union_type", "?").removeprefix("XNN")
        nodes[kind] += 1
        if kind == "Convert":
            continue  # quantize / dequantize / cast at the edge of a quantized region
        ids = [v for k, v in (n.get("xnode_union") or {}).items() if k.endswith("_id") and k != "output_id"
               and isinstance(v, int) and v != 0xFFFFFFFF]
        (quant if any(dtype_of.get(i, "").startswith("q") for i in ids) else flt)[kind] += 1
    return {"nodes": dict(nodes.most_common()), "value_dtypes": dict(dtypes.most_common()),
            "nodes_quantized": dict(quant.most_common()), "nodes_float": dict(flt.most_common()),
            "constant_values": dict(consts.most_common())}


def _flatc_json(fb: bytes) -> dict:
    schema = resources.files("executorch.backends.xnnpack.serialization").joinpath("schema.fbs").read_bytes()
    flatc = resources.files("executorch.data.bin").joinpath("flatc")
    with tempfile.TemporaryDirectory(prefix="styleport-pte-") as tmp, resources.as_file(flatc) as fc:
        t = Path(tmp)
        (t / "schema.fbs").write_bytes(schema)
        (t / "graph.bin").write_bytes(fb)
        subprocess.run([str(fc), "--json", "--strict-json", "--raw-binary", "-o", tmp, str(t / "schema.fbs"),
                        "--", str(t / "graph.bin")], check=True, capture_output=True, timeout=60)
        text = (t / "graph.json").read_text()
    # flatc writes non-finite floats (clamp bounds) bare: quote them so json can read the document
    return json.loads(re.sub(r'(:\s*)(-?(?:inf|nan))\b', r'\1"\2"', text))


def precision(doc: dict) -> str | None:
    """int8 when a delegate holds quantized values (XNNPACK qint8 / qcint8 / qdint8), fp16 when it holds
    float16 ones, else fp32; None when no delegate payload could be decoded."""
    dts = collections.Counter()
    decoded = False
    for d in doc.get("delegates", []):
        if d.get("value_dtypes") is not None:
            decoded = True
            dts.update(d["value_dtypes"])
    if any(k.startswith("q") for k in dts):
        return "int8"
    if "fp16" in dts:
        return "fp16"
    return "fp32" if decoded or not doc.get("delegates") else None
