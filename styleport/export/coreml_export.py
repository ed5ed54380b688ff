"""torch -> CoreML ML program with coremltools (from a traced module).

fp32 and fp16 compute precision; the I/O dtypes are set to float32 explicitly (with an iOS16 target
an FP16 program would otherwise silently get float16 I/O); outputs are named. Flexible content size
with ``dynamic``: ct.RangeDim on H and W. Prediction needs macOS: on Linux the saved package is
validated by loading its spec without compiling it (``skip_model_load=True``).

Two I/O kinds (``export --coreml-io``):

- ``tensor`` (default): every input and output is an MLMultiArray, images float32 NCHW in [0,1].
- ``image``: ``content_image`` and ``style_image`` are ``ct.ImageType`` (RGB, scale 1/255, bias 0:
  the program multiplies the 8-bit pixels by 1/255, so the network sees [0,1] as in training) and
  ``stylized_image`` is an image output, as Create ML style-transfer models expose: Swift passes a
  ``CVPixelBuffer`` and gets one back. coremltools allows no scale on an image *output*, and Core ML
  turns the output tensor's values into 8-bit pixels as they are, so the program itself multiplies
  the network's [0,1] output by 255 and clips it to [0,255] (the clip makes the pixels well defined
  whatever rounding or saturation the runtime applies). The style bottleneck (the predictor's
  output, the transformer's second input) stays a float32 tensor. Image outputs need an iOS16+ target
  (ours). With ``dynamic`` the image input takes 64..4096 px per side and the output image is
  flexible (coremltools writes the size range [1, -1] for it).

Every package gets its metadata (author, license, short description, version, one description per
input and output, and ``styleport.*`` user-defined keys) from :func:`set_metadata`, which edits the
spec inside the package in place (no re-save, so the weights and identifiers are untouched).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from styleport.export.timing import step
from styleport.export.wrappers import quiet_torch_export

TARGET = "iOS16"
EXT = ".mlpackage"
NATIVE = ("fp32", "fp16")
BASE = "file"
DYNAMIC = True


def export(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path, opts) -> dict:
    """The format table's entry point (export/formats.py)."""
    return export_coreml(module, sample, inputs, outputs, path, precision=opts.precision, dynamic=opts.dynamic)


def check(path: Path, feeds: dict):
    from styleport.export.formats import CheckSkipped
    raise CheckSkipped("CoreML prediction needs macOS")


IO_KINDS = ("tensor", "image")
IMAGE_NAMES = ("content_image", "style_image", "stylized_image")
PIXEL_SCALE = 1.0 / 255.0


def image_io(inputs: list, outputs: list, io: str = "tensor") -> tuple[list, list]:
    """The manifest entries of a CoreML artefact with ``io`` I/O. With "image", the image-named
    entries become 8-bit RGB images: dtype uint8, range [0, 255], plus an ``image`` block saying how
    the program maps pixels (inputs: ``x = pixel * scale + bias``; outputs: ``pixel = clip(y *
    scale, 0, 255)``). Shapes and layout stay the program's NCHW view ([1,3,H,W])."""
    if io not in IO_KINDS:
        raise ValueError(f"unknown CoreML I/O kind {io!r} (choose from {', '.join(IO_KINDS)})")
    if io == "tensor":
        return inputs, outputs

    def as_image(e, is_input):
        if e["name"] not in IMAGE_NAMES:
            return e
        block = ({"color_layout": "RGB", "scale": PIXEL_SCALE, "bias": [0.0, 0.0, 0.0]} if is_input else
                 {"color_layout": "RGB", "scale": 255.0, "clip": [0.0, 255.0]})
        return dict(e, dtype="uint8", range=[0, 255], image=block)

    return [as_image(e, True) for e in inputs], [as_image(e, False) for e in outputs]


def io_kind(inputs: list, outputs: list) -> str:
    return "image" if any("image" in e for e in list(inputs) + list(outputs)) else "tensor"


