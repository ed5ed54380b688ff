"""Exact rewrites of a converted ``.tflite`` so that XNNPACK takes every op (flatbuffer surgery).

litert-torch lowers nearest upsampling (``F.interpolate(mode="nearest")``) to
RESIZE_NEAREST_NEIGHBOR, which XNNPACK does not take: it runs in the builtin kernel and cuts the
delegate's graph in two partitions. Upsampling by an integer factor ``r`` is the same as ``r*r``
copies of the input along channels followed by DEPTH_TO_SPACE(r) (NHWC: output pixel
``(h*r+a, w*r+b)`` reads channel block ``a*r+b``, which holds the input pixel ``(h, w)``), and XNNPACK
takes both. It cannot be written in torch: litert-torch keeps a permute or a rank-5 reshape in
NCHW with TRANSPOSE ops around it, and lowers ``pixel_shuffle`` to reshapes and transposes.

Only exact cases are rewritten: ``align_corners`` false (with an integer factor, half-pixel centres
pick the same source pixel, ``floor((d + 0.5) / r) == floor(d / r)``, and litert-torch sets them), the output an
integer multiple ``r`` of the input in both directions with ``r*r <= 5`` (XNNPACK's CONCATENATION
takes 2-5 inputs), float32 tensors. Anything else is left as it is. Every export is checked
against PyTorch afterwards (bundle), so a wrong rewrite would fail the export, not ship.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_CONCAT_INPUTS = 5


def _opcode(model, S, builtin: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin and not oc.customCode:
            return i
    oc = S.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _const(model, tensor) -> np.ndarray | None:
    buf = model.buffers[tensor.buffer]
    if buf.data is None or not len(buf.data):
        return None
    return np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32)


def nearest_to_depth_to_space(model) -> int:
    """Rewrite every exact RESIZE_NEAREST_NEIGHBOR of ``model`` (schema ModelT) in place; returns
    how many were rewritten."""
    from ai_edge_litert import schema_py_generated as S
    B = S.BuiltinOperator
    resize = [i for i, oc in enumerate(model.operatorCodes)
              if max(oc.builtinCode, oc.deprecatedBuiltinCode) == B.RESIZE_NEAREST_NEIGHBOR]
    if not resize:
        return 0
    done = 0
    for sg in model.subgraphs:
        ops = []
        for op in sg.operators:
            r = _factor(model, sg, op, resize)
            if r is None:
                ops.append(op)
                continue
            x, out = op.inputs[0], op.outputs[0]
            n, h, w, c = (int(d) for d in sg.tensors[x].shape)
            mid = S.TensorT()
            mid.shape = np.array([n, h, w, c * r * r], dtype=np.int32)
            mid.type = S.TensorType.FLOAT32
            mid.name = (sg.tensors[out].name or b"t") + b"/nearest_copies"
            model.buffers.append(S.BufferT())
            mid.buffer = len(model.buffers) - 1
            sg.tensors.append(mid)
            t = len(sg.tensors) - 1
            cat = S.OperatorT()
            cat.opcodeIndex = _opcode(model, S, B.CONCATENATION)
            cat.inputs, cat.outputs = np.array([x] * (r * r), dtype=np.int32), np.array([t], dtype=np.int32)
            cat.builtinOptionsType = S.BuiltinOptions.ConcatenationOptions
            cat.builtinOptions = S.ConcatenationOptionsT()
            cat.builtinOptions.axis = 3
            d2s = S.OperatorT()
            d2s.opcodeIndex = _opcode(model, S, B.DEPTH_TO_SPACE)
            d2s.inputs, d2s.outputs = np.array([t], dtype=np.int32), np.array([out], dtype=np.int32)
            d2s.builtinOptionsType = S.BuiltinOptions.DepthToSpaceOptions
            d2s.builtinOptions = S.DepthToSpaceOptionsT()
            d2s.builtinOptions.blockSize = r
            ops += [cat, d2s]
            done += 1
        sg.operators = ops
    return done


def _factor(model, sg, op, resize_codes) -> int | None:
    """The integer upsampling factor of an exact nearest resize op, else None."""
    from ai_edge_litert import schema_py_generated as S
    if op.opcodeIndex not in resize_codes or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    opt = op.builtinOptions
    if opt is not None and getattr(opt, "alignCorners", False):
        return None
    x, size, out = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
    if x.type != S.TensorType.FLOAT32 or out.type != S.TensorType.FLOAT32 or x.shape is None or len(x.shape) != 4:
        return None
    hw = _const(model, size)
    if hw is None or hw.size != 2:
        return None
    h, w = int(x.shape[1]), int(x.shape[2])
    if h <= 0 or w <= 0 or hw[0] % h or hw[1] % w or hw[0] // h != hw[1] // w:
        return None
    r = int(hw[0] // h)
    if r < 2 or r * r > MAX_CONCAT_INPUTS:
        return None
    return r


def rewrite_file(path: Path) -> dict:
    """Apply the rewrites to the file at ``path`` (in place); returns {rewrite: count}."""
    from ai_edge_litert.tools import flatbuffer_utils
    path = Path(path)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    n = nearest_to_depth_to_space(model)
    if n:
        path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return {"nearest_upsample_as_depth_to_space": n}
