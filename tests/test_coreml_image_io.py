"""CoreML image I/O (export --coreml-io image) and the metadata every CoreML / TFLite file carries.

One tiny magenta-mobile bundle (CoreML with image I/O, TFLite and ONNX, fp32, 64 px) is exported once; the
coreml-mil interpreter runs it against PyTorch through `styleport parity`, LiteRT runs the TFLite
files (with their new metadata), and the metadata is read back with coremltools and with our
TFLite metadata reader. Small hand-made programs check the colour-layout decoding (BGR, bias,
grayscale) and the 8-bit output mode.
"""

import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli
from styleport.errors import BadInput
from styleport.export.bundle import export_bundle
from styleport.manifest import load as load_manifest
from styleport.manifest import validate
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config

CREDITS = {"author": "Test Author", "license": "CC-BY-4.0"}


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmlio")
    cfg = default_config("magenta-mobile", width=0.25)
    torch.manual_seed(3)
    model = build(cfg)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ck = save_checkpoint(model, cfg, tmp / "ck")
    out = tmp / "bundle"
    export_bundle(ck, out, ["onnx", "coreml", "tflite"], ["fp32"], size=64, style_size=64, progress=False,
                  coreml_io="image", credits=CREDITS)
    return out


def _art(doc, model, fmt):
    return next(a for a in doc["artifacts"] if a["model"] == model and a["format"] == fmt)


def test_manifest_records_image_io(image_bundle):
    doc = load_manifest(image_bundle)
    assert doc["export"]["coreml_io"] == "image"
    t = _art(doc, "transformer", "coreml")
    assert t["io"] == "image" and t["details"]["io"] == "image"
    ins = {e["name"]: e for e in t["inputs"]}
    out = t["outputs"][0]
    assert ins["content_image"]["dtype"] == "uint8" and ins["content_image"]["range"] == [0, 255]
    assert ins["content_image"]["image"] == {"color_layout": "RGB", "scale": 1 / 255, "bias": [0.0, 0.0, 0.0]}
    assert ins["style_bottleneck"]["dtype"] == "float32" and "image" not in ins["style_bottleneck"]
    assert out["name"] == "stylized_image" and out["dtype"] == "uint8" and out["image"]["scale"] == 255.0
    p = _art(doc, "predictor", "coreml")
    assert p["io"] == "image" and p["inputs"][0]["image"]["color_layout"] == "RGB"
    assert p["outputs"][0]["dtype"] == "float32"          # the bottleneck stays a tensor
    assert _art(doc, "transformer", "tflite")["io"] == "tensor"


def test_coreml_features_are_images(image_bundle):
    import coremltools as ct
    spec = ct.models.MLModel(str(image_bundle / "coreml/transformer.fp32.mlpackage"), skip_model_load=True).get_spec()
    kinds = {f.name: f.type.WhichOneof("Type") for f in list(spec.description.input) + list(spec.description.output)}
    assert kinds == {"content_image": "imageType", "style_bottleneck": "multiArrayType", "stylized_image": "imageType"}
    img = spec.description.input[0].type.imageType
    assert (img.width, img.height, type(img).ColorSpace.Name(img.colorSpace)) == (64, 64, "RGB")
    # the program scales the pixels by 1/255 first and the output by 255 (then clips) last
    f = spec.mlProgram.functions["main"]
    ops = [op for op in f.block_specializations[f.opset].operations if op.type != "const"]
    assert ops[0].type == "mul" and ops[0].outputs[0].name == "content_image__scaled__"
    assert [op.type for op in ops[-2:]] == ["mul", "clip"]