class _PixelOutput(torch.nn.Module):
    """The network's [0,1] image -> 0..255 values for a CoreML image output (clipped)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        return torch.clamp(self.inner(*args) * 255.0, 0.0, 255.0)


def export_coreml(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path,
                  precision: str = "fp32", dynamic: bool = False) -> dict:
    """Convert ``module``; the I/O kind comes from the entries (``image`` blocks, see :func:`image_io`)."""
    io = io_kind(inputs, outputs)
    if any("image" in o for o in outputs):
        module = _PixelOutput(module).eval()
    with quiet_torch_export(), torch.no_grad():
        import coremltools as ct
        with step("trace"):
            traced = torch.jit.trace(module, sample, check_trace=False)
        ct_inputs = []
        for spec, t in zip(inputs, sample):
            shape = tuple(t.shape)
            if dynamic and spec["name"] == "content_image":
                shape = ct.Shape(shape=(1, 3, ct.RangeDim(64, 4096, default=shape[2]),
                                        ct.RangeDim(64, 4096, default=shape[3])))
            if "image" in spec:
                ct_inputs.append(ct.ImageType(name=spec["name"], shape=shape, scale=spec["image"]["scale"],
                                              bias=list(spec["image"]["bias"]), color_layout=ct.colorlayout.RGB))
            else:
                ct_inputs.append(ct.TensorType(name=spec["name"], shape=shape, dtype=np.float32))
        ct_outputs = [ct.ImageType(name=o["name"], color_layout=ct.colorlayout.RGB) if "image" in o
                      else ct.TensorType(name=o["name"], dtype=np.float32) for o in outputs]
        with step("convert"):
            ml = ct.convert(traced, inputs=ct_inputs, outputs=ct_outputs,
                            convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, TARGET),
                            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                            compute_units=ct.ComputeUnit.ALL)
            ml.short_description = "styleport export"
            path.parent.mkdir(parents=True, exist_ok=True)
            ml.save(str(path))
    _stable_identifiers(path)
    # Validate the way Linux can: reload the spec without compiling.
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    got = [i.name for i in spec.description.input]
    if got != [s["name"] for s in inputs]:
        raise RuntimeError(f"CoreML package inputs {got} differ from {[s['name'] for s in inputs]}")
    for feats, entries in ((spec.description.input, inputs), (spec.description.output, outputs)):
        for f, e in zip(feats, entries):
            want = "imageType" if "image" in e else "multiArrayType"
            if f.type.WhichOneof("Type") != want:
                raise RuntimeError(f"CoreML feature {f.name!r} is a {f.type.WhichOneof('Type')}, expected {want}")
    return {"deployment_target": TARGET, "compute_precision": precision, "flexible_hw": bool(dynamic),
            "io": io, "spec_version": spec.specificationVersion,
            "prediction": "macOS only (coremltools cannot run ML programs on Linux)"}


def _spec_file(package: Path) -> Path:
    """The model spec (protobuf) inside an .mlpackage, found through its Manifest.json."""
    doc = json.loads((Path(package) / "Manifest.json").read_text())
    item = doc["itemInfoEntries"][doc["rootModelIdentifier"]]
    return Path(package) / "Data" / item["path"]


def set_metadata(package: Path, meta: dict) -> None:
    """Write ``meta`` (styleport.export.metadata.describe) into the package's model description:
    author, license, short description, version string, each feature's short description and the
    user-defined keys. Edits the spec file in place; weights and identifiers stay as they are."""
    from coremltools.proto import Model_pb2
    f = _spec_file(package)
    spec = Model_pb2.Model()
    spec.ParseFromString(f.read_bytes())
    md = spec.description.metadata
    md.author = meta["author"]
    md.license = meta["license"]
    md.shortDescription = meta["description"]
    md.versionString = meta["version"]
    for key, value in meta.get("user_defined", {}).items():
        md.userDefined[key] = str(value)
    for feats, texts in ((spec.description.input, meta["inputs"]), (spec.description.output, meta["outputs"])):
        for feat in feats:
            if feat.name in texts:
                feat.shortDescription = texts[feat.name]
    f.write_bytes(spec.SerializeToString(deterministic=True))


def read_metadata(package: Path) -> dict:
    """The metadata of a saved package, read from its spec file without writing to the package
    (coremltools' MLModel(path) rewrites Manifest.json: styleport.runtime.coreml.package)."""
    from styleport.runtime.coreml.package import read_package
    if Path(package).is_dir():
        spec = read_package(package)[0]
    else:   # a single-file neuralNetwork .mlmodel
        import coremltools as ct
        spec = ct.utils.load_spec(str(package))
    md = spec.description.metadata
    return {"author": md.author, "license": md.license, "description": md.shortDescription,
            "version": md.versionString, "user_defined": dict(md.userDefined),
            "inputs": {i.name: i.shortDescription for i in spec.description.input},
            "outputs": {o.name: o.shortDescription for o in spec.description.output},
            "io": {f.name: "image" if f.type.WhichOneof("Type") == "imageType" else "tensor"
                   for f in list(spec.description.input) + list(spec.description.output)}}


def _stable_identifiers(package: Path) -> None:
    """coremltools names the package items with random UUIDs, so two exports of the same model
    differ. Replace them with UUIDs derived from each item's path: same model, same bytes."""
    import uuid
    mpath = Path(package) / "Manifest.json"
    doc = json.loads(mpath.read_text())
    entries = doc.get("itemInfoEntries", {})
    remap = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, "styleport:" + e.get("path", old))).upper()
             for old, e in entries.items()}
    doc["itemInfoEntries"] = {remap[k]: v for k, v in sorted(entries.items(), key=lambda kv: remap[kv[0]])}
    if doc.get("rootModelIdentifier") in remap:
        doc["rootModelIdentifier"] = remap[doc["rootModelIdentifier"]]
    mpath.write_text(json.dumps(doc, indent=4, sort_keys=True) + "\n")
