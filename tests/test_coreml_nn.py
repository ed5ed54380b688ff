"""coreml-mil on CoreML neuralNetwork models (issue #16): .mlmodel files the project writes itself with
coremltools' NeuralNetworkBuilder (and with coremltools' own torch converter), computed on Linux.

- every implemented layer, with odd sizes and batch 2, against PyTorch (or numpy where torch has no
  twin); fp32: max abs <= 1e-4;
- an unimplemented layer or activation is exit 3 naming it, also through the CLI; a layer whose
  recorded outputTensor disagrees and a description whose output shape disagrees are caught;
- a deconvolution's outputShape one larger than its padding gives (fast-neural-style's 361 -> 362) is
  honoured, against PyTorch's conv_transpose2d with output_padding;
- image inputs (channelScale, per-channel bias, BGR, grayscale, mean image) and image outputs;
- flexible sizes (shape range, enumerated image sizes); weights stored as fp16 and as 8/6/4-bit
  quantized values (coremltools' quantize_weights): PSNR against PyTorch;
- a Johnson-layout network (c9s1-32, d64, d128, residual blocks, upsample+conv, c9s1-3, reflection
  pad, instance norm; width 0.25) built layer by layer from styleport's TransformerNet weights, against
  its PyTorch twin and, through the CLI, against the twin's ONNX export (parity exit 0; a changed
  weight: exit 1), plus bench and inspect on the file.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools")

from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder  # noqa: E402
from coremltools.proto import FeatureTypes_pb2  # noqa: E402

from conftest import run_cli  # noqa: E402
from styleport.cli import main  # noqa: E402
from styleport.errors import EXIT_CONVERSION, BadInput  # noqa: E402
from styleport.models.presets import build, default_config  # noqa: E402
from styleport.runtime.runners.base import RuntimeFailed  # noqa: E402
from styleport.runtime.coreml.runner import CoreMLMilRunner  # noqa: E402
from styleport.runtime.coreml.nn import IMPLEMENTED_LAYERS, CoreMLNNRunner  # noqa: E402

TOL = 1e-4
C, H, W = 4, 7, 9          # odd sizes
B = 2                      # batch fed as [B, C, H, W] to the rank-5 networks


def rnd(*shape, lo=-1.0, hi=1.0, seed=0):
    return (np.random.default_rng(seed).random(shape, dtype=np.float32) * (hi - lo) + lo).astype(np.float32)


def max_abs(a, b) -> float:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float("nan") if not np.isfinite(d).all() else float(d.max())


def builder(inputs, output="y", exact=False):
    """A NeuralNetworkBuilder with float32 multiArray I/O. ``inputs``: {name: shape}."""
    b = NeuralNetworkBuilder([(n, datatypes.Array(*s)) for n, s in inputs.items()], [(output, None)],
                             disable_rank5_shape_mapping=exact)
    for f in list(b.spec.description.input) + list(b.spec.description.output):
        f.type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    return b


def save(b_or_spec, path):
    spec = getattr(b_or_spec, "spec", b_or_spec)
    ct.utils.save_spec(spec, str(path))
    return path


def run(model, feeds):
    with CoreMLMilRunner(model) as r:
        assert isinstance(r, CoreMLNNRunner)
        return r.run(feeds)


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


# --- one layer at a time --------------------------------------------------------------------------
# Each case: (build(builder) -> None, feeds {name: [B, C, H, W] array}, expected(feeds) -> array,
# layer kinds it must hold). Inputs are declared [C, H, W] (rank-5 mapping, as spec versions 1-3)
# unless the case sets its own shapes.

def conv_w(cout, cin, k, seed=1):
    return rnd(cout, cin, *k, seed=seed) * 0.5


def _conv_case(stride=(1, 1), dil=(1, 1), pads=(0, 0, 0, 0), groups=1, k=(3, 3), cout=6, same=None):
    w = conv_w(cout, C // groups, k)
    bias = rnd(cout, seed=2)

    def make(b):
        b.add_convolution("conv", C // groups, cout, k[0], k[1], stride[0], stride[1],
                          "same" if same else "valid", groups, w.transpose(2, 3, 1, 0), bias, True,
                          input_name="x", output_name="y", dilation_factors=list(dil),
                          padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3],
                          same_padding_asymmetry_mode=same or "BOTTOM_RIGHT_HEAVY")

    def want(f):
        x = t(f["x"])
        p = pads
        if same:
            tot = [max(0, (-(-n // s) - 1) * s + (kk - 1) * d + 1 - n) for n, s, kk, d in zip((H, W), stride, k, dil)]
            lo = [v // 2 if same == "BOTTOM_RIGHT_HEAVY" else v - v // 2 for v in tot]
            p = (lo[0], tot[0] - lo[0], lo[1], tot[1] - lo[1])
        x = F.pad(x, (p[2], p[3], p[0], p[1]))
        return F.conv2d(x, t(w), t(bias), stride=stride, dilation=dil, groups=groups).numpy()
    return make, want


def _deconv_case(stride=(2, 2), pads=(0, 0, 0, 0), groups=1, k=(3, 3), cout=6, same=None, out_shape=True,
                 torch_pad=0, torch_crop=None):
    w = rnd(C, cout // groups, *k, seed=3) * 0.5
    bias = rnd(cout, seed=4)
    if same:
        oshape = [H * stride[0], W * stride[1]]
    else:
        oshape = [(n - 1) * s + kk - a - b for n, s, kk, a, b in zip((H, W), stride, k, pads[::2], pads[1::2])]

    def make(b):
        b.add_convolution("deconv", C, cout, k[0], k[1], stride[0], stride[1], "same" if same else "valid",
                          groups, w.transpose(2, 3, 0, 1), bias, True, is_deconv=True,
                          output_shape=oshape if out_shape else None, input_name="x", output_name="y",
                          padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3],
                          same_padding_asymmetry_mode=same or "BOTTOM_RIGHT_HEAVY")

    def want(f):
        y = F.conv_transpose2d(t(f["x"]), t(w), t(bias), stride=stride, padding=torch_pad, groups=groups).numpy()
        return y if torch_crop is None else y[:, :, torch_crop[0], torch_crop[1]]
    return make, want


def _bn_case(instance, eps=1e-3):
    gamma, beta = rnd(C, lo=0.5, hi=1.5, seed=5), rnd(C, seed=6)
    mean, var = rnd(C, seed=7), rnd(C, lo=0.5, hi=2.0, seed=8)

    def make(b):
        b.add_batchnorm("bn", C, gamma, beta, None if instance else mean, None if instance else var, "x", "y",
                        compute_mean_var=instance, instance_normalization=instance, epsilon=eps)

    def want(f):
        x = t(f["x"])
        if instance:
            return F.instance_norm(x, weight=t(gamma), bias=t(beta), eps=eps or 1e-5).numpy()
        return F.batch_norm(x, t(mean), t(var), t(gamma), t(beta), eps=eps or 1e-5).numpy()
    return make, want


def _pad_case(mode, value=0.0):
    tb, lr = (2, 1), (0, 3)

    def make(b):
        b.add_padding("pad", left=lr[0], right=lr[1], top=tb[0], bottom=tb[1], value=value, input_name="x",
                      output_name="y", padding_type=mode)

    def want(f):
        m = {"constant": "constant", "reflection": "reflect", "replication": "replicate"}[mode]
        kw = {"value": value} if mode == "constant" else {}
        return F.pad(t(f["x"]), (*lr, *tb), mode=m, **kw).numpy()
    return make, want


def _bilinear_default(x, sh, sw):
    """UpsampleLayerParams DEFAULT grid, pixel by pixel: source = min(X-1, i * (X - X/Xout) / (Xout-1))."""
    n, c, h, w = x.shape
    ho, wo = h * sh, w * sw
    out = np.zeros((n, c, ho, wo), np.float64)
    for i in range(ho):
        gi = min(h - 1, i * (h - h / ho) / (ho - 1))
        i0, fi = int(np.floor(gi)), gi - np.floor(gi)
        i1 = min(i0 + 1, h - 1)
        for j in range(wo):
            gj = min(w - 1, j * (w - w / wo) / (wo - 1))
            j0, fj = int(np.floor(gj)), gj - np.floor(gj)
            j1 = min(j0 + 1, w - 1)
            out[:, :, i, j] = ((1 - fi) * (1 - fj) * x[:, :, i0, j0] + (1 - fi) * fj * x[:, :, i0, j1]
                               + fi * (1 - fj) * x[:, :, i1, j0] + fi * fj * x[:, :, i1, j1])
    return out


def _upsample_case(mode, sh, sw, lin="DEFAULT"):
    def make(b):
        b.add_upsample("up", sh, sw, "x", "y", mode=mode, linear_upsample_mode=lin)

    def want(f):
        x = f["x"]
        if mode == "NN":
            return F.interpolate(t(x), scale_factor=(sh, sw), mode="nearest").numpy()
        if lin == "DEFAULT":
            return _bilinear_default(x, sh, sw)
        return F.interpolate(t(x), scale_factor=(sh, sw), mode="bilinear",
                             align_corners=lin == "ALIGN_CORNERS_TRUE").numpy()
    return make, want


ACTIVATIONS = {
    "RELU": (None, torch.relu),
    "LEAKYRELU": ([0.1], lambda x: F.leaky_relu(x, 0.1)),
    "LINEAR": ([2.0, -0.5], lambda x: 2.0 * x - 0.5),
    "SIGMOID": (None, torch.sigmoid),
    "TANH": (None, torch.tanh),
    "SCALED_TANH": ([1.5, 0.7], lambda x: 1.5 * torch.tanh(0.7 * x)),
    "ELU": (0.8, lambda x: F.elu(x, 0.8)),
}


def _act_case(kind):
    params, fn = ACTIVATIONS[kind]

    def make(b):
        b.add_activation("act", kind, "x", "y", params=params)
    return make, lambda f: fn(t(f["x"])).numpy()


def _elementwise_case(mode, n_inputs, alpha=None):
    def make(b):
        b.add_elementwise("op", ["x", "z", "x"][:n_inputs], "y", mode, alpha=alpha)

    def want(f):
        x, z = f["x"], f.get("z")
        if n_inputs == 1:
            return x + alpha if mode == "ADD" else x * alpha
        if n_inputs == 2:
            return x + z if mode == "ADD" else x * z
        return x + z + x if mode == "ADD" else x * z * x
    return make, want


def _scale_case(shape_s, shape_b):
    s = rnd(int(np.prod(shape_s)), seed=9)
    bias = rnd(int(np.prod(shape_b)), seed=10) if shape_b else None

    def make(b):
        b.add_scale("scale", s, bias, bias is not None, "x", "y", shape_scale=shape_s, shape_bias=shape_b or None)

    def want(f):
        r = (lambda v, shp: v.reshape(shp if len(shp) == 3 else (shp[0], 1, 1)))
        y = f["x"] * r(s, shape_s)
        return y + r(bias, shape_b) if bias is not None else y
    return make, want


def _bias_case(shape):
    v = rnd(int(np.prod(shape)), seed=11)

    def make(b):
        b.add_bias("bias", v, "x", "y", shape_bias=shape)
    return make, lambda f: f["x"] + v.reshape(shape if len(shape) == 3 else (shape[0], 1, 1))


def _const_case():
    k = rnd(C, H, W, seed=12)

    def make(b):
        b.add_load_constant("k", "k", k, [C, H, W])
        b.add_elementwise("op", ["x", "k"], "y", "MULTIPLY")
    return make, lambda f: f["x"] * k


def _const_nd_case():
    k = rnd(1, C, 1, W, seed=13)

    def make(b):
        b.add_load_constant_nd("k", "k", k, [1, C, 1, W])
        b.add_elementwise("op", ["x", "k"], "y", "ADD")
    return make, lambda f: f["x"] + k


def _permute_case(axis):
    def make(b):
        b.add_permute("perm", axis, "x", "y")

    def want(f):   # the runner shows rank-5 blobs [Seq=1, B, C, H, W] as [B, C, H, W]
        x5 = f["x"][None]
        order = [[0, 2, 3, 4][axis[0]], 1] + [[0, 2, 3, 4][a] for a in axis[1:]]
        y = np.transpose(x5, order)
        return y[0] if y.shape[0] == 1 else y
    return make, want


REDUCE = {"sum": lambda x, a: x.sum(a, keepdim=True), "avg": lambda x, a: x.mean(a, keepdim=True),
          "prod": lambda x, a: x.prod(a[0], keepdim=True) if len(a) == 1 else x.flatten(-len(a)).prod(
              -1).reshape(x.shape[:-len(a)] + (1,) * len(a)),
          "logsum": lambda x, a: torch.log(x + 1e-6).sum(a, keepdim=True),
          "sumsquare": lambda x, a: (x * x).sum(a, keepdim=True), "L1": lambda x, a: x.abs().sum(a, keepdim=True),
          "L2": lambda x, a: x.square().sum(a, keepdim=True).sqrt(),
          "max": lambda x, a: x.amax(a, keepdim=True), "min": lambda x, a: x.amin(a, keepdim=True),
          "argmax": lambda x, a: x.argmax(a[0], keepdim=True).float()}
AXES = {"CHW": (-3, -2, -1), "HW": (-2, -1), "C": (-3,), "H": (-2,), "W": (-1,)}


def _reduce_case(mode, axis):
    def make(b):   # positive inputs (logsum, prod): x * 0.5 + 1 first
        b.add_activation("shift", "LINEAR", "x", "x1", params=[0.5, 1.0])
        b.add_reduce("red", "x1", "y", axis, mode)
    return make, lambda f: REDUCE[mode](t(f["x"] * 0.5 + 1.0), AXES[axis]).numpy()


UNARY = {"sqrt": lambda v: v.sqrt(), "rsqrt": lambda v: 1 / (v + 1e-3).sqrt(), "inverse": lambda v: 1 / (v + 1e-3),
         "power": lambda v: v ** 1.7, "exp": torch.exp, "log": torch.log, "abs": torch.abs,
         "threshold": lambda v: torch.clamp(v, min=1.7)}


def _unary_case(mode):
    def make(b):   # x is in [-1, 1]: the layer's own shift maps it to [0.5, 2.5] first
        b.add_unary("un", "x", "y", mode, alpha=1.7, shift=1.5, scale=1.0, epsilon=1e-3)

    return make, lambda f: UNARY[mode](t(f["x"]) + 1.5).numpy()


def _crop_case(two):
    def make(b):
        if two:
            b.add_crop("crop", 0, 0, 0, 0, [1, 2], ["x", "z"], "y")
        else:
            b.add_crop("crop", left=2, right=1, top=1, bottom=3, offset=[0, 0], input_names=["x"], output_name="y")
    return make, (lambda f: f["x"][:, :, 1:1 + 4, 2:2 + 5]) if two else (lambda f: f["x"][:, :, 1:H - 3, 2:W - 1])


LAYER_CASES = {
    "conv_valid_pads_stride_dil": (_conv_case(stride=(2, 1), dil=(1, 2), pads=(1, 2, 0, 1)), {"convolution"}),
    "conv_same_bottom_right": (_conv_case(stride=(2, 2), k=(4, 3), same="BOTTOM_RIGHT_HEAVY"), {"convolution"}),
    "conv_same_top_left": (_conv_case(stride=(2, 3), k=(4, 2), same="TOP_LEFT_HEAVY"), {"convolution"}),
    "conv_groups": (_conv_case(groups=2, k=(3, 5), cout=6), {"convolution"}),
    "conv_depthwise": (_conv_case(groups=C, k=(3, 3), cout=2 * C, pads=(1, 1, 1, 1)), {"convolution"}),
    "deconv_valid_pad1": (_deconv_case(pads=(1, 1, 1, 1), torch_pad=1), {"convolution"}),
    "deconv_output_padding": (_deconv_case(pads=(1, 0, 1, 0), out_shape=True,
                                           torch_crop=(slice(1, None), slice(1, None))), {"convolution"}),
    "deconv_groups_no_outshape": (_deconv_case(stride=(2, 3), groups=2, cout=6, out_shape=False), {"convolution"}),
    "deconv_same_even": (_deconv_case(k=(4, 4), same="BOTTOM_RIGHT_HEAVY", torch_pad=1), {"convolution"}),
    "deconv_same_odd_bottom_right": (_deconv_case(same="BOTTOM_RIGHT_HEAVY",
                                                  torch_crop=(slice(0, 2 * H), slice(0, 2 * W))), {"convolution"}),
    "deconv_same_odd_top_left": (_deconv_case(same="TOP_LEFT_HEAVY", torch_crop=(slice(1, None), slice(1, None))),
                                 {"convolution"}),
    "batchnorm": (_bn_case(False), {"batchnorm"}),
    "batchnorm_default_eps": (_bn_case(False, eps=0.0), {"batchnorm"}),
    "instance_norm": (_bn_case(True), {"batchnorm"}),
    "pad_reflection": (_pad_case("reflection"), {"padding"}),
    "pad_replication": (_pad_case("replication"), {"padding"}),
    "pad_constant": (_pad_case("constant", 0.5), {"padding"}),
    "crop_amounts": (_crop_case(False), {"crop"}),
    "crop_reference": (_crop_case(True), {"crop"}),
    "upsample_nn": (_upsample_case("NN", 2, 3), {"upsample"}),
    "upsample_bilinear_default": (_upsample_case("BILINEAR", 2, 3), {"upsample"}),
    "upsample_bilinear_align_true": (_upsample_case("BILINEAR", 3, 2, "ALIGN_CORNERS_TRUE"), {"upsample"}),
    "upsample_bilinear_align_false": (_upsample_case("BILINEAR", 2, 2, "ALIGN_CORNERS_FALSE"), {"upsample"}),
    **{f"act_{k.lower()}": (_act_case(k), {"activation"}) for k in ACTIVATIONS},
    "add_two_broadcast": (_elementwise_case("ADD", 2), {"add"}),
    "add_three": (_elementwise_case("ADD", 3), {"add"}),
    "add_alpha": (_elementwise_case("ADD", 1, alpha=0.75), {"add"}),
    "multiply_two_broadcast": (_elementwise_case("MULTIPLY", 2), {"multiply"}),
    "multiply_alpha": (_elementwise_case("MULTIPLY", 1, alpha=-1.5), {"multiply"}),
    "scale_c_bias_c": (_scale_case([C], [C]), {"scale"}),
    "scale_1": (_scale_case([1], []), {"scale"}),
    "scale_chw_bias_1hw": (_scale_case([C, H, W], [1, H, W]), {"scale"}),
    "bias_c": (_bias_case([C]), {"bias"}),
    "bias_1hw": (_bias_case([1, H, W]), {"bias"}),
    "load_constant": (_const_case(), {"loadConstant", "multiply"}),
    "permute_seq_w_c_h": (_permute_case([0, 3, 1, 2]), {"permute"}),
    "permute_seq_w_h_c": (_permute_case([0, 3, 2, 1]), {"permute"}),
    **{f"reduce_{m.lower()}_{a}": (_reduce_case(m, a), {"reduce"})
       for m, a in [("sum", "CHW"), ("avg", "HW"), ("prod", "W"), ("logsum", "C"), ("sumsquare", "H"),
                    ("L1", "HW"), ("L2", "CHW"), ("max", "C"), ("min", "HW"), ("argmax", "H"), ("argmax", "C")]},
    **{f"unary_{m}": (_unary_case(m), {"unary"}) for m in UNARY},
}
# cases with inputs other than x [C, H, W] (rank-5 mapping): name -> {input: shape}
INPUTS = {"add_two_broadcast": {"x": (C, H, W), "z": (C, 1, 1)}, "add_three": {"x": (C, H, W), "z": (1, H, W)},
          "multiply_two_broadcast": {"x": (C, H, W), "z": (1, H, W)},
          "crop_reference": {"x": (C, H, W), "z": (C, 4, 5)}}
# cases with EXACT_ARRAY_MAPPING (spec version 4): name -> {input: shape}
EXACT = {"load_constant_nd": {"x": (B, C, H, W)}}
LAYER_CASES["load_constant_nd"] = (_const_nd_case(), {"loadConstantND", "add"})


def _case_model(name, tmp_path):
    (make, want), kinds = LAYER_CASES[name]
    shapes = EXACT.get(name) or INPUTS.get(name, {"x": (C, H, W)})
    b = builder(shapes, exact=name in EXACT)
    make(b)
    feeds = {n: rnd(*((B,) + s if name not in EXACT else s), seed=20 + i) for i, (n, s) in enumerate(shapes.items())}
    return save(b, tmp_path / f"{name}.mlmodel"), feeds, want, kinds


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_matches_reference(name, tmp_path):
    path, feeds, want, kinds = _case_model(name, tmp_path)
    with CoreMLMilRunner(path) as r:
        assert kinds <= set(r.op_counts()), r.op_counts()
        got = r.run(feeds)["y"]
    ref = np.asarray(want(feeds))
    assert got.dtype == np.float32
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    assert max_abs(got, ref) <= TOL * scale, max_abs(got, ref)


def test_every_implemented_layer_is_tested(tmp_path):
    kinds = set().union(*(k for _, k in LAYER_CASES.values()))
    assert set(IMPLEMENTED_LAYERS) <= kinds, set(IMPLEMENTED_LAYERS) - kinds


def test_rank5_feed_forms_and_output_dtype(tmp_path):
    """[C,H,W], [B,C,H,W] and [Seq,B,C,H,W] feeds; a DOUBLE output description gives float64."""
    b = builder({"x": (C, H, W)})
    b.add_activation("act", "RELU", "x", "y")
    b.spec.description.output[0].type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.DOUBLE
    path = save(b, tmp_path / "relu.mlmodel")
    x = rnd(C, H, W)
    with CoreMLMilRunner(path) as r:
        spec, = r.input_specs()
        assert spec.shape == [1, C, H, W] and spec.layout == "NCHW"
        assert r.output_specs()[0].dtype == "float64"
        for feed in (x, x[None], x[None, None]):
            y = r.run({"x": feed})["y"]
            assert y.dtype == np.float64 and y.shape == (1, C, H, W)
            np.testing.assert_array_equal(y[0], np.maximum(x, 0))
        with pytest.raises(BadInput):
            r.run({"x": rnd(C, H + 1, W)})
        with pytest.raises(BadInput):
            r.run({})


# --- what it refuses ----------------------------------------------------------------------------------

def _relu_then(tmp_path, add_layer, name="bad"):
    b = builder({"x": (C, H, W)})
    b.add_activation("first", "RELU", "x", "h")
    add_layer(b)
    return save(b, tmp_path / f"{name}.mlmodel")


@pytest.mark.parametrize("add_layer,named", [
    (lambda b: b.add_lrn("my_lrn", "h", "y", alpha=1e-4, beta=0.75, local_size=3), "'my_lrn' (lrn)"),
    (lambda b: b.add_activation("soft", "SOFTPLUS", "h", "y"), "'softplus'"),
    (lambda b: b.add_upsample("frac", 1.5, 1.5, "h", "y", mode="BILINEAR", linear_upsample_mode="ALIGN_CORNERS_TRUE"),
     "'frac' (upsample)"),
    (lambda b: setattr(b.add_batchnorm("bstats", C, np.ones(C), np.zeros(C), np.zeros(C), np.ones(C), "h", "y")
                       .batchnorm, "computeMeanVar", True), "'bstats' (batchnorm)"),   # the builder refuses it
], ids=["lrn", "softplus", "fractional-upsample", "batch-statistics"])
def test_unimplemented_layer_is_exit_3_naming_it(tmp_path, add_layer, named):
    path = _relu_then(tmp_path, add_layer)
    with pytest.raises(RuntimeFailed) as e:
        CoreMLMilRunner(path).open()
    assert named in str(e.value) and e.value.exit_code == EXIT_CONVERSION == 3


def test_int8_dynamic_quantization_weights_are_refused(tmp_path):
    b = builder({"x": (C, H, W)})
    w = conv_w(6, C, (3, 3))
    layer = b.add_convolution("qconv", C, 6, 3, 3, 1, 1, "valid", 1, w.transpose(2, 3, 1, 0), None, False,
                              input_name="x", output_name="y")
    wp = layer.convolution.weights
    del wp.floatValue[:]
    wp.int8RawValue = bytes(w.size)
    with pytest.raises(RuntimeFailed, match="'qconv'.*int8DynamicQuantize"):
        CoreMLMilRunner(save(b, tmp_path / "q.mlmodel")).open()


def test_cli_exit_3_names_the_layer(tmp_path, capsys):
    path = _relu_then(tmp_path, lambda b: b.add_softmax("my_softmax", "h", "y"))
    assert main(["parity", "--reference", str(path), "--candidate", str(path), "--runtimes", "coreml-mil"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("styleport: error:") and len(err.splitlines()) == 1 and "'my_softmax' (softmax)" in err


def _deconv_spec(out_shape):
    b = builder({"x": (C, H, W)})
    w = rnd(C, 3, 3, 3, seed=3)
    b.add_convolution("up_conv", C, 3, 3, 3, 2, 2, "valid", 1, w.transpose(2, 3, 0, 1), None, False,
                      is_deconv=True, output_shape=out_shape, input_name="x", output_name="y",
                      padding_top=1, padding_bottom=1, padding_left=1, padding_right=1)
    return b


def test_shape_mismatches_are_caught(tmp_path):
    x = rnd(1, C, H, W)
    # deconvolution: the size its padding gives ((7-1)*2+3-2 = 13, (9-1)*2+3-2 = 17)
    assert run(save(_deconv_spec([13, 17]), tmp_path / "ok.mlmodel"), {"x": x})["y"].shape == (1, 3, 13, 17)
    # a layer's recorded outputTensor
    b = _deconv_spec([13, 17])
    b.add_activation("act", "RELU", "y", "z")
    b.spec.description.output[0].name = "z"
    layer = b.spec.neuralNetwork.layers[-1]
    layer.outputTensor.add(rank=5, dimValue=[1, 1, 3, 13, 17])
    assert run(save(b, tmp_path / "t.mlmodel"), {"x": x})["z"].shape == (1, 3, 13, 17)
    del layer.outputTensor[:]
    layer.outputTensor.add(rank=5, dimValue=[1, 1, 3, 13, 16])
    with pytest.raises(RuntimeFailed, match=r"'act'.*\[1, 1, 3, 13, 16\]"):
        run(save(b, tmp_path / "t2.mlmodel"), {"x": x})
    # the model description's output shape
    b = _deconv_spec(None)
    b.spec.description.output[0].type.multiArrayType.shape.extend([3, 13, 17])
    assert run(save(b, tmp_path / "o.mlmodel"), {"x": x})["y"].shape == (1, 3, 13, 17)
    del b.spec.description.output[0].type.multiArrayType.shape[:]
    b.spec.description.output[0].type.multiArrayType.shape.extend([3, 14, 17])
    with pytest.raises(RuntimeFailed, match=r"output 'y'.*\[3, 14, 17\]"):
        run(save(b, tmp_path / "o2.mlmodel"), {"x": x})


# --- image I/O -------------------------------------------------------------------------------------

def _image_model(tmp_path, bgr, gray=False, image_out=None, mean=None):
    """x (image) -> preprocessing -> y = 2 * x (a multiArray), or an image output z = y * 0.5."""
    ch = 1 if gray else 3
    b = builder({"x": (ch, H, W)})
    b.add_elementwise("double", ["x"], "y", "MULTIPLY", alpha=2.0)
    if image_out:
        b.add_elementwise("half", ["y"], "z", "MULTIPLY", alpha=0.5)
        b.spec.description.output[0].name = "z"
    b.set_pre_processing_parameters(image_input_names=["x"], is_bgr=bgr, red_bias=-10.0, green_bias=-20.0,
                                    blue_bias=-30.0, gray_bias=-5.0, image_scale=0.5)
    spec = b.spec
    if gray:
        spec.description.input[0].type.imageType.colorSpace = FeatureTypes_pb2.ImageFeatureType.GRAYSCALE
    if mean is not None:
        spec.neuralNetwork.preprocessing[0].meanImage.meanImage.extend(mean.ravel())   # replaces the scaler
    if image_out:
        out = spec.description.output[0].type
        out.imageType.colorSpace = getattr(FeatureTypes_pb2.ImageFeatureType, image_out)
        out.imageType.width, out.imageType.height = W, H
    return save(spec, tmp_path / "img.mlmodel")


def test_image_input_scale_bias_and_channel_order(tmp_path):
    px = np.round(rnd(1, 3, H, W, lo=0, hi=255, seed=30))
    for bgr in (False, True):
        path = _image_model(tmp_path, bgr)
        with CoreMLMilRunner(path) as r:
            spec, = r.input_specs()
            assert spec.shape == [1, 3, H, W] and spec.range == [0, 255] and spec.layout == "NCHW"
            y = r.run({"x": px})["y"]
            every = r.run_all({"x": px})
        tensor = px[:, ::-1] if bgr else px                       # the network sees B,G,R for BGR models
        bias = np.array([-30.0, -20.0, -10.0] if bgr else [-10.0, -20.0, -30.0], np.float32).reshape(1, 3, 1, 1)
        want = 2 * (0.5 * tensor + bias)
        assert max_abs(y, want) == 0.0
        assert every["x"].shape == (1, 1, 3, H, W)                  # rank-5 blob after preprocessing
        # an 8-bit pixel buffer: fractions round to the pixel value; values outside 0-255 are refused
        assert max_abs(run(path, {"x": px + 0.3})["y"], y) == 0.0
        with pytest.raises(BadInput, match="0-255"):
            run(path, {"x": px + 300})


def test_grayscale_and_mean_image(tmp_path):
    px = np.round(rnd(1, 1, H, W, lo=0, hi=255, seed=31))
    assert max_abs(run(_image_model(tmp_path, False, gray=True), {"x": px})["y"], 2 * (0.5 * px - 5.0)) == 0.0
    mean = rnd(3, H, W, lo=0, hi=100, seed=32)
    px3 = np.round(rnd(1, 3, H, W, lo=0, hi=255, seed=33))
    got = run(_image_model(tmp_path, False, mean=mean), {"x": px3})["y"]
    assert max_abs(got, 2 * (px3 - mean)) < 1e-4


def test_image_output(tmp_path):
    """The network's tensor becomes an RGB picture: BGR models reversed back, values clipped to 0-255."""
    px = np.round(rnd(1, 3, H, W, lo=0, hi=255, seed=34))
    for color in ("RGB", "BGR"):
        path = _image_model(tmp_path, color == "BGR", image_out=color)
        with CoreMLMilRunner(path) as r:
            out, = r.output_specs()
            assert out.shape == [1, 3, H, W] and out.range == [0, 255]
            z = r.run({"x": px})["z"]
        bias = np.array([-10.0, -20.0, -30.0], np.float32).reshape(1, 3, 1, 1)     # R, G, B
        np.testing.assert_allclose(z, np.clip(0.5 * px + bias, 0, 255), atol=1e-5)
        assert z.min() == 0.0    # clipped: some pixels went below 0


