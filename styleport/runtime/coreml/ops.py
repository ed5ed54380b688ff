"""The ML program ops of the coreml-mil interpreter, in numpy: one function per MIL op (``conv``,
``instance_norm``, ``pad``, ...), the weight-decompression ``constexpr_*`` ops, and the tables
``OPS`` / ``CONSTEXPR_OPS`` the program executor dispatches on. Semantics follow the MIL op
definitions in coremltools (``converters/mil/mil/ops/defs``); the package docstring
(:mod:`styleport.runtime.coreml`) gives the op list and the dtype policy. The neuralNetwork layers
(:mod:`.nn_layers`) and the fp16 emulator (:mod:`styleport.runtime.numerics.coreml`) reuse these
kernels.
"""

from __future__ import annotations

import math
import numpy as np

from styleport.runtime.runners.base import RuntimeFailed

NAME = "coreml-mil (reference interpreter)"

# MIL_pb2.DataType names -> numpy dtype (sub-byte types are unpacked to one byte per element).
MIL_DTYPES = {
    "BOOL": np.bool_, "FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64,
    "INT4": np.int8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT1": np.uint8, "UINT2": np.uint8, "UINT3": np.uint8, "UINT4": np.uint8, "UINT6": np.uint8,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
}
# dtype strings of the ``cast`` op
_CAST_DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
                "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
                "int64": np.int64, "bool": np.bool_}
# description (FeatureTypes ArrayDataType) names -> numpy dtype names
FEATURE_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32",
                   "INT8": "int8"}


def fail(msg: str):
    raise RuntimeFailed(f"coreml-mil: {msg}")


# --- op helpers ---------------------------------------------------------------------------------

class Args:
    """The named inputs of one op: each a list of values (tuple inputs such as concat's have several)."""

    def __init__(self, op_type: str, values: dict):
        self.op_type = op_type
        self.values = values

    def has(self, key):
        return key in self.values

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return self.get(key)

    def get(self, key, default=None, required=True):
        if key not in self.values:
            if default is None and required:
                fail(f"op {self.op_type!r} lacks its input {key!r}")
            return default
        vals = self.values[key]
        if len(vals) != 1:
            fail(f"op {self.op_type!r} input {key!r} holds {len(vals)} values, expected one")
        return vals[0]

    def opt(self, key, default=None):
        return self.get(key, default, required=False)

    def many(self, key):
        if key not in self.values:
            fail(f"op {self.op_type!r} lacks its input {key!r}")
        return list(self.values[key])


