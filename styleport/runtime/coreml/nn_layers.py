"""The layers of CoreML's ``neuralNetwork`` spec, in numpy: one function per layer kind, the table
``LAYERS`` the network dispatches on. Semantics are read from coremltools'
``mlmodel/format/NeuralNetwork.proto``; convolutions, norms and pads reuse the ML program kernels of
:mod:`.ops`. What is implemented and refused is listed in :mod:`styleport.runtime.coreml.nn`.
"""

from __future__ import annotations

import numpy as np

from styleport.runtime.coreml import ops
from styleport.runtime.runners.base import RuntimeFailed

NAME = ops.NAME

# ArrayFeatureType.ArrayDataType values -> numpy dtype names (0: not given -> float32)
_ARRAY_DTYPES = {0: "float32", 65568: "float32", 65600: "float64", 131104: "int32", 65552: "float16",
                 131080: "int8"}
_COLOR = {10: "GRAYSCALE", 20: "RGB", 30: "BGR", 40: "GRAYSCALE_FLOAT16"}


def _fail(msg: str):
    raise RuntimeFailed(f"coreml-mil: {msg}")


def _mil(fn, op: str, **inputs):
    """Call one of the ML program op kernels of .ops with plain values (its ``Args`` holds one value per name)."""
    return fn(ops.Args(op, {k: [v] for k, v in inputs.items() if v is not None}))


def _default(value, fallback):
    """The proto's "defaults to X if not set or set to 0" rule."""
    return fallback if value == 0 else value


def _pairs(values, default, what, layer):
    v = [int(x) for x in values] or list(default)
    if len(v) != 2:
        layer.fail(f"{what} has {len(v)} values, expected 2 ([H, W])")
    return v


def _borders(amounts, layer, what):
    """BorderAmounts -> (top, bottom, left, right); none given -> zeros."""
    b = list(amounts.borderAmounts)
    if not b:
        return 0, 0, 0, 0
    if len(b) != 2:
        layer.fail(f"{what} has {len(b)} border entries, expected 2 ([H, W])")
    return int(b[0].startEdgeSize), int(b[0].endEdgeSize), int(b[1].startEdgeSize), int(b[1].endEdgeSize)


def _lead(x, layer, rank=4):
    """x [..., C, H, W] -> (x as [N, C, H, W], the leading shape); leading dims act as batch."""
    if x.ndim < rank:
        layer.fail(f"input has rank {x.ndim}, this layer needs rank {rank} or more")
    lead = x.shape[:-3]
    return x.reshape((-1,) + x.shape[-3:]), lead


def _trail(shape, x, layer, what):
    """A parameter of shape [1], [C], [1, H, W] or [C, H, W] broadcast against x's last three dims."""
    shape = [int(s) for s in shape]
    if len(shape) == 1:
        shape = [shape[0], 1, 1]
    if len(shape) != 3:
        layer.fail(f"{what} shape {shape} is not [1], [C], [1, H, W] or [C, H, W]")
    if x.ndim < 3 or any(s not in (1, d) for s, d in zip(shape, x.shape[-3:])):
        layer.fail(f"{what} of shape {shape} does not fit an input of shape {list(x.shape)}")
    return shape


# --- layers ---------------------------------------------------------------------------------------
# Each builder reads one layer's parameters (and loads its weights) once, at open, and returns the
# function that computes its outputs from its input blobs.

