"""``coreml-mil``: a reference interpreter for saved CoreML ML programs, on any OS (issue #10).

``MLModel.predict`` runs only on macOS, so on Linux a converted ``.mlpackage`` could only be checked
for "conversion did not crash". This runner reads the package itself and computes its outputs with
numpy, so CI on Linux can check the *numbers* a converted program computes against PyTorch:

- the spec comes from the package's files, read-only (:mod:`styleport.runtime.coreml.package`); the
  program is the ``main`` function of ``spec.mlProgram`` (its opset block, e.g. ``CoreML6`` for iOS16);
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
output), layout NCHW, range [0, 255], so ``styleport.runtime.harness.adapt`` maps the harness's [0,1]
images to pixels and back.

Semantics follow the MIL op definitions in coremltools (``converters/mil/mil/ops/defs``). Anything else —
another op, a vector-palettised LUT, a 3-D conv, state or list values — raises
:class:`~styleport.runtime.runners.base.RuntimeFailed` (exit 3) naming it; the interpreter never guesses.
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
:mod:`styleport.runtime.coreml.nn`; ``CoreMLMilRunner`` hands them over, so ``coreml-mil`` opens both.

Limitation: this is a reference interpreter of the *program file*, not Apple's runtime. It proves the
converter emitted a program (ops, attributes, weights, compression) that computes the right numbers;
it cannot catch bugs in Apple's MIL compiler, the Neural Engine / GPU kernels, or their fp16
accumulation and operator fusion, and it says nothing about speed. Confirm on a Mac before shipping.
"""

from __future__ import annotations

import numpy as np

from styleport.errors import BadInput
from styleport.runtime.coreml.image import IMAGE_CHANNELS, IMAGE_OUTPUT_MODES, color_space, image_hw
from styleport.runtime.coreml.nn import CoreMLNNRunner, is_neural_network
from styleport.runtime.coreml.ops import FEATURE_DTYPES, NAME, fail
from styleport.runtime.coreml.package import read_package
from styleport.runtime.coreml.program import MilProgram
from styleport.runtime.runners.base import Runner, RuntimeUnavailable, TensorSpec


class CoreMLMilRunner(Runner):
    """Run a saved ``.mlpackage`` (ML program) with the numpy reference interpreter, on any OS.

    ``path`` is a ``.mlpackage`` directory (or an already loaded ``coremltools.models.MLModel``).
    Options: ``function`` (default ``main``); ``image_output`` ("float", default, or "pixels": see
    the module docstring). A single-file ``.mlmodel`` (or a loaded neuralNetwork model) opens in the
    sibling interpreter, :class:`styleport.runtime.coreml.nn.CoreMLNNRunner`.
    """

    name = NAME
    runtime = "coreml-mil"
    formats = ("coreml",)

    def __new__(cls, path=None, *args, **kwargs):
        if cls is CoreMLMilRunner:
            if is_neural_network(path):
                return CoreMLNNRunner(path, *args, **kwargs)
        return super().__new__(cls)

    def _open(self):
        try:
            import coremltools as ct
        except Exception as e:
            raise RuntimeUnavailable(f"coremltools is not importable ({e}); pip install coremltools") from None
        model = self.path
        if isinstance(model, ct.models.MLModel):
            self._spec = model.get_spec()
            weights_dir = getattr(model, "weights_dir", None)
        else:   # read-only: coremltools' MLModel(path) rewrites the package's Manifest.json (package.py)
            self._spec, weights_dir = read_package(model)
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
                fail(f"input {name!r} is a {kind}; only tensor (multiArray) and image inputs are implemented")
        for f in self._spec.description.output:
            if f.type.WhichOneof("Type") == "imageType":
                self._images_out[f.name] = self._image_feature(f, self._program.out_types.get(f.name, (None, None))[1],
                                                               "output")

    @staticmethod
    def _image_feature(f, dims, what) -> str:
        space = color_space(f)
        if space not in IMAGE_CHANNELS:
            fail(f"image {what} {f.name!r} has colour space {space}, which is not implemented")
        if dims is not None and (len(dims) != 4 or dims[0] not in (1, None)
                                 or dims[1] not in (IMAGE_CHANNELS[space], None)):
            fail(f"image {what} {f.name!r} ({space}) is a program tensor of shape "
                  f"{['?' if d is None else d for d in dims]}, not [1, {IMAGE_CHANNELS[space]}, H, W]")
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
                hw, _ = image_hw(f)
                specs.append(TensorSpec(name, [1, IMAGE_CHANNELS[self._images_in[name]]] + hw, "uint8", "NCHW",
                                        [0, 255]))
                continue
            if f is not None:
                arr = f.type.multiArrayType
                dtype_name = FEATURE_DTYPES.get(
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
        c = IMAGE_CHANNELS[space]
        shape = list(value.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != c:
            raise BadInput(f"image input {name!r} ({space}) takes pixels shaped [1, {c}, H, W], got {shape}")
        if value.dtype != np.uint8:
            if value.dtype.kind not in "iuf" or value.size and (
                    not np.all(np.isfinite(value)) or value.min() < 0 or value.max() > 255
                    or np.any(value != np.round(value))):
                raise BadInput(f"image input {name!r} takes 8-bit pixels (uint8, or whole numbers 0..255), "
                               f"got {value.dtype} values that are not")
        hw, ranges = image_hw(f)
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


