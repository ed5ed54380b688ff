"""``coreml-mil``: a reference interpreter for saved CoreML ML programs, on any OS (issue #10).

``MLModel.predict`` runs only on macOS, so on Linux a converted ``.mlpackage`` could only be checked
for "conversion did not crash". This runner reads the package itself and computes its outputs with
numpy, so CI on Linux can check the *numbers* a converted program computes against PyTorch:

- the spec comes from ``coremltools.models.MLModel(path, skip_model_load=True)``; the program is the
  ``main`` function of ``spec.mlProgram`` (its opset block, e.g. ``CoreML6`` for iOS16);
- constants are read from the protobuf (immediate values) or from the package's
  ``weights/weight.bin`` blob file at the recorded offsets (coremltools' own blob reader, through its
  milproto value loader), so a corrupted weight file gives corrupted outputs;
- compile-time ``constexpr_*`` ops (weight compression) are decompressed once at load, the rest of the
  program runs op by op in file order on every ``run``.

Implemented ops (the set the project's converted networks contain — johnson, dumoulin, ghiasi,
magenta-mobile, fp32/fp16, fixed, ``RangeDim`` and ``EnumeratedShapes`` inputs, both pad/norm forms of
``styleport.models.layers`` — plus the weight-compression ops of ``coremltools.optimize.coreml``):

    const, constexpr_affine_dequantize, constexpr_lut_to_dense (iOS16 packed form and iOS18 per-tensor /
    per-grouped scalar form), constexpr_blockwise_shift_scale (iOS18, int4/int8/uint), constexpr_cast,
    conv (1-D/2-D; valid/same/same_lower/custom padding, strides, dilations, groups incl. depthwise),
    instance_norm, batch_norm, pad (constant/reflect/replicate), upsample_nearest_neighbor,
    avg_pool, max_pool (valid/same/same_lower/custom, ceil_mode, exclude_padding_from_average),
    add, sub, mul, real_div, relu, relu6, clip, sigmoid, tanh, rsqrt, reduce_mean, concat (incl.
    interleave), slice_by_index, reverse, reshape, expand_dims, squeeze, transpose, cast, linear, matmul.

Image I/O (``ct.ImageType`` inputs and outputs, e.g. ``styleport export --coreml-io image``): in an ML
program an image feature is a float tensor [1,3,H,W] (or [1,1,H,W] for grayscale) whose values are
the pixels, 0..255, in the ImageType's colour layout; the ImageType's scale and bias are ``mul`` /
``add`` ops that coremltools puts at the start of the program (``NAME__scaled__``,
``NAME__biased__``), so they run like any other op. The runner therefore decodes an image feed the
way Core ML hands a pixel buffer to the program: it takes 8-bit pixels, RGB order, NCHW [1,3,H,W]
(uint8, or whole numbers 0..255 in a float array; [1,1,H,W] for grayscale), reorders the channels
for a BGR layout and passes them as float. For an image output it returns the program's output
tensor, reordered to RGB: by default as float32 on the 0..255 scale, *before* the 8-bit conversion
Core ML applies when it writes the pixel buffer (option ``image_output="float"``), so parity measures
the program's numbers at fp32 precision; ``image_output="pixels"`` returns what a device hands the app,
clipped to [0, 255] and rounded half-to-even to uint8 (Core ML's own rounding mode is not documented;
our exported programs clip to [0, 255] themselves, so only the rounding can differ, by at most one
level). input_specs/output_specs describe image features as dtype uint8 (float32 for a float-mode
output), layout NCHW, range [0, 255], so ``styleport.runtime.adapt`` maps the harness's [0,1]
images to pixels and back.

Semantics follow the MIL op definitions in coremltools (``converters/mil/mil/ops/defs``). Anything else —
another op, a vector-palettised LUT, a 3-D conv, state or list values — raises
:class:`~styleport.runtime.base.RuntimeFailed` (exit 3) naming it; the interpreter never guesses.
Every op's result is checked against the dtype and the static dimensions the program declares for it
(a mismatch is an error, not a silent difference).

Dtype policy: every value is stored in the dtype the program declares (fp16 programs hold fp16
tensors, with the ``cast`` ops at their boundaries). Each float op computes in float32 from its (exact)
fp16 inputs and rounds its result to the declared dtype once: fp16 storage, fp32 arithmetic inside an
op (numpy has no fp16 GEMM/conv worth using, and this keeps results deterministic). Apple's GPU and
Neural Engine may accumulate in fp16 or fuse ops, so a device can differ from these numbers by more
than fp16 rounding. fp32 programs compute in float32 throughout (BLAS sgemm for convolutions).
The ``threads`` option is not used: numpy's BLAS picks its own thread count.

CoreML's older ``neuralNetwork`` models (single ``.mlmodel`` files) run in the sibling interpreter
:mod:`styleport.runtime.coreml_nn`; ``CoreMLMilRunner`` hands them over, so ``coreml-mil`` opens both.

Limitation: this is a reference interpreter of the *program file*, not Apple's runtime. It proves the
converter emitted a program (ops, attributes, weights, compression) that computes the right numbers;
it cannot catch bugs in Apple's MIL compiler, the Neural Engine / GPU kernels, or their fp16
accumulation and operator fusion, and it says nothing about speed. Confirm on a Mac before shipping.
"""