def _convolution(L):
    p = L.p
    groups = _default(int(p.nGroups), 1)
    kh, kw = _pairs(p.kernelSize, (3, 3), "kernelSize", L)
    stride = _pairs(p.stride, (1, 1), "stride", L)
    dil = _pairs(p.dilationFactor, (1, 1), "dilationFactor", L)
    cout, kc = int(p.outputChannels), int(p.kernelChannels)
    if len(L.inputs) != 1:
        L.fail("weights given as a second input are not implemented")
    if cout % groups:
        L.fail(f"outputChannels {cout} is not divisible by nGroups {groups}")
    if p.isDeconvolution:
        w = L.weights(p.weights, (kc, cout // groups, kh, kw), "weights", axis=1)
    else:
        w = L.weights(p.weights, (cout, kc, kh, kw), "weights")
    b = L.weights(p.bias, (cout,), "bias") if p.hasBias else None
    pad_kind = p.WhichOneof("ConvolutionPaddingType") or "valid"
    borders = _borders(p.valid.paddingAmounts, L, "paddingAmounts") if pad_kind == "valid" else None
    top_left_heavy = pad_kind == "same" and p.same.asymmetryMode == 1
    out_shape = [int(v) for v in p.outputShape]
    if p.isDeconvolution and dil != [1, 1]:
        L.fail(f"deconvolution with dilationFactor {dil}: the proto says Core ML ignores it, converters "
               "set it; not implemented")
    if out_shape and len(out_shape) != 2:
        L.fail(f"outputShape has {len(out_shape)} values, expected 2")

    def conv(xs):
        x, lead = _lead(xs[0], L)
        c = x.shape[1]
        if p.isDeconvolution:
            if c != kc:
                L.fail(f"input has {c} channels, the deconvolution's kernelChannels is {kc}")
            y = _deconv(x, w, stride, groups, b, borders, top_left_heavy, L, out_shape)
        else:
            if c != kc * groups:
                L.fail(f"input has {c} channels, the layer expects kernelChannels {kc} x nGroups {groups}")
            if borders is not None:
                t, bt, lf, r = borders
                pads = [t, bt, lf, r]
            else:
                pads = [v for pair in ops.same_pads(x.shape[2:], (kh, kw), stride, dil, top_left_heavy)
                        for v in pair]
            y = _mil(ops.op_conv, "convolution", x=x, weight=w, strides=stride, dilations=dil, groups=groups,
                     pad_type="custom", pad=pads, bias=b)
        return y.reshape(lead + y.shape[1:])
    return conv


def _deconv(x, w, stride, groups, bias, borders, top_left_heavy, L, out_shape=()):
    """Transposed convolution: each input pixel scatters its kernel-weighted values into the full
    output ((H-1)*s + k), which is then cropped by the padding amounts (valid) or to H*s (same).

    ``outputShape`` [H_out, W_out] (the proto: it sets the deconvolution's output size, which the
    padding then no longer decides) is the window of that size starting at the top/left crop: one
    larger than the natural size keeps one more row/column at the bottom/right, zeros (then the bias)
    where it runs past the full output. That is how converters write an output padding (torch7's
    SpatialFullConvolution ``adj``, PyTorch's ``output_padding``: fast-neural-style's 361 -> 362), and
    how coremltools' own MIL -> neuralNetwork mapping sets paddingAmounts together with outputShape."""
    n, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = cin // groups
    sh, sw = stride
    full = np.zeros((n, og * groups, (h - 1) * sh + kh, (wd - 1) * sw + kw), np.float32)
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg].reshape(n, cg, h * wd)
        for i in range(kh):
            for j in range(kw):
                tap = w[g * cg:(g + 1) * cg, :, i, j].T @ xg            # [n, og, h*w]
                full[:, g * og:(g + 1) * og, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw] += \
                    tap.reshape(n, og, h, wd)
    if borders is not None:
        t, b, lf, r = borders
    else:   # same: H_out = H_in * stride; the crop mirrors SamePadding's amounts for a convolution
        crops = []
        for size, k, s in ((h, kh, sh), (wd, kw, sw)):
            total = (size - 1) * s + k - size * s
            if total < 0:
                L.fail(f"same-padded deconvolution with kernel {k} < stride {s}: the proto does not define "
                       "where its output is padded")
            small = total // 2
            crops.append((total - small, small) if top_left_heavy else (small, total - small))
        (t, b), (lf, r) = crops
    H, W = full.shape[2:]
    if out_shape:
        ho, wo = out_shape
        if ho < 1 or wo < 1 or t >= H or lf >= W:
            L.fail(f"outputShape {list(out_shape)} with padding amounts {[t, b, lf, r]} leaves no output "
                   f"of the {H}x{W} transposed convolution")
        y = np.zeros((n, full.shape[1], ho, wo), np.float32)
        part = full[:, :, t:t + ho, lf:lf + wo]
        y[:, :, :part.shape[2], :part.shape[3]] = part
    else:
        if t + b >= H or lf + r >= W:
            L.fail(f"padding amounts {[t, b, lf, r]} crop the whole {H}x{W} output")
        y = full[:, :, t:H - b, lf:W - r]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y)