def f32(x):
    """Float inputs of an op as float32 (fp16 values are exact in fp32); other dtypes unchanged."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def ints(v):
    return [int(i) for i in np.asarray(v).reshape(-1)]


def scalar(v):
    return np.asarray(v).reshape(-1)[0].item()


def same_pads(in_sizes, kernel, strides, dilations, lower: bool):
    pads = []
    for i, k, s, d in zip(in_sizes, kernel, strides, dilations):
        ek = (k - 1) * d + 1
        total = max(0, s * math.ceil(i / s) - i + ek - s)   # coremltools' aggregated_pad
        small, big = total // 2, total - total // 2
        pads.append((big, small) if lower else (small, big))
    return pads


def spatial_pads(op_type, pad_type, in_sizes, kernel, strides, dilations, pad):
    n = len(in_sizes)
    pad_type = str(pad_type).lower()
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = ints(pad) if pad is not None else [0] * 2 * n
        if len(p) != 2 * n:
            fail(f"op {op_type!r}: custom pad has {len(p)} values for {n} spatial dims")
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        return same_pads(in_sizes, kernel, strides, dilations, pad_type == "same_lower")
    fail(f"op {op_type!r}: unknown pad_type {pad_type!r}")


# --- ops --------------------------------------------------------------------------------------

def op_conv(a: Args):
    x, w = f32(a.x), f32(a.weight)
    nsp = x.ndim - 2
    if nsp not in (1, 2) or w.ndim != x.ndim:
        fail(f"conv with {nsp} spatial dims is not implemented (1-D and 2-D are)")
    strides = ints(a.opt("strides", [1] * nsp))
    dil = ints(a.opt("dilations", [1] * nsp))
    groups = int(scalar(a.opt("groups", 1)))
    pads = spatial_pads("conv", a.opt("pad_type", "valid"), x.shape[2:], w.shape[2:], strides, dil,
                         a.opt("pad"))
    bias = a.opt("bias")
    if nsp == 1:
        x, w = x[:, :, None, :], w[:, :, None, :]
        strides, dil, pads = [1] + strides, [1] + dil, [(0, 0)] + pads
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    n, c, hp, wp = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups or c // groups != cg:
        fail(f"conv: weight {w.shape} does not fit input channels {c} with groups {groups}")
    og = o // groups
    (sh, sw), (dh, dw) = strides, dil
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    if ho < 1 or wo < 1:
        fail(f"conv: input {x.shape} is smaller than the kernel")
    out = np.zeros((n, o, ho, wo), np.float32)

    def window(t, i, j):
        return t[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]

    if cg == 1 and groups > 1:  # depthwise (channel multiplier og): elementwise multiply-accumulate
        xr = np.repeat(x, og, axis=1) if og > 1 else x
        for i in range(kh):
            for j in range(kw):
                out += window(xr, i, j) * w[:, 0, i, j][None, :, None, None]
    else:  # shift and accumulate: one (og x cg) @ (cg x HW) matmul per kernel tap and group
        for g in range(groups):
            xg, wg = x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
            acc = out[:, g * og:(g + 1) * og].reshape(n, og, ho * wo)
            for i in range(kh):
                for j in range(kw):
                    acc += wg[:, :, i, j] @ window(xg, i, j).reshape(n, cg, ho * wo)
            out[:, g * og:(g + 1) * og] = acc.reshape(n, og, ho, wo)
    if bias is not None:
        out += f32(bias).reshape(1, o, 1, 1)
    return out[:, :, 0, :] if nsp == 1 else out


def _channel(v, ndim):
    return f32(v).reshape((1, -1) + (1,) * (ndim - 2))


def op_instance_norm(a: Args):
    x = f32(a.x)
    if x.ndim < 3:
        fail(f"instance_norm needs rank 3 or more, got {x.ndim}")
    eps = np.float32(scalar(a.opt("epsilon", 1e-5)))
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + eps)
    if a.opt("gamma") is not None:
        y = y * _channel(a.gamma, x.ndim)
    if a.opt("beta") is not None:
        y = y + _channel(a.beta, x.ndim)
    return y


def op_batch_norm(a: Args):
    x = f32(a.x)
    eps = np.float32(scalar(a.opt("epsilon", 1e-5)))
    y = (x - _channel(a.mean, x.ndim)) / np.sqrt(_channel(a.variance, x.ndim) + eps)
    if a.opt("gamma") is not None:
        y = y * _channel(a.gamma, x.ndim)
    if a.opt("beta") is not None:
        y = y + _channel(a.beta, x.ndim)
    return y


def op_pad(a: Args):
    x = f32(a.x)
    p = ints(a.pad)
    if len(p) % 2 or len(p) // 2 > x.ndim:
        fail(f"pad: {len(p)} pad values for a rank-{x.ndim} input")
    if min(p) < 0:
        fail("pad: negative pad amounts are not implemented")
    k = len(p) // 2
    widths = [(0, 0)] * (x.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k)]
    mode = str(a.opt("mode", "constant"))
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=scalar(a.opt("constant_val", 0.0)))
    if mode == "reflect":
        for dim, (b, e) in zip(range(x.ndim), widths):
            if max(b, e) > x.shape[dim] - 1:
                fail(f"pad: reflect pad {max(b, e)} needs a dimension larger than {x.shape[dim]}")
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    fail(f"pad: mode {mode!r} is not implemented (constant, reflect, replicate)")


def op_upsample_nearest_neighbor(a: Args):
    x = f32(a.x)
    if x.ndim < 3:
        fail("upsample_nearest_neighbor needs rank 3 or more")
    for axis, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        s = float(scalar(a.opt(key, 1)))
        n = x.shape[axis]
        out = int(math.floor(n * s))
        src = np.minimum(np.floor(np.arange(out) / s).astype(np.int64), n - 1)   # nearest, floor
        x = np.take(x, src, axis=axis)
    return x


def _pool(a: Args, kind: str):
    x = f32(a.x)
    nsp = x.ndim - 2
    if nsp not in (1, 2):
        fail(f"{kind}_pool with {nsp} spatial dims is not implemented (1-D and 2-D are)")
    k = ints(a.kernel_sizes)
    s = ints(a.opt("strides", [1] * nsp))
    pads = spatial_pads(f"{kind}_pool", a.opt("pad_type", "valid"), x.shape[2:], k, s, [1] * nsp,
                         a.opt("pad"))
    ceil_mode = bool(scalar(a.opt("ceil_mode", False)))
    if nsp == 1:
        x = x[:, :, None, :]
        k, s, pads = [1] + k, [1] + s, [(0, 0)] + pads
    outs, extra = [], []
    for n_in, kk, ss, (b, e) in zip(x.shape[2:], k, s, pads):
        span = n_in + b + e - kk
        if span < 0:
            fail(f"{kind}_pool: input {x.shape} is smaller than the kernel {k}")
        o = (span + (ss - 1 if ceil_mode else 0)) // ss + 1
        if ceil_mode and (o - 1) * ss >= n_in + b and (b + e) > 0:   # MIL spatial_dimensions_out_shape
            o -= 1
        outs.append(o)
        extra.append(max(0, (o - 1) * ss + kk - (n_in + b + e)))  # windows running past the pads
    full = [(0, 0), (0, 0)] + [(b, e + x_) for (b, e), x_ in zip(pads, extra)]
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, full, constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
    win = win[:, :, :outs[0], :outs[1]]
    if kind == "max":
        y = win.max(axis=(-2, -1))
    else:
        total = win.sum(axis=(-2, -1), dtype=np.float32)
        exclude = bool(scalar(a.opt("exclude_padding_from_average", False)))
        # divisor: the real input elements in the window, or (padding included) the elements of the
        # padded input — windows that run past it under ceil_mode count only what lies inside (as torch)
        mask = np.ones(x.shape[2:], np.float32)
        mask = np.pad(mask, pads) if exclude else np.pad(mask, pads, constant_values=1.0)
        mask = np.pad(mask, [(0, e) for e in extra])
        mwin = np.lib.stride_tricks.sliding_window_view(mask, k)[::s[0], ::s[1]][:outs[0], :outs[1]]
        count = mwin.sum(axis=(-2, -1))
        y = total / np.maximum(count, 1.0)
    return y[:, :, 0, :] if nsp == 1 else y


def _binary(fn):
    def op(a: Args):
        return fn(f32(a.x), f32(a.y))
    return op


def _unary(fn):
    def op(a: Args):
        return fn(f32(a.x))
    return op


def sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def op_clip(a: Args):
    return np.minimum(np.maximum(f32(a.x), f32(a.alpha)), f32(a.beta))


def op_rsqrt(a: Args):
    x = f32(a.x)
    eps = np.asarray(f32(a.opt("epsilon", np.float32(1e-12))), x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(x + eps)


def op_real_div(a: Args):
    with np.errstate(divide="ignore", invalid="ignore"):
        return f32(a.x) / f32(a.y)


def _axes(a: Args, ndim):
    ax = a.opt("axes")
    return None if ax is None else tuple(int(i) % ndim for i in ints(ax))


def op_reduce_mean(a: Args):
    x = f32(a.x)
    return np.mean(x, axis=_axes(a, x.ndim), keepdims=bool(scalar(a.opt("keep_dims", False))))


def op_concat(a: Args):
    vals = [f32(v) for v in a.many("values")]
    axis = int(scalar(a.axis))
    if bool(scalar(a.opt("interleave", False))):
        ax = axis % vals[0].ndim
        st = np.stack(vals, axis=ax + 1)
        shape = list(vals[0].shape)
        shape[ax] *= len(vals)
        return st.reshape(shape)
    return np.concatenate(vals, axis=axis)


def op_slice_by_index(a: Args):
    x = np.asarray(a.x)
    r = x.ndim
    begin, end = ints(a.begin), ints(a.end)
    stride = ints(a.opt("stride", [1] * r))
    bm = [bool(v) for v in np.asarray(a.opt("begin_mask", [False] * r)).reshape(-1)]
    em = [bool(v) for v in np.asarray(a.opt("end_mask", [False] * r)).reshape(-1)]
    sm = [bool(v) for v in np.asarray(a.opt("squeeze_mask", [False] * r)).reshape(-1)]
    if not len(begin) == len(end) == len(stride) == r:
        fail(f"slice_by_index: begin/end/stride must have {r} entries")
    slices = []
    for i in range(r):   # coremltools' solve_slice_by_index_slice
        if sm[i]:
            slices.append(begin[i] if begin[i] >= 0 else begin[i] + x.shape[i])
            continue
        slices.append(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]))
    return x[tuple(slices)]


def op_reverse(a: Args):
    x = np.asarray(a.x)
    ax = _axes(a, x.ndim)
    return np.flip(x, axis=ax if ax is not None else None)


def op_reshape(a: Args):
    x = np.asarray(a.x)
    shape = ints(a.shape)
    if 0 in shape:
        if len(shape) != x.ndim:
            fail("reshape: 0 in shape needs len(shape) == rank(x)")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    try:
        return x.reshape(shape)
    except ValueError as e:
        fail(f"reshape: {e}")


def op_expand_dims(a: Args):
    x = np.asarray(a.x)
    return np.expand_dims(x, tuple(ints(a.axes)))


def op_squeeze(a: Args):
    x = np.asarray(a.x)
    ax = a.opt("axes")
    return np.squeeze(x) if ax is None else np.squeeze(x, axis=tuple(ints(ax)))


def op_transpose(a: Args):
    return np.transpose(np.asarray(a.x), ints(a.perm))


def op_cast(a: Args):
    dt = str(a.dtype)
    if dt not in _CAST_DTYPES:
        fail(f"cast to {dt!r} is not implemented")
    return np.asarray(a.x).astype(_CAST_DTYPES[dt])


def op_linear(a: Args):
    x, w = f32(a.x), f32(a.weight)
    y = x @ w.T
    if a.opt("bias") is not None:
        y = y + f32(a.bias)
    return y


def op_matmul(a: Args):
    x, y = f32(a.x), f32(a.y)
    if bool(scalar(a.opt("transpose_x", False))) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(scalar(a.opt("transpose_y", False))) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _constexpr_affine_dequantize(a: Args):
    q = np.asarray(a.quantized_data).astype(np.float32)
    axis = int(scalar(a.axis)) % q.ndim
    shape = [1] * q.ndim
    shape[axis] = -1

    def along(v):
        v = np.asarray(v).astype(np.float32)
        return v.reshape(shape) if v.ndim == 1 else v

    scale = np.asarray(a.scale)
    return ((q - along(a.zero_point)) * along(scale)).astype(scale.dtype)


def _unpack_bits(packed, nbits, count):
    bits = np.unpackbits(np.asarray(packed, np.uint8), bitorder="little")
    if bits.size < nbits * count:
        fail(f"constexpr_lut_to_dense: {packed.size} bytes cannot hold {count} {nbits}-bit indices")
    bits = bits[:nbits * count].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


def _constexpr_lut_to_dense(a: Args):
    lut = np.asarray(a.lut)
    if a.has("shape"):  # iOS16: indices packed LSB-first into uint8, one LUT for the whole tensor
        shape = ints(a.shape)
        if lut.ndim != 1 or lut.size not in (2, 4, 16, 64, 256):
            fail(f"constexpr_lut_to_dense (iOS16): LUT of shape {lut.shape}")
        nbits = int(round(math.log2(lut.size)))
        idx = _unpack_bits(a.indices, nbits, int(np.prod(shape)))
        return lut[idx].reshape(shape)
    # iOS18: indices tensor<uintN, shape>, lut [*groups, NUM_PALETTES, VECTOR_SIZE]
    idx = np.asarray(a.indices).astype(np.int64)
    if lut.ndim != idx.ndim + 2:
        fail(f"constexpr_lut_to_dense (iOS18): LUT rank {lut.ndim} for indices rank {idx.ndim}")
    if lut.shape[-1] != 1:
        fail("constexpr_lut_to_dense with vector palettisation (VECTOR_SIZE > 1) is not implemented")
    groups = lut.shape[:-2]
    gidx = np.zeros(idx.shape, np.int64)
    for d, (n, g) in enumerate(zip(idx.shape, groups)):
        if n % g:
            fail(f"constexpr_lut_to_dense: dimension {n} is not divisible into {g} LUT groups")
        ar = (np.arange(n) // (n // g)).reshape([-1 if i == d else 1 for i in range(idx.ndim)])
        gidx = gidx * g + ar
    table = lut.reshape(-1, lut.shape[-2])
    return table[gidx, idx]


def _constexpr_blockwise_shift_scale(a: Args):
    """output = scale * (data - offset), scale/offset repeated over blocks; computed in the scale's
    dtype, as coremltools' reference decompression does."""
    scale = np.asarray(a.scale)
    data = np.asarray(a.data)
    if scale.ndim != data.ndim:
        fail("constexpr_blockwise_shift_scale: scale rank differs from data rank")

    def blocks(v):
        v = np.asarray(v)
        for axis, (n, m) in enumerate(zip(data.shape, v.shape)):
            if n % m:
                fail(f"constexpr_blockwise_shift_scale: {m} blocks do not divide dimension {n}")
            if n // m > 1:
                v = np.repeat(v, n // m, axis=axis)
        return v

    out = data.astype(scale.dtype)
    if a.opt("offset") is not None:
        out = out - blocks(a.offset)
    return (blocks(scale) * out).astype(scale.dtype)


def _constexpr_cast(a: Args):
    return np.asarray(a.source_val)   # the declared output dtype is applied by the dispatcher


OPS = {
    "conv": op_conv,
    "instance_norm": op_instance_norm,
    "batch_norm": op_batch_norm,
    "pad": op_pad,
    "upsample_nearest_neighbor": op_upsample_nearest_neighbor,
    "avg_pool": lambda a: _pool(a, "avg"),
    "max_pool": lambda a: _pool(a, "max"),
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": op_real_div,
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "relu6": _unary(lambda x: np.minimum(np.maximum(x, 0), 6)),
    "clip": op_clip,
    "sigmoid": _unary(sigmoid),
    "tanh": _unary(np.tanh),
    "rsqrt": op_rsqrt,
    "reduce_mean": op_reduce_mean,
    "concat": op_concat,
    "slice_by_index": op_slice_by_index,
    "reverse": op_reverse,
    "reshape": op_reshape,
    "expand_dims": op_expand_dims,
    "squeeze": op_squeeze,
    "transpose": op_transpose,
    "cast": op_cast,
    "linear": op_linear,
    "matmul": op_matmul,
}
# compile-time ops: evaluated once, when the program is loaded
CONSTEXPR_OPS = {
    "constexpr_affine_dequantize": _constexpr_affine_dequantize,
    "constexpr_lut_to_dense": _constexpr_lut_to_dense,
    "constexpr_blockwise_shift_scale": _constexpr_blockwise_shift_scale,
    "constexpr_cast": _constexpr_cast,
}
IMPLEMENTED_OPS = ("const",) + tuple(CONSTEXPR_OPS) + tuple(OPS)


# --- program loading ----------------------------------------------------------------------------