from __future__ import annotations

import math
import os

import numpy as np

from styleport.errors import BadInput
from styleport.runtime.base import Runner, RuntimeFailed, RuntimeUnavailable, TensorSpec

NAME = "coreml-mil (reference interpreter)"

# MIL_pb2.DataType names -> numpy dtype (sub-byte types are unpacked to one byte per element).
_MIL_DTYPES = {
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
_FEATURE_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32",
                   "INT8": "int8"}


def _fail(msg: str):
    raise RuntimeFailed(f"coreml-mil: {msg}")


# --- op helpers ---------------------------------------------------------------------------------

class _Args:
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
                _fail(f"op {self.op_type!r} lacks its input {key!r}")
            return default
        vals = self.values[key]
        if len(vals) != 1:
            _fail(f"op {self.op_type!r} input {key!r} holds {len(vals)} values, expected one")
        return vals[0]

    def opt(self, key, default=None):
        return self.get(key, default, required=False)

    def many(self, key):
        if key not in self.values:
            _fail(f"op {self.op_type!r} lacks its input {key!r}")
        return list(self.values[key])


def _f32(x):
    """Float inputs of an op as float32 (fp16 values are exact in fp32); other dtypes unchanged."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _ints(v):
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _scalar(v):
    return np.asarray(v).reshape(-1)[0].item()


def _same_pads(in_sizes, kernel, strides, dilations, lower: bool):
    pads = []
    for i, k, s, d in zip(in_sizes, kernel, strides, dilations):
        ek = (k - 1) * d + 1
        total = max(0, s * math.ceil(i / s) - i + ek - s)   # coremltools' aggregated_pad
        small, big = total // 2, total - total // 2
        pads.append((big, small) if lower else (small, big))
    return pads


def _spatial_pads(op_type, pad_type, in_sizes, kernel, strides, dilations, pad):
    n = len(in_sizes)
    pad_type = str(pad_type).lower()
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = _ints(pad) if pad is not None else [0] * 2 * n
        if len(p) != 2 * n:
            _fail(f"op {op_type!r}: custom pad has {len(p)} values for {n} spatial dims")
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        return _same_pads(in_sizes, kernel, strides, dilations, pad_type == "same_lower")
    _fail(f"op {op_type!r}: unknown pad_type {pad_type!r}")


# --- ops --------------------------------------------------------------------------------------

def _op_conv(a: _Args):
    x, w = _f32(a.x), _f32(a.weight)
    nsp = x.ndim - 2
    if nsp not in (1, 2) or w.ndim != x.ndim:
        _fail(f"conv with {nsp} spatial dims is not implemented (1-D and 2-D are)")
    strides = _ints(a.opt("strides", [1] * nsp))
    dil = _ints(a.opt("dilations", [1] * nsp))
    groups = int(_scalar(a.opt("groups", 1)))
    pads = _spatial_pads("conv", a.opt("pad_type", "valid"), x.shape[2:], w.shape[2:], strides, dil,
                         a.opt("pad"))
    bias = a.opt("bias")
    if nsp == 1:
        x, w = x[:, :, None, :], w[:, :, None, :]
        strides, dil, pads = [1] + strides, [1] + dil, [(0, 0)] + pads
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    n, c, hp, wp = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups or c // groups != cg:
        _fail(f"conv: weight {w.shape} does not fit input channels {c} with groups {groups}")
    og = o // groups
    (sh, sw), (dh, dw) = strides, dil
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    if ho < 1 or wo < 1:
        _fail(f"conv: input {x.shape} is smaller than the kernel")
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
        out += _f32(bias).reshape(1, o, 1, 1)
    return out[:, :, 0, :] if nsp == 1 else out


def _channel(v, ndim):
    return _f32(v).reshape((1, -1) + (1,) * (ndim - 2))


def _op_instance_norm(a: _Args):
    x = _f32(a.x)
    if x.ndim < 3:
        _fail(f"instance_norm needs rank 3 or more, got {x.ndim}")
    eps = np.float32(_scalar(a.opt("epsilon", 1e-5)))
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


def _op_batch_norm(a: _Args):
    x = _f32(a.x)
    eps = np.float32(_scalar(a.opt("epsilon", 1e-5)))
    y = (x - _channel(a.mean, x.ndim)) / np.sqrt(_channel(a.variance, x.ndim) + eps)
    if a.opt("gamma") is not None:
        y = y * _channel(a.gamma, x.ndim)
    if a.opt("beta") is not None:
        y = y + _channel(a.beta, x.ndim)
    return y


def _op_pad(a: _Args):
    x = _f32(a.x)
    p = _ints(a.pad)
    if len(p) % 2 or len(p) // 2 > x.ndim:
        _fail(f"pad: {len(p)} pad values for a rank-{x.ndim} input")
    if min(p) < 0:
        _fail("pad: negative pad amounts are not implemented")
    k = len(p) // 2
    widths = [(0, 0)] * (x.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k)]
    mode = str(a.opt("mode", "constant"))
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=_scalar(a.opt("constant_val", 0.0)))
    if mode == "reflect":
        for dim, (b, e) in zip(range(x.ndim), widths):
            if max(b, e) > x.shape[dim] - 1:
                _fail(f"pad: reflect pad {max(b, e)} needs a dimension larger than {x.shape[dim]}")
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    _fail(f"pad: mode {mode!r} is not implemented (constant, reflect, replicate)")


def _op_upsample_nearest_neighbor(a: _Args):
    x = _f32(a.x)
    if x.ndim < 3:
        _fail("upsample_nearest_neighbor needs rank 3 or more")
    for axis, key in ((-2, "scale_factor_height"), (-1, "scale_factor_width")):
        s = float(_scalar(a.opt(key, 1)))
        n = x.shape[axis]
        out = int(math.floor(n * s))
        src = np.minimum(np.floor(np.arange(out) / s).astype(np.int64), n - 1)   # nearest, floor
        x = np.take(x, src, axis=axis)
    return x


def _pool(a: _Args, kind: str):
    x = _f32(a.x)
    nsp = x.ndim - 2
    if nsp not in (1, 2):
        _fail(f"{kind}_pool with {nsp} spatial dims is not implemented (1-D and 2-D are)")
    k = _ints(a.kernel_sizes)
    s = _ints(a.opt("strides", [1] * nsp))
    pads = _spatial_pads(f"{kind}_pool", a.opt("pad_type", "valid"), x.shape[2:], k, s, [1] * nsp,
                         a.opt("pad"))
    ceil_mode = bool(_scalar(a.opt("ceil_mode", False)))
    if nsp == 1:
        x = x[:, :, None, :]
        k, s, pads = [1] + k, [1] + s, [(0, 0)] + pads
    outs, extra = [], []
    for n_in, kk, ss, (b, e) in zip(x.shape[2:], k, s, pads):
        span = n_in + b + e - kk
        if span < 0:
            _fail(f"{kind}_pool: input {x.shape} is smaller than the kernel {k}")
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
        exclude = bool(_scalar(a.opt("exclude_padding_from_average", False)))
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
    def op(a: _Args):
        return fn(_f32(a.x), _f32(a.y))
    return op


def _unary(fn):
    def op(a: _Args):
        return fn(_f32(a.x))
    return op


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _op_clip(a: _Args):
    return np.minimum(np.maximum(_f32(a.x), _f32(a.alpha)), _f32(a.beta))


def _op_rsqrt(a: _Args):
    x = _f32(a.x)
    eps = np.asarray(_f32(a.opt("epsilon", np.float32(1e-12))), x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(x + eps)


def _op_real_div(a: _Args):
    with np.errstate(divide="ignore", invalid="ignore"):
        return _f32(a.x) / _f32(a.y)


def _axes(a: _Args, ndim):
    ax = a.opt("axes")
    return None if ax is None else tuple(int(i) % ndim for i in _ints(ax))


def _op_reduce_mean(a: _Args):
    x = _f32(a.x)
    return np.mean(x, axis=_axes(a, x.ndim), keepdims=bool(_scalar(a.opt("keep_dims", False))))


def _op_concat(a: _Args):
    vals = [_f32(v) for v in a.many("values")]
    axis = int(_scalar(a.axis))
    if bool(_scalar(a.opt("interleave", False))):
        ax = axis % vals[0].ndim
        st = np.stack(vals, axis=ax + 1)
        shape = list(vals[0].shape)
        shape[ax] *= len(vals)
        return st.reshape(shape)
    return np.concatenate(vals, axis=axis)


def _op_slice_by_index(a: _Args):
    x = np.asarray(a.x)
    r = x.ndim
    begin, end = _ints(a.begin), _ints(a.end)
    stride = _ints(a.opt("stride", [1] * r))
    bm = [bool(v) for v in np.asarray(a.opt("begin_mask", [False] * r)).reshape(-1)]
    em = [bool(v) for v in np.asarray(a.opt("end_mask", [False] * r)).reshape(-1)]
    sm = [bool(v) for v in np.asarray(a.opt("squeeze_mask", [False] * r)).reshape(-1)]
    if not len(begin) == len(end) == len(stride) == r:
        _fail(f"slice_by_index: begin/end/stride must have {r} entries")
    slices = []
    for i in range(r):   # coremltools' solve_slice_by_index_slice
        if sm[i]:
            slices.append(begin[i] if begin[i] >= 0 else begin[i] + x.shape[i])
            continue
        slices.append(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]))
    return x[tuple(slices)]


def _op_reverse(a: _Args):
    x = np.asarray(a.x)
    ax = _axes(a, x.ndim)
    return np.flip(x, axis=ax if ax is not None else None)


def _op_reshape(a: _Args):
    x = np.asarray(a.x)
    shape = _ints(a.shape)
    if 0 in shape:
        if len(shape) != x.ndim:
            _fail("reshape: 0 in shape needs len(shape) == rank(x)")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    try:
        return x.reshape(shape)
    except ValueError as e:
        _fail(f"reshape: {e}")


def _op_expand_dims(a: _Args):
    x = np.asarray(a.x)
    return np.expand_dims(x, tuple(_ints(a.axes)))


def _op_squeeze(a: _Args):
    x = np.asarray(a.x)
    ax = a.opt("axes")
    return np.squeeze(x) if ax is None else np.squeeze(x, axis=tuple(_ints(ax)))


def _op_transpose(a: _Args):
    return np.transpose(np.asarray(a.x), _ints(a.perm))


def _op_cast(a: _Args):
    dt = str(a.dtype)
    if dt not in _CAST_DTYPES:
        _fail(f"cast to {dt!r} is not implemented")
    return np.asarray(a.x).astype(_CAST_DTYPES[dt])


def _op_linear(a: _Args):
    x, w = _f32(a.x), _f32(a.weight)
    y = x @ w.T
    if a.opt("bias") is not None:
        y = y + _f32(a.bias)
    return y


def _op_matmul(a: _Args):
    x, y = _f32(a.x), _f32(a.y)
    if bool(_scalar(a.opt("transpose_x", False))) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(_scalar(a.opt("transpose_y", False))) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _constexpr_affine_dequantize(a: _Args):
    q = np.asarray(a.quantized_data).astype(np.float32)
    axis = int(_scalar(a.axis)) % q.ndim
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
        _fail(f"constexpr_lut_to_dense: {packed.size} bytes cannot hold {count} {nbits}-bit indices")
    bits = bits[:nbits * count].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


def _constexpr_lut_to_dense(a: _Args):
    lut = np.asarray(a.lut)
    if a.has("shape"):  # iOS16: indices packed LSB-first into uint8, one LUT for the whole tensor
        shape = _ints(a.shape)
        if lut.ndim != 1 or lut.size not in (2, 4, 16, 64, 256):
            _fail(f"constexpr_lut_to_dense (iOS16): LUT of shape {lut.shape}")
        nbits = int(round(math.log2(lut.size)))
        idx = _unpack_bits(a.indices, nbits, int(np.prod(shape)))
        return lut[idx].reshape(shape)
    # iOS18: indices tensor<uintN, shape>, lut [*groups, NUM_PALETTES, VECTOR_SIZE]
    idx = np.asarray(a.indices).astype(np.int64)
    if lut.ndim != idx.ndim + 2:
        _fail(f"constexpr_lut_to_dense (iOS18): LUT rank {lut.ndim} for indices rank {idx.ndim}")
    if lut.shape[-1] != 1:
        _fail("constexpr_lut_to_dense with vector palettisation (VECTOR_SIZE > 1) is not implemented")
    groups = lut.shape[:-2]
    gidx = np.zeros(idx.shape, np.int64)
    for d, (n, g) in enumerate(zip(idx.shape, groups)):
        if n % g:
            _fail(f"constexpr_lut_to_dense: dimension {n} is not divisible into {g} LUT groups")
        ar = (np.arange(n) // (n // g)).reshape([-1 if i == d else 1 for i in range(idx.ndim)])
        gidx = gidx * g + ar
    table = lut.reshape(-1, lut.shape[-2])
    return table[gidx, idx]


def _constexpr_blockwise_shift_scale(a: _Args):
    """output = scale * (data - offset), scale/offset repeated over blocks; computed in the scale's
    dtype, as coremltools' reference decompression does."""
    scale = np.asarray(a.scale)
    data = np.asarray(a.data)
    if scale.ndim != data.ndim:
        _fail("constexpr_blockwise_shift_scale: scale rank differs from data rank")

    def blocks(v):
        v = np.asarray(v)
        for axis, (n, m) in enumerate(zip(data.shape, v.shape)):
            if n % m:
                _fail(f"constexpr_blockwise_shift_scale: {m} blocks do not divide dimension {n}")
            if n // m > 1:
                v = np.repeat(v, n // m, axis=axis)
        return v

    out = data.astype(scale.dtype)
    if a.opt("offset") is not None:
        out = out - blocks(a.offset)
    return (blocks(scale) * out).astype(scale.dtype)


def _constexpr_cast(a: _Args):
    return np.asarray(a.source_val)   # the declared output dtype is applied by the dispatcher


OPS = {
    "conv": _op_conv,
    "instance_norm": _op_instance_norm,
    "batch_norm": _op_batch_norm,
    "pad": _op_pad,
    "upsample_nearest_neighbor": _op_upsample_nearest_neighbor,
    "avg_pool": lambda a: _pool(a, "avg"),
    "max_pool": lambda a: _pool(a, "max"),
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _op_real_div,
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "relu6": _unary(lambda x: np.minimum(np.maximum(x, 0), 6)),
    "clip": _op_clip,
    "sigmoid": _unary(_sigmoid),
    "tanh": _unary(np.tanh),
    "rsqrt": _op_rsqrt,
    "reduce_mean": _op_reduce_mean,
    "concat": _op_concat,
    "slice_by_index": _op_slice_by_index,
    "reverse": _op_reverse,
    "reshape": _op_reshape,
    "expand_dims": _op_expand_dims,
    "squeeze": _op_squeeze,
    "transpose": _op_transpose,
    "cast": _op_cast,
    "linear": _op_linear,
    "matmul": _op_matmul,
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

def _dtype_name(enum_value) -> str:
    from coremltools.proto import MIL_pb2
    return MIL_pb2.DataType.Name(enum_value)


class _Step:
    """One non-const op of the program, ready to run."""

    __slots__ = ("op_type", "fn", "inputs", "outputs", "out_types", "release")

    def __init__(self, op_type, fn, inputs, outputs, out_types):
        self.op_type, self.fn, self.inputs, self.outputs, self.out_types = op_type, fn, inputs, outputs, out_types
        self.release = ()


def _declared_type(op_type, nvt):
    """(numpy dtype, [int or None per dim]) of a NamedValueType; non-tensor types are not implemented."""
    kind = nvt.type.WhichOneof("type")
    if kind != "tensorType":
        _fail(f"op {op_type!r} produces a {kind} value ({nvt.name}); only tensors are implemented")
    tt = nvt.type.tensorType
    name = _dtype_name(tt.dataType)
    if name not in _MIL_DTYPES and name != "STRING":
        _fail(f"op {op_type!r} output {nvt.name!r} has dtype {name}, which is not implemented")
    dims = [d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tt.dimensions]
    return (_MIL_DTYPES.get(name, object), dims if tt.rank == len(dims) else None)


def _conform(op_type, name, value, declared):
    """Cast a result to its declared dtype and check its rank and static dims."""
    dtype, dims = declared
    if dtype is object:
        return value
    value = np.asarray(value)
    if value.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            value = value.astype(dtype)
    if dims is not None:
        if value.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, value.shape)):
            _fail(f"op {op_type!r} computed {name!r} with shape {list(value.shape)}, but the program "
                  f"declares {['?' if d is None else d for d in dims]}")
    return value


