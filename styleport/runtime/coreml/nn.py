"""``coreml-mil`` for ``neuralNetwork`` models: a reference interpreter of CoreML ``.mlmodel`` files, on
any OS (issue #16). The sibling of :mod:`styleport.runtime.coreml.runner`, which runs ML programs.

Most CoreML style networks in the wild predate ML programs: Create ML's style transfer template,
fast-neural-style and tf-coreml conversions, coremltools' ``convert_to="neuralnetwork"``. Each is one
``.mlmodel`` file holding a ``neuralNetwork`` spec: a list of layers in file order, each reading and
writing named blobs. ``MLModel.predict`` runs only on macOS; this runner reads the spec with coremltools
(no compilation) and computes every layer with numpy, so Linux CI can check the numbers such a file
computes. ``CoreMLMilRunner(path)`` hands a neuralNetwork model to :class:`CoreMLNNRunner`, so the
``coreml-mil`` runtime opens both CoreML formats.

Layers (semantics read from coremltools' ``mlmodel/format/NeuralNetwork.proto``, specification
versions 1-4; a later file runs when it holds only these layers):

    convolution (valid with padding amounts / same with either asymmetry, strides, dilations, groups;
    deconvolution with groups, valid crop amounts, same, and ``outputShape``), batchnorm (stored
    statistics, and the instance-normalisation form ``computeMeanVar`` + ``instanceNormalization``),
    padding (constant / reflection / replication), crop (amounts, or offset + a reference blob),
    upsample (nearest and bilinear with the DEFAULT / ALIGN_CORNERS_TRUE / ALIGN_CORNERS_FALSE grids,
    integer factors), activation (ReLU, leakyReLU, linear, sigmoid, tanh, scaledTanh, ELU), add,
    multiply, scale, bias, loadConstant, loadConstantND (coremltools' converter writes it for
    constants), permute, reduce (every mode and axis), unary (every operation).

Weights may be stored as float32, float16 (widened to float32) or 1-8-bit quantized values (linear,
per tensor or per output channel, or a look-up table), as coremltools' ``quantize_weights`` writes
them. Anything else — another layer or activation, custom layers, int8 dynamic-quantization weights,
weights given as a second input, a classifier or pipeline model — raises
:class:`~styleport.runtime.runners.base.RuntimeFailed` (exit 3) naming the layer; the interpreter never
guesses. Where the proto leaves an output size undefined (fractional upsampling factors, a
same-padded deconvolution whose kernel is smaller than its stride, the batch-statistics form of
batchnorm whose variance estimator the proto does not state), that case is refused too. Dilation
on a deconvolution is refused: the proto says Core ML ignores it while converters set it. One rule is
this interpreter's reading rather than the proto's words: for a same-padded deconvolution the proto
gives only the output size (H * stride); its full output ((H-1) * stride + k) is cropped by the
amounts ``SamePadding`` gives a convolution (the smaller half at the top/left for
``BOTTOM_RIGHT_HEAVY``), the adjoint of that convolution, as TensorFlow's ``conv2d_transpose`` (which
tf-coreml converted to this layer) crops. It matters only when ``k - stride`` is odd.

A deconvolution's ``outputShape`` sets its output size: the window starts at the top/left crop, and
one more row/column than the padding gives comes from the bottom/right (an output padding: PyTorch's
``output_padding``, torch7's ``adj``), zeros plus the bias past the transposed convolution's end.

Checks: each layer's output against the ``outputTensor`` rank and dims the spec records for it, every
weight count against the
layer's declared shape, and every model output against the description's shape (multiArray shape,
image width and height; dims only when the inputs have fixed sizes). A mismatch is exit 3 naming the
layer, never a silently different number.

Tensors and I/O. Specification versions 1-3 (and version 4 with ``RANK5_ARRAY_MAPPING``) hold every
blob as a rank-5 ``[Seq, Batch, C, H, W]`` tensor: a multiArray input of shape ``[C]`` or ``[C, H, W]``
becomes ``[1, 1, C, 1, 1]`` / ``[1, 1, C, H, W]``. The runner shows such inputs and outputs as 4-D
``[Batch, C, H, W]`` (feeds may also be given as ``[C, H, W]`` or rank 5); with
``EXACT_ARRAY_MAPPING`` (version 4) tensors keep the description's shape. Image features are
float32 ``[1, C, H, W]`` arrays in RGB order (or one gray channel) holding 0-255 pixel values
(``TensorSpec.range == [0, 255]``): fed values are rounded to the integers an 8-bit pixel buffer holds
(values outside 0-255 are bad input); a BGR model gets its channels reversed, as Core ML fills its
tensor from a picture, and then ``preprocessing`` applies (``channelScale * x + per-channel bias``, or
a mean image). An image output is the network's tensor with BGR reversed back to RGB and clipped to
0-255; Core ML then stores 8-bit pixels with a rounding Apple does not document, so a device can
differ from these outputs by under one level (1/255).

Numerics: float32 throughout. Weights stored as fp16 (``float16Value``) are widened to float32, as
Core ML's CPU path computes; the GPU and the Neural Engine run neuralNetwork models in fp16, which
this interpreter does not emulate. Convolutions reuse :mod:`.ops`' kernels (BLAS sgemm).

Limitation: a reference interpreter of the *model file*, not Apple's runtime. It proves the file's
layers, attributes and weights compute the right numbers; it cannot catch bugs in Core ML itself,
its fp16 GPU / Neural Engine arithmetic or layer fusion, and it says nothing about speed. Confirm on a
Mac before shipping.
"""