def _batchnorm(L):
    p = L.p
    c = int(p.channels)
    eps = np.float32(_default(p.epsilon, 1e-5))
    gamma = L.weights(p.gamma, (c,), "gamma")
    beta = L.weights(p.beta, (c,), "beta")
    if p.computeMeanVar and not p.instanceNormalization:
        L.fail("batchnorm with batch statistics (computeMeanVar without instanceNormalization) is not "
               "implemented: the proto does not say which variance estimator it uses")
    if not p.computeMeanVar:
        mean = L.weights(p.mean, (c,), "mean")
        var = L.weights(p.variance, (c,), "variance")

    def bn(xs):
        x = xs[0]
        if x.ndim < 3 or x.shape[-3] != c:
            L.fail(f"input of shape {list(x.shape)} has no channel axis (-3) of size {c}")
        x4, lead = _lead(x, L, rank=3)
        if p.computeMeanVar:   # per sample and channel, over H and W (biased variance)
            y = _mil(ops.op_instance_norm, "batchnorm", x=x4, epsilon=eps, gamma=gamma, beta=beta)
        else:
            y = _mil(ops.op_batch_norm, "batchnorm", x=x4, mean=mean, variance=var, epsilon=eps,
                     gamma=gamma, beta=beta)
        return y.reshape(x.shape)
    return bn


def _padding(L):
    p = L.p
    kind = p.WhichOneof("PaddingType")
    if kind is None:
        L.fail("no padding type given (constant, reflection or replication)")
    t, b, lf, r = _borders(p.paddingAmounts, L, "paddingAmounts")
    mode = {"constant": "constant", "reflection": "reflect", "replication": "replicate"}[kind]
    value = np.float32(p.constant.value) if kind == "constant" else None

    def pad(xs):
        x = xs[0]
        if x.ndim < 2:
            L.fail(f"input has rank {x.ndim}, padding needs rank 2 or more")
        return _mil(ops.op_pad, "padding", x=x, pad=[t, b, lf, r], mode=mode, constant_val=value)
    return pad


def _crop(L):
    p = L.p
    if len(L.inputs) == 1:
        t, b, lf, r = _borders(p.cropAmounts, L, "cropAmounts")

        def crop1(xs):
            x = xs[0]
            h, w = x.shape[-2:]
            if t + b >= h or lf + r >= w:
                L.fail(f"crop amounts {[t, b, lf, r]} remove the whole {h}x{w} input")
            return x[..., t:h - b, lf:w - r]
        return crop1
    off = _pairs(p.offset, (0, 0), "offset", L)

    def crop2(xs):
        x, ref = xs
        h, w = x.shape[-2:]
        ho, wo = ref.shape[-2:]
        if off[0] + ho > h or off[1] + wo > w:
            L.fail(f"offset {off} + reference size {[ho, wo]} exceeds the input's {[h, w]}")
        return x[..., off[0]:off[0] + ho, off[1]:off[1] + wo]
    return crop2