# --- a Johnson-layout network, layer by layer ---------------------------------------------------------

def johnson_builder(model, hw, image_io=False):
    """styleport's TransformerNet (instance norm, reflection pad, nearest x2 + conv, sigmoid output)
    written as neuralNetwork layers, rank-5 mapping, one builder call per torch op."""
    net = model.net
    b = builder({"content_image": (3, *hw)}, output="stylized_image")
    names = iter(range(10 ** 6))

    def conv(layer, x):
        w = layer.conv2d.weight.detach().numpy()
        bias = layer.conv2d.bias
        k, s = w.shape[2], layer.conv2d.stride[0]
        n = next(names)
        if layer.upsample > 1:
            b.add_upsample(f"up{n}", layer.upsample, layer.upsample, x, f"up{n}", mode="NN")
            x = f"up{n}"
        p = k // 2
        if p:
            b.add_padding(f"pad{n}", p, p, p, p, input_name=x, output_name=f"pad{n}", padding_type="reflection")
            x = f"pad{n}"
        b.add_convolution(f"conv{n}", w.shape[1], w.shape[0], k, k, s, s, "valid", 1, w.transpose(2, 3, 1, 0),
                          None if bias is None else bias.detach().numpy(), bias is not None, input_name=x,
                          output_name=f"conv{n}")
        return f"conv{n}"

    def norm(layer, x, relu=True):
        n = next(names)
        c = layer.weight.shape[0]
        b.add_batchnorm(f"in{n}", c, layer.weight.detach().numpy(), layer.bias.detach().numpy(), input_name=x,
                        output_name=f"in{n}", compute_mean_var=True, instance_normalization=True, epsilon=layer.eps)
        if not relu:
            return f"in{n}"
        b.add_activation(f"relu{n}", "RELU", f"in{n}", f"relu{n}")
        return f"relu{n}"

    x = "content_image"
    for c_, n_ in ((net.conv1, net.in1), (net.conv2, net.in2), (net.conv3, net.in3)):
        x = norm(n_, conv(c_, x))
    for i, block in enumerate(net.res):
        r = norm(block.in1, conv(block.conv1, x))
        r = norm(block.in2, conv(block.conv2, r), relu=False)
        b.add_elementwise(f"res{i}", [x, r], f"res{i}", "ADD")
        x = f"res{i}"
    for c_, n_ in ((net.deconv1, net.in4), (net.deconv2, net.in5)):
        x = norm(n_, conv(c_, x))
    x = conv(net.deconv3, x)
    assert net.output == "sigmoid"
    if image_io:   # pixels in, pixels out: preprocessing 1/255, and x255 before the image output
        b.add_activation("sigmoid", "SIGMOID", x, "sig")
        b.add_elementwise("to255", ["sig"], "stylized_image", "MULTIPLY", alpha=255.0)
        b.set_pre_processing_parameters(image_input_names=["content_image"], image_scale=1 / 255)
        out = b.spec.description.output[0].type
        out.imageType.colorSpace = FeatureTypes_pb2.ImageFeatureType.RGB
        out.imageType.height, out.imageType.width = hw
    else:
        b.add_activation("sigmoid", "SIGMOID", x, "stylized_image")
        b.spec.description.output[0].type.multiArrayType.shape.extend([3, *hw])
    return b