from __future__ import annotations

import os

import numpy as np

from styleport.errors import BadInput
from styleport.runtime.coreml.nn_layers import _ARRAY_DTYPES, _COLOR, IMPLEMENTED_LAYERS, LAYERS, NAME, _fail
from styleport.runtime.runners.base import Runner, RuntimeFailed, RuntimeUnavailable, TensorSpec


# --- the network ----------------------------------------------------------------------------------

class _Layer:
    """One layer while it is being read: its name, kind, parameters, and the weight loader."""

    def __init__(self, net, proto):
        self.net = net
        self.name = proto.name
        self.kind = proto.WhichOneof("layer")
        self.p = getattr(proto, self.kind) if self.kind else None
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)

    def fail(self, msg):
        _fail(f"layer {self.name!r} ({self.kind}): {msg}")

    def weights(self, wp, shape, what, axis=0) -> np.ndarray:
        """A WeightParams field as float32 of ``shape``: float32 values, fp16 ones widened, or n-bit
        quantized ones (linear or look-up table) expanded; ``axis``: the output-channel axis of
        per-channel linear scales (1 for deconvolution weights, as coremltools writes them)."""
        count = int(np.prod(shape))
        kinds = [k for k, n in (("floatValue", len(wp.floatValue)), ("float16Value", len(wp.float16Value)),
                                ("rawValue", len(wp.rawValue)), ("int8RawValue", len(wp.int8RawValue))) if n]
        if len(kinds) > 1:
            self.fail(f"{what} hold values in more than one field ({', '.join(kinds)})")
        if len(wp.int8RawValue):
            self.fail(f"{what} are int8 values for int8DynamicQuantize, which is not implemented")
        if len(wp.rawValue) or wp.HasField("quantization"):
            v = self._dequantize(wp, shape, what, axis)
        elif len(wp.float16Value):
            if len(wp.float16Value) % 2:
                self.fail(f"{what}: float16Value holds an odd number of bytes")
            v = np.frombuffer(wp.float16Value, "<f2").astype(np.float32)
            self.net.weight_dtypes.add("float16")
        else:
            v = np.asarray(wp.floatValue, np.float32)
            if v.size:
                self.net.weight_dtypes.add("float32")
        if v.size != count:
            self.fail(f"{what} hold {v.size} values, the layer's shape {list(shape)} needs {count}")
        self.net.params += count
        return v.reshape(shape)

    def _dequantize(self, wp, shape, what, axis):
        """rawValue holds ``numberOfBits``-bit unsigned indices, packed most significant bit first (as
        coremltools' quantize_weights writes them); linear: w = q * scale + bias, one scale/bias or one
        per output channel; look-up table: w = table[q]."""
        q = wp.quantization
        nbits, which = int(q.numberOfBits), q.WhichOneof("QuantizationType")
        count = int(np.prod(shape))
        if which is None or not 1 <= nbits <= 8:
            self.fail(f"{what}: {nbits}-bit {which or 'unspecified'} quantization is not implemented")
        raw = np.frombuffer(wp.rawValue, np.uint8)
        if raw.size * 8 < count * nbits:
            self.fail(f"{what}: {raw.size} bytes cannot hold {count} {nbits}-bit values")
        bits = np.unpackbits(raw)[:count * nbits].reshape(count, nbits).astype(np.int64)
        idx = (bits << np.arange(nbits - 1, -1, -1)).sum(axis=1)
        if which == "lookupTableQuantization":
            table = np.asarray(q.lookupTableQuantization.floatValue, np.float32)
            if table.size != 2 ** nbits:
                self.fail(f"{what}: a look-up table of {table.size} values for {nbits}-bit indices")
            self.net.weight_dtypes.add(f"uint{nbits} LUT")
            return table[idx]
        scale = np.asarray(q.linearQuantization.scale, np.float32)
        bias = np.asarray(q.linearQuantization.bias, np.float32)
        channels = shape[axis] if len(shape) > axis else 1
        if scale.size not in (1, channels) or bias.size not in (0, scale.size):
            self.fail(f"{what}: {scale.size} scales and {bias.size} biases for {channels} channels")
        per = [1] * len(shape)
        if scale.size > 1:
            per[axis] = -1
        w = idx.reshape(shape).astype(np.float32) * scale.reshape(per)
        if bias.size:
            w = w + bias.reshape(per)
        self.net.weight_dtypes.add(f"uint{nbits}")
        return w.reshape(-1)