def test_coreml_mil_parity_of_image_programs(image_bundle, tmp_path):
    proc = run_cli("parity", image_bundle, "--runtimes", "coreml-mil,litert", "--threads", "1",
                   "--json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "p.json").read_text())["checks"]}
    for name in ("transformer/coreml/fp32@coreml-mil", "pipeline/coreml/fp32@coreml-mil",
                 "transformer/tflite/fp32@litert"):
        c = checks[name]
        assert c["status"] == "pass", c
        assert c["parity"]["max_abs"] <= 1e-3, c      # the fp32 gate, even for the chained pipeline
    assert checks["transformer/coreml/fp32@coreml-mil"]["tolerance"]["max_abs"] == 1e-3
    assert checks["predictor/coreml/fp32@coreml-mil"]["status"] == "pass"
    assert checks["predictor/tflite/fp32@litert"]["status"] == "pass"


def test_coreml_mil_image_feeds_and_pixel_output(image_bundle):
    from styleport.runtime.coreml.runner import CoreMLMilRunner
    path = image_bundle / "coreml/transformer.fp32.mlpackage"
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    b = rng.standard_normal((1, 100, 1, 1)).astype(np.float32)
    with CoreMLMilRunner(path) as r:
        specs = {s.name: s for s in r.input_specs()}
        assert (specs["content_image"].dtype, specs["content_image"].range, specs["content_image"].shape) == \
            ("uint8", [0, 255], [1, 3, 64, 64])
        out_spec = r.output_specs()[0]
        assert (out_spec.dtype, out_spec.range) == ("float32", [0, 255])
        y = r.run({"content_image": px, "style_bottleneck": b})["stylized_image"]
        assert y.dtype == np.float32 and 0 <= y.min() and y.max() <= 255 and y.max() > 1.5   # 0..255 scale
        # the same pixels as whole-valued floats are accepted; fractional values or a wrong size are not
        y2 = r.run({"content_image": px.astype(np.float32), "style_bottleneck": b})["stylized_image"]
        np.testing.assert_array_equal(y, y2)
        with pytest.raises(BadInput, match="8-bit pixels"):
            r.run({"content_image": px / 255.0, "style_bottleneck": b})
        with pytest.raises(BadInput, match="the model wants"):
            r.run({"content_image": px[:, :, :32], "style_bottleneck": b})
    with CoreMLMilRunner(path, image_output="pixels") as r:
        assert r.output_specs()[0].dtype == "uint8"
        p = r.run({"content_image": px, "style_bottleneck": b})["stylized_image"]
    assert p.dtype == np.uint8
    np.testing.assert_array_equal(p, np.rint(y).astype(np.uint8))


def test_adapt_round_trip_for_pixel_io():
    from styleport.runtime.harness.adapt import IOPlan
    from styleport.runtime.runners.base import TensorSpec
    ins = [TensorSpec("content_image", [1, 3, 8, 8], "uint8", "NCHW", [0, 255])]
    outs = [TensorSpec("stylized_image", [1, 3, 8, 8], "float32", "NCHW", [0, 255])]
    plan = IOPlan(ins, outs, (8, 8))
    can = plan.canonical_feeds(seed=1)["content_image"]
    np.testing.assert_array_equal(can, np.round(can * 255) / 255)          # on the 8-bit grid
    feeds = plan.feeds({"content_image": can})["content_image"]
    assert feeds.dtype == np.uint8
    np.testing.assert_array_equal(feeds.astype(np.float32) / 255, can.astype(np.float32))
    given = plan.canonical_feeds({"content_image": np.full((1, 3, 8, 8), 0.5004, np.float32)})["content_image"]
    assert np.all(given == np.float32(128 / 255))                            # given images rounded, not cut
    back = plan.canonical_outputs({"stylized_image": feeds.astype(np.float32)})["stylized_image"]
    np.testing.assert_allclose(back, can, atol=1e-7)


def _tiny_image_program(tmp_path, color, bias, scale=1 / 255.0):
    """A 1x1 conv (distinct weights per channel) converted with an ImageType input and output."""
    import coremltools as ct
    c = 1 if color == "GRAYSCALE" else 3
    conv = torch.nn.Conv2d(c, c, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1, c * c + 1, dtype=torch.float32).reshape(c, c, 1, 1) / (c * c))
    layout = getattr(ct.colorlayout, color)
    traced = torch.jit.trace(conv.eval(), torch.rand(1, c, 4, 5))
    ml = ct.convert(traced, inputs=[ct.ImageType(name="x", shape=(1, c, 4, 5), scale=scale,
                                                 bias=bias if c == 3 else bias[0],
                                                 color_layout=layout)],
                    outputs=[ct.ImageType(name="y", color_layout=layout)], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32)
    path = tmp_path / f"{color}.mlpackage"
    ml.save(str(path))
    return conv, path


@pytest.mark.parametrize("color,bias", [("RGB", [0.1, -0.2, 0.3]), ("BGR", [0.1, -0.2, 0.3]),
                                        ("GRAYSCALE", [0.25])])