HW = (36, 44)


@pytest.fixture(scope="module")
def johnson(tmp_path_factory):
    torch.manual_seed(0)
    model = build(default_config("johnson", width=0.25)).eval()
    with torch.no_grad():   # non-trivial norm affines (a fresh InstanceNorm is gamma 1, beta 0)
        for m in model.modules():
            if hasattr(m, "weight") and m.weight is not None and m.weight.ndim == 1:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    d = tmp_path_factory.mktemp("johnson_nn")
    path = save(johnson_builder(model, HW), d / "johnson.mlmodel")
    onnx_path = d / "twin.onnx"
    x = torch.rand(1, 3, *HW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(onnx_path), input_names=["content_image"], output_names=["stylized_image"],
                          opset_version=17, dynamo=False)
    return model, path, onnx_path, d


def test_johnson_network_matches_its_pytorch_twin(johnson):
    model, path, _, _ = johnson
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    with CoreMLMilRunner(path) as r:
        counts = r.op_counts()
        got = r.run({"content_image": x.numpy()})["stylized_image"]
        assert r.precision() == "fp32"
    assert counts == {"padding": 16, "convolution": 16, "batchnorm": 15, "activation": 11, "add": 5, "upsample": 2}
    err = max_abs(got, want)
    print(f"\n[coreml-mil nn] johnson w0.25 {HW}: max abs {err:.2e} vs PyTorch")
    assert got.shape == want.shape
    assert err <= 1e-3             # the fp32 tolerance for CoreML (metrics.default_tolerance)
    assert err <= 1e-5             # what it measures: float32 rounding only