class _Step:
    __slots__ = ("name", "kind", "fn", "inputs", "outputs", "tensors", "release")

    def __init__(self, layer, fn, tensors):
        self.name, self.kind, self.fn = layer.name, layer.kind, fn
        self.inputs, self.outputs, self.tensors = layer.inputs, layer.outputs, tensors
        self.release = ()


class _Feature:
    """One input or output of the model description, and how it maps to a network blob."""

    def __init__(self, f, rank5: bool, rank5_image: bool, is_input: bool):
        self.name = f.name
        t = f.type
        self.kind = t.WhichOneof("Type")
        self.is_input = is_input
        self.flexible = False
        if self.kind == "multiArrayType":
            a = t.multiArrayType
            self.dtype = _ARRAY_DTYPES.get(a.dataType)
            if self.dtype is None:
                _fail(f"{'input' if is_input else 'output'} {f.name!r} has array data type {a.dataType}, "
                      "which is not implemented")
            self.dims = [int(d) for d in a.shape]
            self.rank5 = rank5
            if rank5 and is_input and len(self.dims) not in (1, 3):
                _fail(f"input {f.name!r} has shape {self.dims}; rank-5 mapped inputs have 1 or 3 dims")
            flex = a.WhichOneof("ShapeFlexibility")
            self.ranges = self.options = None
            if flex == "shapeRange":
                self.ranges = [(int(r.lowerBound), int(r.upperBound)) for r in a.shapeRange.sizeRanges]
                self.flexible = any(lo != hi for lo, hi in self.ranges)
                if len(self.ranges) != len(self.dims):
                    _fail(f"input {f.name!r}: shape range has {len(self.ranges)} dims, its shape {len(self.dims)}")
            elif flex == "enumeratedShapes":
                self.options = [[int(d) for d in s.shape] for s in a.enumeratedShapes.shapes]
                self.flexible = len(self.options) > 1
        elif self.kind == "imageType":
            im = t.imageType
            self.color = _COLOR.get(im.colorSpace)
            if self.color is None:
                _fail(f"image {f.name!r} has color space {im.colorSpace}, which is not implemented")
            self.channels = 3 if self.color in ("RGB", "BGR") else 1
            self.width, self.height = int(im.width), int(im.height)
            self.rank5 = rank5_image
            self.dtype = "float32"
            flex = im.WhichOneof("SizeFlexibility")
            self.ranges = self.options = None
            if flex == "imageSizeRange":
                r = im.imageSizeRange
                self.ranges = [(int(r.heightRange.lowerBound), int(r.heightRange.upperBound)),
                               (int(r.widthRange.lowerBound), int(r.widthRange.upperBound))]
                self.flexible = any(lo != hi for lo, hi in self.ranges)
            elif flex == "enumeratedSizes":
                self.options = [[int(s.height), int(s.width)] for s in im.enumeratedSizes.sizes]
                self.flexible = len(self.options) > 1
        else:
            _fail(f"{'input' if is_input else 'output'} {f.name!r} is a {self.kind}; only multiArray and "
                  "image features are implemented")

    # the shape the runner shows (TensorSpec) -------------------------------------------------------
    def spec(self) -> TensorSpec:
        if self.kind == "imageType":
            h, w = self.height or None, self.width or None
            if self.flexible:
                h = w = None
                if self.ranges:
                    (hl, hh), (wl, wh) = self.ranges
                    h, w = (hl if hl == hh else None), (wl if wl == wh else None)
            return TensorSpec(self.name, [1, self.channels, h, w], "float32", "NCHW", [0, 255])
        dims = list(self.dims)
        if self.ranges:
            dims = [lo if lo == hi else None for lo, hi in self.ranges]
        elif self.options and self.flexible:
            dims = [col[0] if len(set(col)) == 1 else None for col in zip(*self.options)]
        if self.rank5 and len(dims) in (1, 3):
            dims = [1] + (dims if len(dims) == 3 else dims + [1, 1])
        return TensorSpec(self.name, dims, self.dtype, "NCHW" if len(dims) == 4 else "any")

    def _check_dims(self, got: list, what: str):
        """``got``: the description-rank dims of a fed input ([C, H, W] / [C] / exact shape)."""
        if self.ranges:
            if len(got) != len(self.ranges) or any(
                    s < lo or (hi >= 0 and s > hi) for s, (lo, hi) in zip(got, self.ranges)):
                raise BadInput(f"{what} {self.name!r} has size {got}, outside the model's range {self.ranges}")
        elif self.options:
            if got not in self.options:
                raise BadInput(f"{what} {self.name!r} has size {got}; the model accepts only {self.options}")
        else:
            want = self.dims if self.kind == "multiArrayType" else [self.height, self.width]
            if want and got != want:
                raise BadInput(f"{what} {self.name!r} has size {got}; the model wants {want}")

    # feeds -> blobs ----------------------------------------------------------------------------------
    def to_blob(self, value) -> np.ndarray:
        x = np.asarray(value)
        if x.dtype.kind not in "fiub":
            raise BadInput(f"input {self.name!r} holds {x.dtype} values, not numbers")
        if self.kind == "imageType":
            return self._image_blob(x)
        x = x.astype(np.float32)
        if not self.rank5:
            self._check_dims(list(x.shape), "input")
            return x
        r, d = x.ndim, len(self.dims)
        if r == 5:
            x5 = x
        elif d == 3 and r in (3, 4):
            x5 = x.reshape((1,) * (5 - r) + x.shape)
        elif d == 1 and r in (1, 2):
            x5 = x.reshape((1,) * (2 - r) + x.shape[:r - 1] + (x.shape[-1], 1, 1))
        elif d == 1 and r == 4:
            x5 = x[None]
        else:
            raise BadInput(f"input {self.name!r} has shape {list(x.shape)}; the model wants "
                           f"{self.spec().shape} (or {self.dims})")
        self._check_dims(list(x5.shape[2:]) if d == 3 else [x5.shape[2]], "input")
        if d == 1 and x5.shape[3:] != (1, 1):
            raise BadInput(f"input {self.name!r} has shape {list(x.shape)}; the model wants a vector of "
                           f"{self.dims[0]}")
        return np.ascontiguousarray(x5)

    def _image_blob(self, x):
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise BadInput(f"image input {self.name!r} has shape {list(x.shape)}; the runner takes "
                           f"[1, {self.channels}, H, W] arrays (RGB order, 0-255)")
        self._check_dims(list(x.shape[2:]), "image input")
        x = x.astype(np.float32)
        if self.color == "GRAYSCALE_FLOAT16":
            x = x.astype(np.float16).astype(np.float32)
        else:
            x = np.round(x)    # the 8-bit pixel buffer Core ML reads
        if not np.isfinite(x).all() or (self.color != "GRAYSCALE_FLOAT16" and (x.min() < 0 or x.max() > 255)):
            raise BadInput(f"image input {self.name!r} holds values outside 0-255 (an image holds pixels)")
        if self.color == "BGR":
            x = x[:, ::-1]
        x = np.ascontiguousarray(x)
        return x[None] if self.rank5 else x

    # blobs -> outputs ------------------------------------------------------------------------------
    def from_blob(self, y: np.ndarray, check_dims: bool) -> np.ndarray:
        if self.kind == "imageType":
            if y.ndim < 3 or y.shape[-3] != self.channels:
                _fail(f"output {self.name!r} is a {self.color} image, but the network computes a blob of "
                      f"shape {list(y.shape)} (needs {self.channels} channels on axis -3)")
            y = y.reshape((-1,) + y.shape[-3:])
            if check_dims and self.width and [y.shape[2], y.shape[3]] != [self.height, self.width]:
                _fail(f"output {self.name!r}: the network computes a {y.shape[2]}x{y.shape[3]} image, the model "
                      f"description says {self.height}x{self.width}")
            if self.color == "BGR":
                y = y[:, ::-1]
            if self.color == "GRAYSCALE_FLOAT16":
                return np.ascontiguousarray(y.astype(np.float16).astype(np.float32))
            return np.ascontiguousarray(np.clip(y, 0, 255).astype(np.float32))
        if self.rank5:
            want = self.dims
            got = list(y.shape[-3:])
            if len(want) == 1 and y.ndim >= 3 and y.shape[-2:] == (1, 1):
                got = [y.shape[-3]]
            if check_dims and want and got != want:
                _fail(f"output {self.name!r}: the network computes shape {list(y.shape)}, the model description "
                      f"says {want}")
            if y.ndim == 5 and y.shape[0] == 1:
                y = y[0]
        elif check_dims and self.dims and list(y.shape) != self.dims:
            _fail(f"output {self.name!r}: the network computes shape {list(y.shape)}, the model description "
                  f"says {self.dims}")
        return np.ascontiguousarray(y.astype(self.dtype))

    def out_spec(self, fixed: bool) -> TensorSpec:
        """The output's TensorSpec; H and W are free (None) when an input has a flexible size."""
        if self.kind == "imageType":
            h, w = (self.height or None, self.width or None) if fixed else (None, None)
            return TensorSpec(self.name, [1, self.channels, h, w], "float32", "NCHW", [0, 255])
        dims = list(self.dims)
        if self.rank5 and len(dims) in (1, 3):
            dims = [1] + (dims if len(dims) == 3 else dims + [1, 1])
        if not fixed and len(dims) >= 2:
            dims = dims[:-2] + [None, None]
        return TensorSpec(self.name, dims, self.dtype, "NCHW" if len(dims) == 4 else "any")