class MilProgram:
    """The ``main`` function of a saved ML program, with its constants loaded as numpy arrays."""

    def __init__(self, spec, weights_dir: str | None, function: str = "main"):
        try:
            from coremltools.converters.mil.frontend.milproto.load import TranscriptionContext, _load_value
        except Exception as e:   # pragma: no cover - depends on the coremltools build
            raise RuntimeUnavailable(f"coremltools cannot read ML program values here: {e}") from None
        self._load_value = _load_value
        self._ctx = TranscriptionContext(weights_dir or "")
        if spec.WhichOneof("Type") != "mlProgram":
            _fail(f"the model is a {spec.WhichOneof('Type')}, not an ML program (convert_to='mlprogram')")
        prog = spec.mlProgram
        if function not in prog.functions:
            _fail(f"the program has no function {function!r} (it has {', '.join(prog.functions)})")
        func = prog.functions[function]
        self.opset = func.opset
        if func.opset not in func.block_specializations:
            _fail(f"function {function!r} has no block for its opset {func.opset}")
        block = func.block_specializations[func.opset]
        self.inputs = []   # (name, numpy dtype, dims)
        for nvt in func.inputs:
            if nvt.type.WhichOneof("type") != "tensorType":
                _fail(f"input {nvt.name!r} is a {nvt.type.WhichOneof('type')} (state/list inputs are "
                      "not implemented)")
            dtype, dims = _declared_type("input", nvt)
            self.inputs.append((nvt.name, dtype, dims))
        self.output_names = list(block.outputs)
        self.consts: dict[str, np.ndarray] = {}
        self.steps: list[_Step] = []
        self.op_counts: dict[str, int] = {}
        self.out_types: dict[str, tuple] = {}
        self.int8_weights = False
        input_names = {n for n, _, _ in self.inputs}
        mil_dtypes = {}
        for op in block.operations:
            self.op_counts[op.type] = self.op_counts.get(op.type, 0) + 1
            if op.blocks:
                _fail(f"op {op.type!r} has nested blocks (control flow is not implemented)")
            declared = [_declared_type(op.type, o) for o in op.outputs]
            for o, d in zip(op.outputs, declared):
                self.out_types[o.name] = d
                if o.type.WhichOneof("type") == "tensorType":
                    mil_dtypes[o.name] = _dtype_name(o.type.tensorType.dataType)
            if op.type == "const":
                if "val" not in op.attributes:
                    _fail(f"const {[o.name for o in op.outputs]} has no value")
                self.consts[op.outputs[0].name] = self._value(op.attributes["val"], op.type,
                                                              op.outputs[0].name, declared[0])
                continue
            fn = CONSTEXPR_OPS.get(op.type) or OPS.get(op.type)
            if fn is None:
                _fail(f"op {op.type!r} (output {op.outputs[0].name!r}) is not implemented by the reference "
                      f"interpreter; implemented: {', '.join(sorted(IMPLEMENTED_OPS))}")
            args = {}
            for key, val in op.attributes.items():
                if key != "name":
                    args[key] = [("value", self._value(val, op.type, key))]
            for key, arg in op.inputs.items():
                bound = []
                for b in arg.arguments:
                    if b.WhichOneof("binding") == "name":
                        if b.name not in self.out_types and b.name not in input_names:
                            _fail(f"op {op.type!r} reads {b.name!r}, which is not defined before it")
                        bound.append(("name", b.name))
                    else:
                        bound.append(("value", self._value(b.value, op.type, key)))
                args[key] = bound
            step = _Step(op.type, fn, args, [o.name for o in op.outputs], declared)
            if op.type in ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"):
                key = "quantized_data" if op.type == "constexpr_affine_dequantize" else "data"
                if key in op.attributes:
                    kind = _dtype_name(op.attributes[key].type.tensorType.dataType)
                elif key in op.inputs and op.inputs[key].arguments:
                    b = op.inputs[key].arguments[0]
                    kind = (mil_dtypes.get(b.name) if b.WhichOneof("binding") == "name"
                            else _dtype_name(b.value.type.tensorType.dataType))
                else:
                    kind = None
                if kind in ("INT8", "UINT8"):
                    self.int8_weights = True
            if op.type in CONSTEXPR_OPS:
                if any(kind == "name" and ref not in self.consts for v in args.values() for kind, ref in v):
                    _fail(f"{op.type} {step.outputs[0]!r} reads a non-constant input")
                self.consts.update(self._execute(step, self.consts))
            else:
                self.steps.append(step)
        for name in self.output_names:
            if name not in self.out_types and name not in input_names:
                _fail(f"program output {name!r} is never computed")
        self._plan_release()

    def _value(self, value_spec, op_type, name, declared=None):
        try:
            v = self._load_value(self._ctx, value_spec)
        except Exception as e:
            _fail(f"cannot read a value of op {op_type!r} ({name}): {e}")
        if isinstance(v, str):
            return v
        v = np.asarray(v)
        if declared is not None:
            v = _conform(op_type, name, v, declared)
        return v

    def _plan_release(self):
        """Free each intermediate after its last reader (keeps peak memory near one layer's worth)."""
        last = {}
        for i, step in enumerate(self.steps):
            for vals in step.inputs.values():
                for kind, ref in vals:
                    if kind == "name" and ref not in self.consts:
                        last[ref] = i
        keep = set(self.output_names)
        release = {}
        for name, i in last.items():
            if name not in keep:
                release.setdefault(i, []).append(name)
        for i, step in enumerate(self.steps):
            step.release = tuple(release.get(i, ()))

    @staticmethod
    def _execute(step: _Step, env: dict) -> dict:
        values = {k: [env[ref] if kind == "name" else ref for kind, ref in v] for k, v in step.inputs.items()}
        try:
            with np.errstate(over="ignore"):
                result = step.fn(_Args(step.op_type, values))
        except RuntimeFailed:
            raise
        except Exception as e:
            _fail(f"op {step.op_type!r} ({step.outputs[0]}) failed: {type(e).__name__}: {e}")
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(step.outputs):
            _fail(f"op {step.op_type!r} gave {len(results)} outputs, the program declares {len(step.outputs)}")
        return {name: _conform(step.op_type, name, r, d)
                for name, r, d in zip(step.outputs, results, step.out_types)}

    def run(self, feeds: dict, keep_all: bool = False) -> dict:
        env = dict(self.consts)
        env.update(feeds)
        for step in self.steps:
            env.update(self._execute(step, env))
            if not keep_all:
                for name in step.release:
                    env.pop(name, None)
        if keep_all:
            return {k: v for k, v in env.items() if k not in self.consts}
        return {name: env[name] for name in self.output_names}