def _bilinear_axis(x, axis, n_out, mode):
    """Resample one axis with UpsampleLayerParams' LinearUpsampleMode grid (0 DEFAULT, 1 ALIGN_CORNERS_TRUE,
    2 ALIGN_CORNERS_FALSE), then linear interpolation between the two nearest input samples."""
    n_in = x.shape[axis]
    i = np.arange(n_out, dtype=np.float64)
    if mode == 0:
        spacing = (n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else 0.0
        grid = i * spacing
    elif mode == 1:
        grid = i * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        spacing = n_in / n_out
        grid = i * spacing + 0.5 * spacing - 0.5
    grid = np.clip(grid, 0, n_in - 1)
    lo = np.floor(grid).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (grid - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    frac = frac.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def _upsample(L):
    p = L.p
    if p.scalingFactor and p.fractionalScalingFactor:
        L.fail("both scalingFactor and fractionalScalingFactor are set (they are mutually exclusive)")
    if p.fractionalScalingFactor:
        f = [float(v) for v in p.fractionalScalingFactor]
        if len(f) != 2:
            L.fail(f"fractionalScalingFactor has {len(f)} values, expected 2")
        if any(v != round(v) or v < 1 for v in f):
            L.fail(f"fractional upsampling factors {f}: the proto does not define the output size; "
                   "only whole factors are implemented")
        sh, sw = (int(round(v)) for v in f)
    else:
        sh, sw = _pairs(p.scalingFactor, (1, 1), "scalingFactor", L)
    if sh < 1 or sw < 1:
        L.fail(f"scaling factors {[sh, sw]} must be >= 1")
    bilinear = p.mode == 1
    lin_mode = int(p.linearUpsampleMode)
    if not bilinear and lin_mode:
        L.fail("linearUpsampleMode is set on a nearest-neighbour upsample")

    def up(xs):
        x = xs[0]
        if x.ndim < 3:
            L.fail(f"input has rank {x.ndim}, upsample needs rank 3 or more")
        if bilinear:
            y = _bilinear_axis(x, x.ndim - 2, x.shape[-2] * sh, lin_mode)
            return _bilinear_axis(y, x.ndim - 1, x.shape[-1] * sw, lin_mode)
        return np.repeat(np.repeat(x, sh, axis=-2), sw, axis=-1)
    return up


def _activation(L):
    p = L.p
    kind = p.WhichOneof("NonlinearityType")
    a = getattr(p, kind) if kind else None
    fns = {
        "ReLU": lambda x: np.maximum(x, 0),
        "leakyReLU": lambda x: np.where(x >= 0, x, np.float32(a.alpha) * x),
        "linear": lambda x: np.float32(a.alpha) * x + np.float32(a.beta),
        "sigmoid": ops.sigmoid,
        "tanh": np.tanh,
        "scaledTanh": lambda x: np.float32(a.alpha) * np.tanh(np.float32(a.beta) * x),
        "ELU": lambda x: np.where(x >= 0, x, np.float32(a.alpha) * np.expm1(np.minimum(x, 0))),
    }
    if kind not in fns:
        L.fail(f"activation {kind!r} is not implemented by the reference interpreter "
               f"(implemented: {', '.join(fns)})")
    fn = fns[kind]
    return lambda xs: fn(xs[0])


def _broadcast_inputs(xs, L):
    """The proto's limited broadcasting ([B,1,1,1], [B,C,1,1], [B,1,H,W] against [B,C,H,W]): shapes align
    from the last axis (the proto names axes from the end) and the result must have the shape of the
    largest input; anything else is refused."""
    try:
        out = np.broadcast_shapes(*(x.shape for x in xs))
    except ValueError:
        L.fail(f"input shapes {[list(x.shape) for x in xs]} do not broadcast")
    if not any(x.shape == out for x in xs):
        L.fail(f"input shapes {[list(x.shape) for x in xs]} broadcast to {list(out)}, the shape of none of them")
    return out


def _add(L):
    alpha = np.float32(L.p.alpha)

    def add(xs):
        if len(xs) == 1:
            return xs[0] + alpha
        _broadcast_inputs(xs, L)
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out
    return add


def _multiply(L):
    alpha = np.float32(L.p.alpha)

    def mul(xs):
        if len(xs) == 1:
            return xs[0] * alpha
        _broadcast_inputs(xs, L)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out
    return mul


def _scale(L):
    p = L.p
    shape_s = [int(s) for s in p.shapeScale] or [1]
    scale = L.weights(p.scale, (int(np.prod(shape_s)),), "scale")
    shape_b = [int(s) for s in p.shapeBias] or [1]
    bias = L.weights(p.bias, (int(np.prod(shape_b)),), "bias") if p.hasBias else None

    def sc(xs):
        x = xs[0]
        y = x * scale.reshape(_trail(shape_s, x, L, "scale"))
        if bias is not None:
            y = y + bias.reshape(_trail(shape_b, x, L, "bias"))
        return y
    return sc


def _bias(L):
    shape = [int(s) for s in L.p.shape] or [1]
    bias = L.weights(L.p.bias, (int(np.prod(shape)),), "bias")
    return lambda xs: xs[0] + bias.reshape(_trail(shape, xs[0], L, "bias"))


def _load_constant(L):
    shape = [int(s) for s in L.p.shape]
    if len(shape) != 3:
        L.fail(f"loadConstant shape {shape} must be [C, H, W]")
    data = L.weights(L.p.data, tuple(shape), "data").reshape([1, 1] + shape)
    return lambda xs: data


def _load_constant_nd(L):
    shape = [int(s) for s in L.p.shape]
    if not shape:
        L.fail("loadConstantND has no shape")
    data = L.weights(L.p.data, tuple(shape), "data")
    return lambda xs: data


def _permute(L):
    axis = [int(a) for a in L.p.axis] or [0, 1, 2, 3]
    if sorted(axis) != [0, 1, 2, 3]:
        L.fail(f"permute axis {axis} is not a permutation of [0, 1, 2, 3]")
    dims = [0, 2, 3, 4]   # axis indexes [Seq, C, H, W]; Batch (dim 1) stays
    order = [dims[axis[0]], 1, dims[axis[1]], dims[axis[2]], dims[axis[3]]]

    def perm(xs):
        if xs[0].ndim != 5:
            L.fail(f"permute needs a rank-5 input, got rank {xs[0].ndim}")
        return np.ascontiguousarray(np.transpose(xs[0], order))
    return perm


_REDUCE_AXES = {0: (-3, -2, -1), 1: (-2, -1), 2: (-3,), 3: (-2,), 4: (-1,)}


def _reduce(L):
    p = L.p
    mode = type(p).ReduceOperation.Name(p.mode)
    axes = _REDUCE_AXES[int(p.axis)]
    eps = np.float32(_default(p.epsilon, 1e-6))
    if mode == "ARGMAX" and len(axes) != 1:
        L.fail("ARGMAX reduces over one axis (C, H or W) only")

    def red(xs):
        x = xs[0]
        if x.ndim < len(axes) or (len(axes) == 1 and x.ndim < -axes[0]):
            L.fail(f"input of rank {x.ndim} lacks the axes {list(axes)}")
        ax = tuple(a % x.ndim for a in axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            if mode == "ARGMAX":
                return np.expand_dims(np.argmax(x, axis=ax[0]).astype(np.float32), ax[0])
            fn = {"SUM": lambda v: v.sum(ax, keepdims=True),
                  "AVG": lambda v: v.mean(ax, keepdims=True),
                  "PROD": lambda v: v.prod(ax, keepdims=True),
                  "LOGSUM": lambda v: np.log(v + eps).sum(ax, keepdims=True),
                  "SUMSQUARE": lambda v: (v * v).sum(ax, keepdims=True),
                  "L1": lambda v: np.abs(v).sum(ax, keepdims=True),
                  "L2": lambda v: np.sqrt((v * v).sum(ax, keepdims=True)),
                  "MAX": lambda v: v.max(ax, keepdims=True),
                  "MIN": lambda v: v.min(ax, keepdims=True)}[mode]
            return fn(x)
    return red


def _unary(L):
    p = L.p
    op = type(p).Operation.Name(p.type)
    alpha = np.float32(p.alpha)
    eps = np.float32(_default(p.epsilon, 1e-6))
    shift = np.float32(p.shift)
    scale = np.float32(_default(p.scale, 1.0))
    fn = {"SQRT": np.sqrt, "RSQRT": lambda v: 1 / np.sqrt(v + eps), "INVERSE": lambda v: 1 / (v + eps),
          "POWER": lambda v: np.power(v, alpha), "EXP": np.exp, "LOG": np.log, "ABS": np.abs,
          "THRESHOLD": lambda v: np.maximum(v, alpha)}[op]

    def un(xs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(scale * xs[0] + shift)
    return un


# layer kind -> (builder, min inputs, max inputs)
LAYERS = {
    "convolution": (_convolution, 1, 2),
    "batchnorm": (_batchnorm, 1, 1),
    "padding": (_padding, 1, 1),
    "crop": (_crop, 1, 2),
    "upsample": (_upsample, 1, 1),
    "activation": (_activation, 1, 1),
    "add": (_add, 1, None),
    "multiply": (_multiply, 1, None),
    "scale": (_scale, 1, 1),
    "bias": (_bias, 1, 1),
    "loadConstant": (_load_constant, 0, 0),
    "loadConstantND": (_load_constant_nd, 0, 0),
    "permute": (_permute, 1, 1),
    "reduce": (_reduce, 1, 1),
    "unary": (_unary, 1, 1),
}
IMPLEMENTED_LAYERS = tuple(LAYERS)