class NeuralNetwork:
    """A ``neuralNetwork`` spec read into numpy weights and one step per layer."""

    def __init__(self, spec):
        kind = spec.WhichOneof("Type")
        if kind != "neuralNetwork":
            what = {"mlProgram": "an ML program (save it as an .mlpackage)"}.get(kind, f"a {kind} model")
            _fail(f"the model is {what}; the neuralNetwork interpreter runs plain neuralNetwork specs "
                  "(classifiers, regressors and pipelines are not implemented)")
        nn = spec.neuralNetwork
        self.spec_version = int(spec.specificationVersion)
        self.rank5 = int(nn.arrayInputShapeMapping) == 0
        rank5_image = int(nn.imageInputShapeMapping) == 0
        self.inputs = [_Feature(f, self.rank5, rank5_image, True) for f in spec.description.input]
        self.outputs = [_Feature(f, self.rank5, rank5_image, False) for f in spec.description.output]
        self.fixed = not any(f.flexible for f in self.inputs)
        self.weight_dtypes: set = set()
        self.params = 0
        self.layer_counts: dict = {}
        self.preprocess = self._preprocessing(nn)
        defined = {f.name for f in self.inputs}
        self.steps = []
        for proto in nn.layers:
            layer = _Layer(self, proto)
            kind = layer.kind
            self.layer_counts[kind] = self.layer_counts.get(kind, 0) + 1
            if kind not in LAYERS:
                layer.fail(f"{kind!r} layers are not implemented by the reference interpreter; "
                           f"implemented: {', '.join(IMPLEMENTED_LAYERS)}")
            build, lo, hi = LAYERS[kind]
            if len(layer.inputs) < lo or (hi is not None and len(layer.inputs) > hi):
                layer.fail(f"{len(layer.inputs)} inputs (this layer takes {lo}"
                           f"{'' if hi == lo else '+' if hi is None else f'-{hi}'})")
            if not layer.outputs:
                layer.fail("no output")
            for name in layer.inputs:
                if name not in defined:
                    layer.fail(f"reads {name!r}, which no earlier layer or input defines")
            for name in layer.outputs:
                if name in defined:
                    layer.fail(f"writes {name!r}, which is already defined")
                defined.add(name)
            tensors = [(int(t.rank), [int(d) for d in t.dimValue]) for t in proto.outputTensor]
            if tensors and len(tensors) != len(layer.outputs):
                layer.fail(f"{len(tensors)} outputTensor entries for {len(layer.outputs)} outputs")
            self.steps.append(_Step(layer, build(layer), tensors))
        for f in self.outputs:
            if f.name not in defined:
                _fail(f"model output {f.name!r} is never computed")
        self._plan_release()

    def _preprocessing(self, nn) -> dict:
        by_name = {f.name: f for f in self.inputs}
        out = {}
        for pre in nn.preprocessing:
            name = pre.featureName
            f = by_name.get(name)
            if f is None:
                _fail(f"preprocessing names {pre.featureName!r}, which is not an input")
            if f.kind != "imageType":
                _fail(f"preprocessing on input {name!r}, which is not an image")
            if name in out:
                _fail(f"input {name!r} has more than one preprocessing entry; their order is not defined")
            which = pre.WhichOneof("preprocessor")
            if which == "scaler":
                s = pre.scaler
                bias = {"RGB": [s.redBias, s.greenBias, s.blueBias], "BGR": [s.blueBias, s.greenBias, s.redBias]}.get(
                    f.color, [s.grayBias])
                scale = np.float32(s.channelScale)
                bias = np.asarray(bias, np.float32).reshape(-1, 1, 1)
                out[name] = lambda x, scale=scale, bias=bias: x * scale + bias
            elif which == "meanImage":
                mean = np.asarray(pre.meanImage.meanImage, np.float32)
                if f.flexible or mean.size != f.channels * f.height * f.width:
                    _fail(f"input {name!r}: mean image of {mean.size} values does not fit a "
                          f"{f.channels}x{f.height}x{f.width} image")
                mean = mean.reshape(f.channels, f.height, f.width)
                out[name] = lambda x, mean=mean: x - mean
            else:
                _fail(f"input {name!r}: empty preprocessing entry")
        return out

    def _plan_release(self):
        last = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last[name] = i
        keep = {f.name for f in self.outputs}
        for i, step in enumerate(self.steps):
            step.release = tuple(n for n in step.inputs if last.get(n) == i and n not in keep)

    def _check_tensor(self, step, name, y, declared):
        rank, dims = declared
        if rank and y.ndim != rank:
            _fail(f"layer {step.name!r} ({step.kind}): output {name!r} has rank {y.ndim}, the spec declares "
                  f"rank {rank} {dims}")
        if self.fixed and dims and len(dims) == y.ndim and any(d >= 0 and d != s for d, s in zip(dims, y.shape)):
            _fail(f"layer {step.name!r} ({step.kind}): output {name!r} has shape {list(y.shape)}, the spec "
                  f"declares {dims}")

    def run(self, blobs: dict, keep_all: bool = False) -> dict:
        env = dict(blobs)
        for name, fn in self.preprocess.items():
            env[name] = fn(env[name])
        for step in self.steps:
            xs = [env[n] for n in step.inputs]
            try:
                with np.errstate(over="ignore", under="ignore"):
                    result = step.fn(xs)
            except RuntimeFailed as e:   # a shared kernel's message gets the layer's name
                if f"layer {step.name!r}" in str(e):
                    raise
                _fail(f"layer {step.name!r} ({step.kind}): {str(e).removeprefix('coreml-mil: ')}")
            except BadInput:
                raise
            except Exception as e:
                _fail(f"layer {step.name!r} ({step.kind}) failed: {type(e).__name__}: {e}")
            results = result if isinstance(result, list) else [result]
            if len(results) != len(step.outputs):
                _fail(f"layer {step.name!r} ({step.kind}) computes {len(results)} outputs, the spec names "
                      f"{len(step.outputs)}")
            for i, (name, y) in enumerate(zip(step.outputs, results)):
                y = np.asarray(y, np.float32)
                if step.tensors:
                    self._check_tensor(step, name, y, step.tensors[i])
                env[name] = y
            if not keep_all:
                for name in step.release:
                    env.pop(name, None)
        if keep_all:
            return env
        return {f.name: f.from_blob(env[f.name], self.fixed) for f in self.outputs}


