"""fp16 emulation of a .tflite artefact: its operator list interpreted with numpy.

The flatbuffer is read with ai-edge-litert's generated schema (``schema_py_generated``); the main
subgraph runs op by op in file order, so the emulation follows exactly what the converter wrote:
litert-torch's MEAN / SUB / MUL / MEAN / ADD / RSQRT instance norm, slice+flip+concat reflection
padding, fused activations, DEQUANTIZE of fp16 weights. Every float op computes in fp32 from its
inputs and its output (after a fused activation) is rounded to fp16; constants and feeds are
rounded to fp16 too (GPU delegates upload them in fp16, XNNPACK's fp16 path converts static
weights). Mode ``fp32`` runs the same interpreter without rounding: the reference for per-tensor
SNR, and the check of the interpreter itself against LiteRT (tests: <= 1e-5 on our exports).

Implemented ops: ADD SUB MUL DIV SQUARED_DIFFERENCE RSQRT SQRT LOGISTIC TANH RELU RELU6 MEAN SUM
CONV_2D DEPTHWISE_CONV_2D FULLY_CONNECTED BATCH_MATMUL CONCATENATION SLICE STRIDED_SLICE REVERSE_V2
RESHAPE SQUEEZE EXPAND_DIMS TRANSPOSE PAD PADV2 MIRROR_PAD RESIZE_NEAREST_NEIGHBOR DEQUANTIZE (fp16)
CAST. Anything else (and any int8 tensor) raises RuntimeFailed naming it: never a guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime.runners.base import RuntimeFailed
from styleport.runtime.numerics.fp16 import conv2d, matmul, mean, round16

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64}


def _fail(msg):
    raise RuntimeFailed(f"fp16 emulation (tflite): {msg}")


def _act(y, code):
    if code in (0, None):
        return y
    if code == 1:
        return np.maximum(y, 0)
    if code == 2:
        return np.clip(y, -1, 1)
    if code == 3:
        return np.clip(y, 0, 6)
    if code == 4:
        return np.tanh(y)
    _fail(f"fused activation {code} is not implemented")


def _same_pads(size, k, s, d):
    out = -(-size // s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
    return (total // 2, total - total // 2)


class TFLiteEmulator:
    def __init__(self, path, mode: str):
        from ai_edge_litert import schema_py_generated as S
        self.mode = mode
        buf = Path(path).read_bytes()
        try:
            model = S.ModelT.InitFromPackedBuf(bytearray(buf), 0)
        except Exception as e:  # noqa: BLE001
            _fail(f"cannot read {Path(path).name}: {e}")
        self.names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
        self.codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
        if not model.subgraphs:
            _fail("no subgraph")
        sg = model.subgraphs[0]
        self.tensors = sg.tensors
        self.ops = sg.operators
        self.consts = {}
        for i, t in enumerate(self.tensors):
            b = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            data = getattr(b, "data", None) if b is not None else None
            if data is not None and len(data):
                dt = _DTYPES.get(t.type)
                if dt is None:
                    _fail(f"tensor {self._name(i)} has type {t.type}, not implemented")
                if t.type in (9, 3, 7) and t.quantization is not None and getattr(t.quantization, "scale", None) \
                        is not None and len(t.quantization.scale):
                    _fail(f"tensor {self._name(i)} is quantized (int8): fp16 emulation covers float models")
                a = np.frombuffer(bytes(bytearray(data)), dtype=dt).reshape(list(t.shape) if t.shape is not None
                                                                          else [])
                if a.dtype.kind == "f":
                    a = a.astype(np.float32)
                    if mode != "fp32" and t.type == 0:
                        a = round16(a)
                self.consts[i] = a
        if model.signatureDefs:
            sd = model.signatureDefs[0]
            self.inputs = {_s(m.name): m.tensorIndex for m in sd.inputs}
            self.outputs = {_s(m.name): m.tensorIndex for m in sd.outputs}
        else:
            self.inputs = {self._name(i): i for i in sg.inputs}
            self.outputs = {self._name(i): i for i in sg.outputs}

    def _name(self, i):
        return _s(self.tensors[i].name) or f"t{i}"

    def run(self, feeds: dict) -> tuple[dict, list]:
        env = dict(self.consts)
        for name, idx in self.inputs.items():
            if name not in feeds:
                _fail(f"missing input {name!r}")
            v = np.asarray(feeds[name])
            env[idx] = round16(v.astype(np.float32)) if v.dtype.kind == "f" and self.mode != "fp32" else \
                np.asarray(v, np.float32 if v.dtype.kind == "f" else v.dtype)
        layers = []
        for k, op in enumerate(self.ops):
            code = self.codes[op.opcodeIndex]
            opname = self.names.get(code, str(code))
            fn = getattr(self, f"_op_{opname}", None)
            if fn is None:
                _fail(f"op {opname} (#{k}) is not implemented")
            args = [env.get(i) if i >= 0 else None for i in op.inputs]
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    y = fn(args, op.builtinOptions)
            except RuntimeFailed:
                raise
            except Exception as e:  # noqa: BLE001
                _fail(f"op {opname} (#{k}, output {self._name(op.outputs[0])}) failed: {type(e).__name__}: {e}")
            out = op.outputs[0]
            y = np.asarray(y)
            if y.dtype.kind == "f":
                y = y.astype(np.float32)
                if opname != "DEQUANTIZE":
                    layers.append((self._name(out), opname, _module_path(self._name(out)) or f"#{k}", y))
                if self.mode != "fp32":
                    y = round16(y)
            env[out] = y
        return {name: env[idx] for name, idx in self.outputs.items()}, layers

    # --- ops (inputs as a list, options object); outputs before rounding ---------------------------

    def _binary(self, a, o, f):
        return _act(f(a[0], a[1]), getattr(o, "fusedActivationFunction", 0))

    def _op_ADD(self, a, o):
        return self._binary(a, o, np.add)

    def _op_SUB(self, a, o):
        return self._binary(a, o, np.subtract)

    def _op_MUL(self, a, o):
        return self._binary(a, o, np.multiply)

    def _op_DIV(self, a, o):
        return self._binary(a, o, np.divide)

    def _op_SQUARED_DIFFERENCE(self, a, o):
        d = a[0] - a[1]
        return d * d

    def _op_RSQRT(self, a, o):
        return 1.0 / np.sqrt(a[0])

    def _op_SQRT(self, a, o):
        return np.sqrt(a[0])

    def _op_LOGISTIC(self, a, o):
        return 1.0 / (1.0 + np.exp(-a[0]))

    def _op_TANH(self, a, o):
        return np.tanh(a[0])

    def _op_RELU(self, a, o):
        return np.maximum(a[0], 0)

    def _op_RELU6(self, a, o):
        return np.clip(a[0], 0, 6)

    def _op_MEAN(self, a, o):
        axes = tuple(int(i) % a[0].ndim for i in np.asarray(a[1]).reshape(-1))
        return mean(a[0], axes, keepdims=bool(getattr(o, "keepDims", False)))

    def _op_SUM(self, a, o):
        axes = tuple(int(i) % a[0].ndim for i in np.asarray(a[1]).reshape(-1))
        return np.sum(a[0], axis=axes, keepdims=bool(getattr(o, "keepDims", False)), dtype=np.float32)

    def _conv(self, x, w_oihw, b, o, groups):
        x = x.transpose(0, 3, 1, 2)
        kh, kw = w_oihw.shape[2:]
        s = (o.strideH, o.strideW)
        d = (max(1, o.dilationHFactor), max(1, o.dilationWFactor))
        if o.padding == 0:   # SAME
            pads = (_same_pads(x.shape[2], kh, s[0], d[0]), _same_pads(x.shape[3], kw, s[1], d[1]))
        else:
            pads = ((0, 0), (0, 0))
        y = conv2d(x, w_oihw, b, s, pads, d, groups, acc16=self.mode == "fp16-acc16")
        return _act(y, o.fusedActivationFunction).transpose(0, 2, 3, 1)

    def _op_CONV_2D(self, a, o):
        w = a[1].transpose(0, 3, 1, 2)                      # OHWI -> OIHW
        groups = a[0].shape[3] // w.shape[1]
        return self._conv(a[0], w, a[2] if len(a) > 2 else None, o, groups)

    def _op_DEPTHWISE_CONV_2D(self, a, o):
        w = a[1][0].transpose(2, 0, 1)[:, None]             # 1HW(C*M) -> (C*M)1HW
        return self._conv(a[0], w, a[2] if len(a) > 2 else None, o, a[0].shape[3])

    def _op_FULLY_CONNECTED(self, a, o):
        x, w = a[0], a[1]
        lead = x.shape[:-1]
        y = matmul(x.reshape(-1, w.shape[1]), w.T, a[2] if len(a) > 2 else None, acc16=self.mode == "fp16-acc16")
        if getattr(o, "keepNumDims", False):
            y = y.reshape(*lead, w.shape[0])
        return _act(y, o.fusedActivationFunction)

    def _op_BATCH_MATMUL(self, a, o):
        x, y = a[0], a[1]
        if getattr(o, "adjX", False):
            x = np.swapaxes(x, -1, -2)
        if getattr(o, "adjY", False):
            y = np.swapaxes(y, -1, -2)
        return matmul(x, y, acc16=self.mode == "fp16-acc16")

    def _op_CONCATENATION(self, a, o):
        return _act(np.concatenate(a, axis=o.axis), o.fusedActivationFunction)

    def _op_SLICE(self, a, o):
        begin = [int(v) for v in np.asarray(a[1]).reshape(-1)]
        size = [int(v) for v in np.asarray(a[2]).reshape(-1)]
        return a[0][tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]

    def _op_STRIDED_SLICE(self, a, o):
        x = a[0]
        begin, end, stride = (np.asarray(v).reshape(-1).astype(int) for v in a[1:4])
        if o.ellipsisMask or o.newAxisMask:
            _fail("STRIDED_SLICE with ellipsis/new-axis masks is not implemented")
        sl, squeeze = [], []
        for i in range(len(begin)):
            if o.shrinkAxisMask >> i & 1:
                sl.append(int(begin[i]))
                squeeze.append(i)
                continue
            b = None if o.beginMask >> i & 1 else int(begin[i])
            e = None if o.endMask >> i & 1 else int(end[i])
            if getattr(o, "offset", False) and e is not None and b is not None:
                e = b + e
            sl.append(slice(b, e, int(stride[i])))
        return x[tuple(sl)]

    def _op_REVERSE_V2(self, a, o):
        return np.flip(a[0], axis=tuple(int(i) for i in np.asarray(a[1]).reshape(-1)))

    def _op_RESHAPE(self, a, o):
        shape = a[1] if len(a) > 1 and a[1] is not None else getattr(o, "newShape", None)
        return a[0].reshape([int(v) for v in np.asarray(shape).reshape(-1)])

    def _op_SQUEEZE(self, a, o):
        dims = getattr(o, "squeezeDims", None)
        return np.squeeze(a[0], axis=tuple(int(d) for d in dims) if dims is not None and len(dims) else None)

    def _op_EXPAND_DIMS(self, a, o):
        return np.expand_dims(a[0], int(np.asarray(a[1]).reshape(-1)[0]))

    def _op_TRANSPOSE(self, a, o):
        return np.transpose(a[0], [int(v) for v in np.asarray(a[1]).reshape(-1)])

    def _op_PAD(self, a, o):
        p = np.asarray(a[1]).reshape(-1, 2).astype(int)
        c = float(np.asarray(a[2]).reshape(-1)[0]) if len(a) > 2 and a[2] is not None else 0.0
        return np.pad(a[0], [tuple(r) for r in p], constant_values=c)

    _op_PADV2 = _op_PAD

    def _op_MIRROR_PAD(self, a, o):
        p = np.asarray(a[1]).reshape(-1, 2).astype(int)
        return np.pad(a[0], [tuple(r) for r in p], mode="reflect" if o.mode == 0 else "symmetric")

    def _op_RESIZE_NEAREST_NEIGHBOR(self, a, o):
        x = a[0]
        oh, ow = (int(v) for v in np.asarray(a[1]).reshape(-1))
        if o.alignCorners:
            _fail("RESIZE_NEAREST_NEIGHBOR with align_corners is not implemented")
        for axis, n_out in ((1, oh), (2, ow)):
            n_in = x.shape[axis]
            scale = n_in / n_out
            pos = (np.arange(n_out) + 0.5) * scale if o.halfPixelCenters else np.arange(n_out) * scale
            src = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
            x = np.take(x, src, axis=axis)
        return x

    def _op_DEPTH_TO_SPACE(self, a, o):
        # NHWC, TFLite's (DCR) order: out[n, h*b+i, w*b+j, c] = in[n, h, w, (i*b + j)*C + c]
        x, b = a[0], int(o.blockSize)
        n, h, w, cb = x.shape
        c = cb // (b * b)
        return x.reshape(n, h, w, b, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c)

    def _op_DEQUANTIZE(self, a, o):
        if a[0].dtype.kind != "f":
            _fail("DEQUANTIZE of an integer tensor (int8 model): fp16 emulation covers float models")
        return a[0].astype(np.float32)

    def _op_CAST(self, a, o):
        return a[0]


def _module_path(name: str) -> str:
    """litert-torch names tensors by module path (``.../TransformerNet_net/ConvLayer_conv1/Conv2d_conv2d;5``):
    the attribute names after ``net`` (``conv1.conv2d``), or "" when the name carries no path."""
    if "/" not in name:
        return ""
    parts = [p.split(";")[0] for p in name.split("/")]
    attrs = [p.rsplit("_", 1)[-1] for p in parts if "_" in p and "." in p.split("_", 1)[0] or "_" in p]
    if "net" in attrs:
        attrs = attrs[attrs.index("net") + 1:]
    return ".".join(a for a in attrs if a and a not in ("inner",))


def _s(v):
    return v.decode() if isinstance(v, bytes) else (v or "")