def test_johnson_pixels_in_pixels_out(johnson, tmp_path):
    """The same network with an image input (1/255 preprocessing) and an image output (x255)."""
    model = johnson[0]
    path = save(johnson_builder(model, HW, image_io=True), tmp_path / "johnson_img.mlmodel")
    px = np.round(rnd(1, 3, *HW, lo=0, hi=255, seed=40))
    with torch.no_grad():
        want = model(torch.from_numpy(px / 255).float()).numpy()
    got = run(path, {"content_image": px})["stylized_image"] / 255
    assert max_abs(got, want) <= 1e-5


@pytest.mark.slow
def test_johnson_cli_parity_bench_inspect(johnson, capsys):
    model, path, onnx_path, d = johnson
    # the real command, in a subprocess
    p = run_cli("parity", "--reference", onnx_path, "--candidate", path, "--runtimes", "coreml-mil",
                "--json", d / "parity.json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    doc = json.loads((d / "parity.json").read_text())
    check, = doc["checks"]
    assert check["status"] == "pass" and check["runtime"] == "coreml-mil" and check["tolerance"] == {"max_abs": 1e-3}
    assert check["parity"]["max_abs"] <= 1e-5, check["parity"]
    # in-process from here (the subprocess start, mostly coremltools' import, is the slow part)
    # one changed weight (a wrong conversion) fails parity with exit 1
    spec = ct.utils.load_spec(str(path))
    conv = next(l for l in spec.neuralNetwork.layers if l.WhichOneof("layer") == "convolution")
    conv.convolution.weights.floatValue[5] += 0.5
    bad = save(spec, d / "johnson_bad.mlmodel")
    assert main(["parity", "--reference", str(onnx_path), "--candidate", str(bad), "--runtimes", "coreml-mil",
                 "-q"]) == 1
    # bench (its worker is a fresh process; a bare file has no PyTorch reference) and inspect
    assert main(["bench", str(path), "--runtimes", "coreml-mil", "--num_runs", "2", "--warmup_runs", "0",
                 "--json", str(d / "bench.json"), "-q"]) == 0
    row, = json.loads((d / "bench.json").read_text())["results"]
    assert row["status"] == "ok" and row["runtime"] == "coreml-mil" and row["input_size"] == list(HW)
    assert row["precision"] == "fp32" and row["latency_ms"]["p50"] > 0
    capsys.readouterr()
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "neuralNetwork" and info["spec_version"] <= 4
    assert info["op_histogram"]["convolution"] == 16 and info["op_histogram"]["batchnorm"] == 15
    n_params = sum(v.numel() for v in model.parameters())
    assert info["params"] == n_params and info["weight_dtypes"] == {"float32": n_params}
    assert info["inputs"] == [{"name": "content_image", "shape": [3, *HW], "dtype": "float32"}]


def test_inspect_describes_image_io(johnson, tmp_path):
    path = save(johnson_builder(johnson[0], HW, image_io=True), tmp_path / "johnson_img.mlmodel")
    from styleport.export.inspect import inspect_file
    info = inspect_file(path)
    inp, = info["inputs"]
    out, = info["outputs"]
    assert inp["dtype"] == "image" and inp["shape"] == [1, 3, *HW]
    assert inp["image"]["color_space"] == "RGB" and inp["image"]["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert out["dtype"] == "image" and out["image"] == {"color_space": "RGB", "height": HW[0], "width": HW[1]}


@pytest.mark.slow
def test_coremltools_converter_output_runs(tmp_path):
    """A johnson network converted by coremltools itself (convert_to="neuralnetwork", spec 4, exact
    shape mapping, with an image input whose preprocessing is the converter's own) matches PyTorch."""
    torch.manual_seed(1)
    model = build(default_config("johnson", width=0.25)).eval()
    x = torch.rand(1, 3, 28, 36)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x)
        ml = ct.convert(traced, inputs=[ct.ImageType(name="content_image", shape=x.shape, scale=1 / 255)],
                        convert_to="neuralnetwork")
    px = np.round(rnd(1, 3, 28, 36, lo=0, hi=255, seed=41))
    with CoreMLMilRunner(ml) as r:
        assert r.describe()["shape_mapping"] == "exact"
        got = next(iter(r.run({"content_image": px}).values()))
    with torch.no_grad():
        want = model(torch.from_numpy(px / 255).float()).numpy()
    assert max_abs(got, want) <= TOL


def test_flexible_sizes(johnson, tmp_path):
    """A shape range on a multiArray input and enumerated sizes on an image input: each fed size runs
    (and matches PyTorch), a size outside them is bad input, and free dims show as None."""
    from coremltools.models.neural_network import flexible_shape_utils as fsu
    model = johnson[0]
    b = johnson_builder(model, HW)
    fsu.update_multiarray_shape_range(b.spec, "content_image", fsu.NeuralNetworkMultiArrayShapeRange(
        {"C": (3, 3), "H": (16, 64), "W": (16, -1)}))
    ranged = save(b, tmp_path / "ranged.mlmodel")
    b = johnson_builder(model, HW, image_io=True)
    sizes = [fsu.NeuralNetworkImageSize(height=HW[0], width=HW[1]), fsu.NeuralNetworkImageSize(height=24, width=20)]
    fsu.add_enumerated_image_sizes(b.spec, "content_image", sizes)
    enumerated = save(b, tmp_path / "enumerated.mlmodel")
    for path, image in ((ranged, False), (enumerated, True)):
        with CoreMLMilRunner(path) as r:
            assert r.input_specs()[0].shape == [1, 3, None, None]
            assert r.output_specs()[0].shape == [1, 3, None, None]
            for hw in ((24, 20), (HW[0], HW[1])):
                px = np.round(rnd(1, 3, *hw, lo=0, hi=255, seed=hw[0]))
                got = r.run({"content_image": px if image else px / 255})["stylized_image"]
                with torch.no_grad():
                    want = model(torch.from_numpy(px / 255).float()).numpy()
                assert max_abs(got / 255 if image else got, want) <= 1e-5
            with pytest.raises(BadInput, match="range|accepts only"):
                r.run({"content_image": np.zeros((1, 3, 12, 20), np.float32)})


def test_fp16_weights(johnson, tmp_path, capsys):
    """Weights stored as float16 (coremltools' quantize_weights, nbits=16) are widened and computed in
    float32: close to PyTorch, not equal to it; precision and inspect say float16."""
    from coremltools.models.neural_network.quantization_utils import quantize_weights
    from styleport.runtime.harness.tolerances import compare
    model, path = johnson[0], johnson[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_weights(ct.models.MLModel(ct.utils.load_spec(str(path)), skip_model_load=True), nbits=16)
    half = save(q.get_spec() if hasattr(q, "get_spec") else q, tmp_path / "johnson_fp16.mlmodel")
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model(x).numpy()
    with CoreMLMilRunner(half) as r:
        assert r.precision() == "fp16"
        got = r.run({"content_image": x.numpy()})["stylized_image"]
    m = compare(want, got)
    with capsys.disabled():
        print(f"\n[coreml-mil nn] johnson fp16 weights: max abs {m['max_abs']:.2e}, PSNR {m['psnr_db']:.1f} dB")
    assert 0 < m["max_abs"] and m["psnr_db"] >= 45.0
    capsys.readouterr()
    assert main(["inspect", str(half), "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert set(info["weight_dtypes"]) == {"float16"} and info["params"] == sum(v.numel() for v in model.parameters())


@pytest.mark.parametrize("nbits,mode,floor", [(8, "linear", 40.0), (4, "linear", 20.0), (6, "linear_lut", 30.0)])
def test_quantized_weights(johnson, tmp_path, nbits, mode, floor):
    """Weights as coremltools' quantize_weights writes them (n-bit linear per channel, or a look-up
    table): expanded and computed in float32, close to PyTorch; the bit unpacking agrees with
    coremltools' own unpacker."""
    from coremltools.models.neural_network.quantization_utils import _unpack_to_bytes, quantize_weights
    from styleport.runtime.harness.tolerances import compare
    model, path = johnson[0], johnson[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_weights(ct.models.MLModel(ct.utils.load_spec(str(path)), skip_model_load=True), nbits=nbits,
                             quantization_mode=mode)
    spec = q.get_spec() if hasattr(q, "get_spec") else q
    conv = next(l for l in spec.neuralNetwork.layers if l.WhichOneof("layer") == "convolution").convolution
    assert conv.weights.quantization.numberOfBits == nbits and len(conv.weights.rawValue)
    path_q = save(spec, tmp_path / f"johnson_{mode}{nbits}.mlmodel")
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = model(x).numpy()
    with CoreMLMilRunner(path_q) as r:
        assert r.precision() == ("int8" if (nbits, mode) == (8, "linear") else "fp32")
        got = r.run({"content_image": x.numpy()})["stylized_image"]
        every = r.run_all({"content_image": x.numpy()})
    first = next(l for l in spec.neuralNetwork.layers if l.WhichOneof("layer") == "convolution")
    n = conv.outputChannels * conv.kernelChannels * conv.kernelSize[0] * conv.kernelSize[1]
    ours = np.unpackbits(np.frombuffer(conv.weights.rawValue, np.uint8))[:n * nbits].reshape(n, nbits)
    ours = (ours.astype(np.int64) << np.arange(nbits - 1, -1, -1)).sum(1)
    theirs = _unpack_to_bytes(np.frombuffer(conv.weights.rawValue, np.uint8), n, nbits)
    np.testing.assert_array_equal(ours, theirs)
    assert first.output[0] in every
    m = compare(want, got)
    print(f"\n[coreml-mil nn] johnson {mode} {nbits}-bit weights: PSNR {m['psnr_db']:.1f} dB, max abs {m['max_abs']:.2e}")
    assert np.isfinite(got).all() and floor <= m["psnr_db"] < 200


@pytest.mark.parametrize("out_shape,extra", [((14, 18), (1, 1)), ((14, 17), (1, 0)), ((13, 17), (0, 0))])
def test_deconvolution_output_shape_is_honoured(tmp_path, out_shape, extra):
    """Issue 20: a held-out fast-neural-style model stopped with "output is [361, 361] but the layer's
    outputShape is [362, 362]". outputShape sets the output size; the window starts at the top/left
    crop, so one more row/column comes from the bottom/right of the transposed convolution (zeros and
    the bias past its end): PyTorch's output_padding, torch7's adj."""
    x = rnd(2, C, H, W, seed=5)
    w = rnd(C, 3, 3, 3, seed=3)
    bias = rnd(3, seed=4)
    b = builder({"x": (C, H, W)})
    b.add_convolution("up_conv", C, 3, 3, 3, 2, 2, "valid", 1, w.transpose(2, 3, 0, 1), bias, True,
                      is_deconv=True, output_shape=list(out_shape), input_name="x", output_name="y",
                      padding_top=1, padding_bottom=1, padding_left=1, padding_right=1)
    got = run(save(b, tmp_path / "d.mlmodel"), {"x": x})["y"]
    want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias),
                                                stride=2, padding=1, output_padding=extra).numpy()
    assert got.shape == want.shape == (2, 3) + tuple(out_shape)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # stride 1, no padding: past the end of the transposed convolution the output is the bias alone
    b = builder({"x": (C, H, W)})
    b.add_convolution("up1", C, 3, 3, 3, 1, 1, "valid", 1, w.transpose(2, 3, 0, 1), bias, True,
                      is_deconv=True, output_shape=[H + 3, W + 2], input_name="x", output_name="y")
    got = run(save(b, tmp_path / "d1.mlmodel"), {"x": x})["y"]
    full = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)).numpy()
    assert got.shape == (2, 3, H + 3, W + 2)
    np.testing.assert_allclose(got[:, :, :H + 2, :W + 2], full, atol=1e-4)
    np.testing.assert_allclose(got[:, :, H + 2:, :], np.broadcast_to(bias.reshape(1, 3, 1, 1), (2, 3, 1, W + 2)))