def test_colour_layout_scale_and_bias_are_decoded(tmp_path, color, bias):
    from styleport.runtime.coreml.runner import CoreMLMilRunner
    conv, path = _tiny_image_program(tmp_path, color, bias)
    c = 1 if color == "GRAYSCALE" else 3
    px = np.random.default_rng(5).integers(0, 256, (1, c, 4, 5), dtype=np.uint8)
    planes = px[:, ::-1] if color == "BGR" else px           # what Core ML hands the program
    x = torch.from_numpy(planes.astype(np.float32) / 255.0 + np.asarray(bias, np.float32).reshape(1, -1, 1, 1))
    with torch.no_grad():
        want = conv(x).numpy()
    want = want[:, ::-1] if color == "BGR" else want          # the output image, back in RGB order
    with CoreMLMilRunner(path) as r:
        assert r.input_specs()[0].shape == [1, c, 4, 5]
        got = r.run({"x": px})["y"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    if color == "BGR":   # the channel order matters: reading the planes as RGB would be wrong
        assert np.abs(got - (want[:, ::-1])).max() > 1e-3


def test_coreml_metadata_read_back(image_bundle):
    import coremltools as ct
    for net, names in (("transformer", {"content_image", "style_bottleneck", "stylized_image"}),
                       ("predictor", {"style_image", "style_bottleneck"})):
        ml = ct.models.MLModel(str(image_bundle / f"coreml/{net}.fp32.mlpackage"), skip_model_load=True)
        assert ml.author == "Test Author" and ml.license == "CC-BY-4.0"
        assert ml.short_description.startswith("Style ") and "image I/O" in ml.short_description
        assert ml.version.startswith("0.") and "+ckpt." in ml.version
        assert set(ml.input_description) | set(ml.output_description) == names
        for n in names:
            text = ml.input_description[n] if n in ml.input_description else ml.output_description[n]
            assert len(text) > 20, (n, text)
        assert ml.user_defined_metadata["styleport.io"] == "image"
        assert ml.user_defined_metadata["styleport.model"] == net
    doc = load_manifest(image_bundle)
    assert _art(doc, "transformer", "coreml")["details"]["metadata"]["license"] == "CC-BY-4.0"


def test_tflite_metadata_read_back(image_bundle):
    from styleport.export.tflite_metadata import read
    for net, ins, outs in (("transformer", ["content_image", "style_bottleneck"], ["stylized_image"]),
                           ("predictor", ["style_image"], ["style_bottleneck"])):
        md = read(image_bundle / f"tflite/{net}.fp32.tflite")
        assert md["name"] == f"styleport magenta-mobile {net} (fp32)"
        assert "tflite fp32" in md["description"] and md["version"].startswith("0.")
        assert md["author"] == "Test Author" and md["license"] == "CC-BY-4.0"
        assert md["min_parser_version"] == "1.0.0"
        assert sorted(t["name"] for t in md["inputs"]) == sorted(ins)
        assert [t["name"] for t in md["outputs"]] == outs
        tensors = {t["name"]: t for t in md["inputs"] + md["outputs"]}
        for name in ("content_image", "style_image"):
            if name in tensors:
                assert tensors[name]["normalization"] == {"mean": [0.0], "std": [255.0]}
                assert tensors[name]["content"]["image"]["color_space"] == "RGB"
                assert tensors[name]["content"]["image"]["default_size"] == [64, 64]
        if "stylized_image" in tensors:
            n = tensors["stylized_image"]["normalization"]
            assert n["mean"] == [0.0] and n["std"][0] == pytest.approx(1 / 255, rel=1e-6)
        assert tensors["style_bottleneck"]["normalization"] is None
        assert tensors["style_bottleneck"]["content"] == {"feature": {}}


def test_tflite_metadata_order_follows_the_subgraph(image_bundle):
    """The schema wants input_tensor_metadata in SubGraph.inputs order."""
    from ai_edge_litert.interpreter import Interpreter

    from styleport.export.tflite_metadata import read
    path = image_bundle / "tflite/transformer.fp32.tflite"
    it = Interpreter(model_path=str(path))
    sig = it.get_signature_runner().get_input_details()
    by_index = {d["index"]: n for n, d in sig.items()}
    order = [by_index[d["index"]] for d in it.get_input_details()]
    assert [t["name"] for t in read(path)["inputs"]] == order


def test_tflite_metadata_encode_decode_and_replace(tmp_path):
    from styleport.export.tflite_metadata import decode_metadata, encode_metadata
    meta = {"name": "n", "description": "d", "version": "1", "author": "a", "license": "MIT"}
    blob = encode_metadata(meta, [{"name": "content_image", "description": "x", "size": (3, 5),
                                   "normalization": {"mean": [0.5, 0.5, 0.5], "std": [2.0, 2.0, 2.0]},
                                   "stats": (0.0, 1.0)}],
                           [{"name": "style_bottleneck", "description": "y"}])
    assert blob[4:8] == b"M001"
    d = decode_metadata(blob)
    assert (d["name"], d["description"], d["version"], d["author"], d["license"]) == ("n", "d", "1", "a", "MIT")
    t = d["inputs"][0]
    assert t["normalization"] == {"mean": [0.5] * 3, "std": [2.0] * 3}
    assert t["content"]["image"]["default_size"] == [5, 3]   # width, height
    assert t["stats"] == {"max": [1.0], "min": [0.0]}
    with pytest.raises(ValueError, match="file identifier"):
        decode_metadata(b"\0" * 16)


def test_restamping_replaces_and_litert_still_runs(image_bundle, tmp_path):
    import shutil

    from ai_edge_litert.interpreter import Interpreter

    from styleport.export.tflite_metadata import ENTRY, read, write
    src = image_bundle / "tflite/predictor.fp32.tflite"
    dst = tmp_path / "p.tflite"
    shutil.copy(src, dst)
    meta = {"name": "again", "description": "d", "version": "2", "author": "a", "license": "MIT",
            "inputs": {}, "outputs": {}}
    write(dst, meta, ["style_image"], ["style_bottleneck"])
    assert read(dst)["name"] == "again"
    from ai_edge_litert import schema_py_generated as S
    m = S.Model.GetRootAs(bytearray(dst.read_bytes()), 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    assert names.count(ENTRY) == 1 and "min_runtime_version" in names
    x = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    a = next(iter(Interpreter(model_path=str(src)).get_signature_runner()(style_image=x).values()))
    b = next(iter(Interpreter(model_path=str(dst)).get_signature_runner()(style_image=x).values()))
    np.testing.assert_array_equal(a, b)


def test_manifest_validation_of_image_entries(image_bundle):
    doc = json.loads((image_bundle / "manifest.json").read_text())
    validate(doc)
    for a in doc["artifacts"]:   # a manifest from before this field still reads
        a.pop("io", None)
    validate(doc)
    bad = json.loads((image_bundle / "manifest.json").read_text())
    bad["artifacts"][0]["io"] = "pixels"
    with pytest.raises(BadInput, match="io"):
        validate(bad)
    bad = json.loads((image_bundle / "manifest.json").read_text())
    coreml = next(a for a in bad["artifacts"] if a["io"] == "image")
    coreml["inputs"][0]["dtype"] = "float32"
    with pytest.raises(BadInput, match="8-bit pixels"):
        validate(bad)
    coreml["inputs"][0]["dtype"] = "uint8"
    coreml["inputs"][0]["image"]["color_layout"] = "CMYK"
    with pytest.raises(BadInput, match="color_layout"):
        validate(bad)


def test_cli_rejects_an_unknown_io_kind(tmp_path):
    proc = run_cli("export", tmp_path / "nothing", "--out", tmp_path / "b", "--coreml-io", "pixels")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--coreml-io" in proc.stderr


def test_export_help_mentions_the_new_flags():
    out = run_cli("export", "--help").stdout
    for flag in ("--coreml-io", "--author", "--license"):
        assert flag in out


def test_bundle_rejects_bad_io_kind(tmp_path):
    cfg = default_config("johnson", width=0.125)
    ck = save_checkpoint(build(cfg), cfg, tmp_path / "ck")
    with pytest.raises(BadInput, match="coreml-io"):
        export_bundle(ck, tmp_path / "b", ["coreml"], ["fp32"], size=32, progress=False, coreml_io="pixels")
    assert not (tmp_path / "b").exists()


def test_one_line_error_for_a_missing_checkpoint_with_image_io(tmp_path):
    assert_one_line_error(run_cli("export", tmp_path / "nope", "--out", tmp_path / "b", "--coreml-io", "image",
                                  "--formats", "coreml"), 2, "checkpoint")


def test_inspect_shows_image_features_and_metadata(image_bundle):
    from styleport.export.inspect import inspect_file
    info = inspect_file(image_bundle / "coreml/transformer.fp32.mlpackage")
    io = {t["name"]: t for t in info["inputs"] + info["outputs"]}
    assert io["content_image"]["shape"] == [1, 3, 64, 64] and io["content_image"]["dtype"] == "image"
    assert io["content_image"]["image"]["color_space"] == "RGB"
    assert io["content_image"]["image"]["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert io["stylized_image"]["dtype"] == "image" and io["stylized_image"]["image"]["color_space"] == "RGB"
    assert info["metadata"]["license"] == "CC-BY-4.0" and info["metadata"]["io"]["content_image"] == "image"
    t = inspect_file(image_bundle / "tflite/transformer.fp32.tflite")
    assert t["metadata"]["name"] == "styleport magenta-mobile transformer (fp32)"
    json.dumps(info), json.dumps(t)


def test_onnx_metadata_read_back_with_onnxruntime(image_bundle):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(image_bundle / "onnx/transformer.fp32.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta()
    assert meta.description.startswith("Style transfer network") and "onnx fp32, tensor I/O" in meta.description
    custom = meta.custom_metadata_map
    assert custom["author"] == "Test Author" and custom["license"] == "CC-BY-4.0"
    assert custom["name"] == "styleport magenta-mobile transformer (fp32)" and "+ckpt." in custom["version"]
    assert json.loads(custom["normalization.content_image"]) == {"mean": [0.0], "std": [255.0]}
    import onnx
    g = onnx.load(str(image_bundle / "onnx/transformer.fp32.onnx")).graph
    assert all(v.doc_string for v in list(g.input) + list(g.output))


def test_tensor_io_stays_the_default_and_carries_metadata(tmp_path):
    import coremltools as ct
    cfg = default_config("johnson", width=0.125)
    ck = save_checkpoint(build(cfg), cfg, tmp_path / "ck", extra={"license": "MIT"})
    doc = export_bundle(ck, tmp_path / "b", ["coreml"], ["fp32"], size=32, progress=False)
    a = doc["artifacts"][0]
    assert a["io"] == "tensor" and doc["export"]["coreml_io"] == "tensor"
    assert all("image" not in e and e["dtype"] == "float32" for e in a["inputs"] + a["outputs"])
    ml = ct.models.MLModel(str(tmp_path / "b" / a["path"]), skip_model_load=True)
    spec = ml.get_spec()
    assert {f.type.WhichOneof("Type") for f in list(spec.description.input) + list(spec.description.output)} == \
        {"multiArrayType"}
    assert ml.license == "MIT"                                  # from the checkpoint's own config
    assert ml.author.startswith("styleport user") and "one style" in ml.short_description
    assert "[0, 1]" in ml.input_description["content_image"]
    assert ml.user_defined_metadata["styleport.io"] == "tensor"


def _tree_state(folder):
    """Every entry under ``folder`` (folders included) with its mtime in ns and size."""
    from pathlib import Path
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in [folder, *folder.rglob("*")]}


def test_coreml_mil_reads_packages_without_writing_to_them(image_bundle):
    """Issue 20's flaky parity (exit 2 once, 0 on rerun): coremltools' MLModel(path) rewrote the
    package's Manifest.json through a ``Manifest.<uuid>`` temp file on every open, so a bundle being
    hashed by another process's manifest check at that moment showed an extra file (sha256 mismatch,
    exit 2). coreml-mil (and `styleport inspect`) now read packages without writing to them."""
    from styleport.export.inspect import inspect_file
    from styleport.runtime.coreml.runner import CoreMLMilRunner
    before = _tree_state(image_bundle)
    rng = np.random.default_rng(1)
    for name in ("predictor", "transformer"):
        path = image_bundle / f"coreml/{name}.fp32.mlpackage"
        with CoreMLMilRunner(path) as r:
            feeds = {s.name: (rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == "uint8"
                              else rng.standard_normal(s.shape).astype(np.float32)) for s in r.input_specs()}
            r.run(feeds)
        inspect_file(path)
    assert _tree_state(image_bundle) == before
    load_manifest(image_bundle)   # still verifies