# --- the runner ---------------------------------------------------------------------------------

_IMAGE_CHANNELS = {"RGB": 3, "BGR": 3, "GRAYSCALE": 1, "GRAYSCALE_FLOAT16": 1}
IMAGE_OUTPUT_MODES = ("float", "pixels")


def _color_space(feature) -> str:
    img = feature.type.imageType
    return type(img).ColorSpace.Name(img.colorSpace)


def _image_hw(feature) -> tuple[list, list | None]:
    """([H, W] with None for a free side, [(lo, hi) H, (lo, hi) W] or None) of an image feature."""
    img = feature.type.imageType
    flex = img.WhichOneof("SizeFlexibility")
    if flex == "imageSizeRange":
        r = img.imageSizeRange
        ranges = [(r.heightRange.lowerBound, r.heightRange.upperBound),
                  (r.widthRange.lowerBound, r.widthRange.upperBound)]
        return [lo if lo == hi else None for lo, hi in ranges], ranges
    if flex == "enumeratedSizes":
        sizes = [(s.height, s.width) for s in img.enumeratedSizes.sizes]
        return [col[0] if len(set(col)) == 1 else None for col in zip(*sizes)], None
    return [int(img.height), int(img.width)], None


class CoreMLMilRunner(Runner):
    """Run a saved ``.mlpackage`` (ML program) with the numpy reference interpreter, on any OS.

    ``path`` is a ``.mlpackage`` directory (or an already loaded ``coremltools.models.MLModel``).
    Options: ``function`` (default ``main``); ``image_output`` ("float", default, or "pixels": see
    the module docstring). A single-file ``.mlmodel`` (or a loaded neuralNetwork model) opens in the
    sibling interpreter, :class:`styleport.runtime.coreml_nn.CoreMLNNRunner`.
    """

    name = NAME
    runtime = "coreml-mil"
    formats = ("coreml",)

    def __new__(cls, path=None, *args, **kwargs):
        if cls is CoreMLMilRunner:
            from styleport.runtime import coreml_nn
            if coreml_nn.is_neural_network(path):
                return coreml_nn.CoreMLNNRunner(path, *args, **kwargs)
        return super().__new__(cls)

    def _open(self):
        try:
            import coremltools as ct
        except Exception as e:
            raise RuntimeUnavailable(f"coremltools is not importable ({e}); pip install coremltools") from None
        model = self.path
        if not isinstance(model, ct.models.MLModel):
            path = os.fspath(model)
            if not os.path.exists(path):
                raise BadInput(f"no such CoreML model: {path}")
            if not os.path.isdir(path):
                _fail(f"{path} is not an .mlpackage directory (ML programs are saved as packages)")
            try:
                model = ct.models.MLModel(path, skip_model_load=True)
            except Exception as e:
                _fail(f"cannot read {path}: {e}")
        self._spec = model.get_spec()
        weights_dir = getattr(model, "weights_dir", None)
        self._program = MilProgram(self._spec, weights_dir, self.options.get("function", "main"))
        self._desc_in = {f.name: f for f in self._spec.description.input}
        self._image_mode = self.options.get("image_output", "float")
        if self._image_mode not in IMAGE_OUTPUT_MODES:
            raise BadInput(f"coreml-mil: image_output must be one of {IMAGE_OUTPUT_MODES}, got {self._image_mode!r}")
        self._images_in, self._images_out = {}, {}
        for name, _, dims in self._program.inputs:
            f = self._desc_in.get(name)
            kind = f.type.WhichOneof("Type") if f is not None else "multiArrayType"
            if kind == "imageType":
                self._images_in[name] = self._image_feature(f, dims, "input")
            elif kind != "multiArrayType":
                _fail(f"input {name!r} is a {kind}; only tensor (multiArray) and image inputs are implemented")
        for f in self._spec.description.output:
            if f.type.WhichOneof("Type") == "imageType":
                self._images_out[f.name] = self._image_feature(f, self._program.out_types.get(f.name, (None, None))[1],
                                                               "output")

    @staticmethod
    def _image_feature(f, dims, what) -> str:
        space = _color_space(f)
        if space not in _IMAGE_CHANNELS:
            _fail(f"image {what} {f.name!r} has colour space {space}, which is not implemented")
        if dims is not None and (len(dims) != 4 or dims[0] not in (1, None)
                                 or dims[1] not in (_IMAGE_CHANNELS[space], None)):
            _fail(f"image {what} {f.name!r} ({space}) is a program tensor of shape "
                  f"{['?' if d is None else d for d in dims]}, not [1, {_IMAGE_CHANNELS[space]}, H, W]")
        return space

    def _close(self):
        self._program = None

    @property
    def program(self) -> MilProgram:
        self.open()
        return self._program

    def op_counts(self) -> dict:
        """How many ops of each type the program holds (consts and constexprs included)."""
        return dict(self.program.op_counts)

    def input_specs(self) -> list[TensorSpec]:
        specs = []
        for name, dtype, dims in self.program.inputs:
            dims = dims if dims is not None else []
            shape, ranges = [d if d is not None else None for d in dims], None
            f = self._desc_in.get(name)
            if name in self._images_in:
                hw, _ = _image_hw(f)
                specs.append(TensorSpec(name, [1, _IMAGE_CHANNELS[self._images_in[name]]] + hw, "uint8", "NCHW",
                                        [0, 255]))
                continue
            if f is not None:
                arr = f.type.multiArrayType
                dtype_name = _FEATURE_DTYPES.get(
                    type(arr).ArrayDataType.Name(arr.dataType), np.dtype(dtype).name)
                if arr.WhichOneof("ShapeFlexibility") == "shapeRange":
                    ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
                    shape = [lo if lo == hi else None for lo, hi in ranges]
                elif arr.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
                    options = [list(s.shape) for s in arr.enumeratedShapes.shapes]
                    shape = [col[0] if len(set(col)) == 1 else None for col in zip(*options)]
            else:
                dtype_name = np.dtype(dtype).name
            specs.append(TensorSpec(name, shape, dtype_name))
        return specs

    def output_specs(self) -> list[TensorSpec]:
        specs = []
        for name in self.program.output_names:
            dtype, dims = self.program.out_types.get(name, (np.float32, None))
            if name in self._images_out:
                specs.append(TensorSpec(name, list(dims) if dims is not None else [1, 3, None, None],
                                        "uint8" if self._image_mode == "pixels" else "float32", "NCHW", [0, 255]))
                continue
            specs.append(TensorSpec(name, list(dims) if dims is not None else [], np.dtype(dtype).name))
        return specs

    def _check_feed(self, name, value, dtype, dims):
        f = self._desc_in.get(name)
        shape = list(value.shape)
        if dims is not None and (len(dims) != len(shape)
                                 or any(d is not None and d != s for d, s in zip(dims, shape))):
            raise BadInput(f"input {name!r} has shape {shape}; the model wants "
                           f"{['?' if d is None else d for d in dims]}")
        if f is None:
            return
        if name in self._images_in:
            self._check_image(name, value, f)
            return
        arr = f.type.multiArrayType
        flex = arr.WhichOneof("ShapeFlexibility")
        if flex == "shapeRange":
            for s, r in zip(shape, arr.shapeRange.sizeRanges):
                if s < r.lowerBound or (r.upperBound >= 0 and s > r.upperBound):
                    raise BadInput(f"input {name!r} has shape {shape}, outside the model's range "
                                   f"{[(q.lowerBound, q.upperBound) for q in arr.shapeRange.sizeRanges]}")
        elif flex == "enumeratedShapes":
            options = [list(s.shape) for s in arr.enumeratedShapes.shapes]
            if shape not in options:
                raise BadInput(f"input {name!r} has shape {shape}; the model accepts only {options}")
        elif len(arr.shape) and list(arr.shape) != shape:
            raise BadInput(f"input {name!r} has shape {shape}; the model wants {list(arr.shape)}")

    def _check_image(self, name, value, f):
        """An image feed: [1, C, H, W] 8-bit pixels (RGB order) at a size the feature accepts."""
        space = self._images_in[name]
        c = _IMAGE_CHANNELS[space]
        shape = list(value.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != c:
            raise BadInput(f"image input {name!r} ({space}) takes pixels shaped [1, {c}, H, W], got {shape}")
        if value.dtype != np.uint8:
            if value.dtype.kind not in "iuf" or value.size and (
                    not np.all(np.isfinite(value)) or value.min() < 0 or value.max() > 255
                    or np.any(value != np.round(value))):
                raise BadInput(f"image input {name!r} takes 8-bit pixels (uint8, or whole numbers 0..255), "
                               f"got {value.dtype} values that are not")
        hw, ranges = _image_hw(f)
        img = f.type.imageType
        if ranges:
            for s, (lo, hi) in zip(shape[2:], ranges):
                if s < lo or (hi >= 0 and s > hi):
                    raise BadInput(f"image input {name!r} is {shape[2]}x{shape[3]} px, outside the model's "
                                   f"range {ranges} (H, W)")
        elif img.WhichOneof("SizeFlexibility") == "enumeratedSizes":
            sizes = [[s.height, s.width] for s in img.enumeratedSizes.sizes]
            if shape[2:] not in sizes:
                raise BadInput(f"image input {name!r} is {shape[2]}x{shape[3]} px; the model accepts {sizes} (H, W)")
        elif shape[2:] != hw:
            raise BadInput(f"image input {name!r} is {shape[2]}x{shape[3]} px; the model wants {hw[0]}x{hw[1]}")

    def _feeds(self, feeds):
        out = {}
        for name, dtype, dims in self.program.inputs:
            if name not in feeds:
                raise BadInput(f"missing input {name!r} (the model takes "
                               f"{', '.join(n for n, _, _ in self.program.inputs)})")
            value = np.asarray(feeds[name])
            self._check_feed(name, value, dtype, dims)
            if name in self._images_in and self._images_in[name] == "BGR":
                value = value[:, ::-1]   # Core ML hands the program B, G, R planes
            out[name] = np.ascontiguousarray(value.astype(dtype, copy=False))
        extra = set(feeds) - set(out)
        if extra:
            raise BadInput(f"unknown input(s) {', '.join(sorted(extra))}")
        return out

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.program.run(self._feeds(feeds))
        for name, space in self._images_out.items():
            y = np.asarray(out[name], np.float32)
            if space == "BGR":
                y = y[:, ::-1]
            if self._image_mode == "pixels":
                y = np.rint(np.clip(y, 0.0, 255.0)).astype(np.uint8)
            out[name] = np.ascontiguousarray(y)
        return out

    def precision(self) -> str | None:
        """fp16 when the program computes in float16, else fp32; int8 when its weights are stored as
        8-bit linear-quantised values (palettised weights keep their compute precision's name)."""
        prog = self.program
        kinds = {d[0] for step in prog.steps if step.op_type == "conv" for d in step.out_types}
        if prog.int8_weights:
            return "int8"
        if kinds:
            return "fp16" if kinds == {np.float16} else "fp32"
        return None

    def versions(self) -> dict:
        import coremltools as ct
        return {"coremltools": ct.__version__, "numpy": np.__version__}

    def describe(self) -> dict:
        return {"threads": None, "interpreter": "numpy reference (not Apple's runtime)",
                "opset": self.program.opset if self.is_open else None}

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every intermediate value by its program name (to find the first op that drifts)."""
        return self.program.run(self._feeds(feeds), keep_all=True)


# The registry's spelling (styleport.runtime.registry: "coreml-mil" -> CoreMLMILRunner).
CoreMLMILRunner = CoreMLMilRunner