# --- the runner -----------------------------------------------------------------------------------

def load_spec(path):
    """The protobuf spec of an ``.mlmodel`` file (or of an already loaded ``MLModel``)."""
    try:
        import coremltools as ct
    except Exception as e:
        raise RuntimeUnavailable(f"coremltools is not importable ({e}); pip install coremltools") from None
    if isinstance(path, ct.models.MLModel):
        return path.get_spec()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BadInput(f"no such CoreML model: {path}")
    if os.path.isdir(path):
        _fail(f"{path} is a folder; neuralNetwork models are single .mlmodel files")
    try:
        return ct.utils.load_spec(path)
    except Exception as e:
        _fail(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def is_neural_network(path) -> bool:
    """True for a single-file CoreML model or a loaded MLModel whose spec is not an ML program: those
    open in this interpreter (which names what it cannot run)."""
    if type(path).__name__ == "MLModel" and hasattr(path, "get_spec"):
        return path.get_spec().WhichOneof("Type") != "mlProgram"
    try:
        return os.path.isfile(os.fspath(path))
    except TypeError:
        return False


class CoreMLNNRunner(Runner):
    """Run a ``neuralNetwork`` ``.mlmodel`` with the numpy reference interpreter, on any OS.

    ``path`` is an ``.mlmodel`` file or a loaded ``coremltools.models.MLModel``. Reached through the
    ``coreml-mil`` runtime (``CoreMLMilRunner`` dispatches here).
    """

    name = NAME
    runtime = "coreml-mil"
    formats = ("coreml",)
    imports = ("coremltools",)   # imported by the bench worker before open(): load time is the model's

    def _open(self):
        self._net = NeuralNetwork(load_spec(self.path))

    def _close(self):
        self._net = None

    @property
    def network(self) -> NeuralNetwork:
        self.open()
        return self._net

    def op_counts(self) -> dict:
        """How many layers of each kind the network holds."""
        return dict(self.network.layer_counts)

    def input_specs(self) -> list[TensorSpec]:
        return [f.spec() for f in self.network.inputs]

    def output_specs(self) -> list[TensorSpec]:
        net = self.network
        return [f.out_spec(net.fixed) for f in net.outputs]

    def _blobs(self, feeds: dict) -> dict:
        net = self.network
        missing = [f.name for f in net.inputs if f.name not in feeds]
        if missing:
            raise BadInput(f"missing input(s) {', '.join(missing)} (the model takes "
                           f"{', '.join(f.name for f in net.inputs)})")
        extra = set(feeds) - {f.name for f in net.inputs}
        if extra:
            raise BadInput(f"unknown input(s) {', '.join(sorted(extra))}")
        return {f.name: f.to_blob(feeds[f.name]) for f in net.inputs}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.network.run(self._blobs(feeds))

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every blob by its name, in the network's own (e.g. rank-5) shapes, after preprocessing."""
        return self.network.run(self._blobs(feeds), keep_all=True)

    def precision(self) -> str | None:
        """int8 when weights are stored as 8-bit linear-quantized values, fp16 when stored as float16
        (both computed in float32 here), else fp32 (look-up-table weights keep that name)."""
        kinds = self.network.weight_dtypes
        if not kinds:
            return None
        if "uint8" in kinds:
            return "int8"
        return "fp16" if "float16" in kinds else "fp32"

    def versions(self) -> dict:
        import coremltools as ct
        return {"coremltools": ct.__version__, "numpy": np.__version__}

    def describe(self) -> dict:
        net = self._net if self.is_open else None
        return {"threads": None, "interpreter": "numpy reference (not Apple's runtime)",
                "model_type": "neuralNetwork",
                "spec_version": net.spec_version if net else None,
                "shape_mapping": (("rank5" if net.rank5 else "exact") if net else None)}
