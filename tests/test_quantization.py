"""Quantization (issue #5): fp16 / int8 variants for ONNX, TFLite and CoreML, calibration sets,
quality report, sensitivity search. Tiny random-weight models; the trained-weight targets are
asserted only with Google's files (../shared/data/magenta), skipped when absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from styleport.errors import BadInput
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config
from styleport.quantization import calibration as C

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MAGENTA = SHARED / "magenta"
IMAGES = SHARED / "images"


def _tiny(tmp, preset="magenta-mobile", **kw):
    torch.manual_seed(0)
    cfg = default_config(preset, width=0.25, **kw)
    model = build(cfg).eval()
    save_checkpoint(model, cfg, tmp / f"ckpt-{preset}")
    return tmp / f"ckpt-{preset}", model


def _write_images(folder: Path, n: int, size=48, seed=0):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = (rng.random((size, size + 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One tiny export of every format x fp32/fp16/int8, calibrated on image folders."""
    from styleport.export.bundle import export_bundle
    tmp = tmp_path_factory.mktemp("q")
    ckpt, model = _tiny(tmp)
    content = _write_images(tmp / "content", 6, seed=1)
    style = _write_images(tmp / "style", 5, seed=2)
    man = export_bundle(ckpt, tmp / "b", formats=("onnx", "tflite", "coreml"), precisions=("fp32", "fp16", "int8"),
                        size=64, style_size=64, progress=False,
                        calibration={"content": str(content), "style": str(style), "count": 4, "synthetic": False})
    return tmp / "b", man


def _art(man, model, fmt, prec, variant=None):
    got = [a for a in man["artifacts"] if (a["model"], a["format"], a["precision"], a.get("variant")) ==
           (model, fmt, prec, variant)]
    assert len(got) == 1, (model, fmt, prec, variant)
    return got[0]


def test_every_variant_is_written_and_smaller(bundle):
    root, man = bundle
    from styleport.manifest import load
    load(root)  # sizes and hashes verify, variant keys unique
    for net in ("predictor", "transformer"):
        onnx_variants = ("dynamic", "static", "a16w8") if net == "predictor" else ("dynamic", "a16w8")
        tflite_variants = ("dynamic", "int16x8") if net == "predictor" else ("full", "int16x8")  # plain: full-integer
        for fmt, variants in (("onnx", onnx_variants), ("tflite", tflite_variants),
                              ("coreml", ("palettize8", "palettize6", "palettize4"))):
            fp32 = _art(man, net, fmt, "fp32")["bytes"]
            fp16 = _art(man, net, fmt, "fp16")["bytes"]
            int8 = _art(man, net, fmt, "int8")["bytes"]
            assert fp16 < 0.8 * fp32, (net, fmt)
            assert int8 < fp16, (net, fmt)
            for v in variants:
                a = _art(man, net, fmt, "int8", v)
                assert (root / a["path"]).exists()
                assert a["bytes"] < 0.8 * fp32, (net, fmt, v)
    # the predictor is big enough for the 8-bit ratio to show (the tiny transformer is mostly graph)
    p32 = _art(man, "predictor", "onnx", "fp32")["bytes"]
    assert _art(man, "predictor", "onnx", "int8", "dynamic")["bytes"] < 0.4 * p32  # depthwise stay float
    assert _art(man, "predictor", "onnx", "int8")["bytes"] < 0.4 * p32  # QDQ scales weigh more at width 0.25
    t32 = _art(man, "predictor", "tflite", "fp32")["bytes"]
    assert _art(man, "predictor", "tflite", "int8", "dynamic")["bytes"] < 0.35 * t32
    # full-integer: the file also holds per-tensor quantization records and 1.2 KB of metadata (0.40x at
    # width 0.25), so judge the constant tensors: int8 weights (+ int32 biases) vs fp32 ones
    assert _tensor_bytes(root / _art(man, "predictor", "tflite", "int8")["path"]) < 0.3 * _tensor_bytes(
        root / _art(man, "predictor", "tflite", "fp32")["path"])
    assert _art(man, "predictor", "tflite", "int8")["bytes"] < 0.45 * t32
    pal = [_art(man, "predictor", "coreml", "int8", f"palettize{b}")["bytes"] for b in (8, 6, 4)]
    assert pal[0] > pal[1] > pal[2]


def _tensor_bytes(path) -> int:
    """Bytes of the constant tensors of a .tflite (weights, biases), graph and metadata left out."""
    from ai_edge_litert.tools import flatbuffer_utils as fu
    m = fu.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    used = {t.buffer for sg in m.subgraphs for t in sg.tensors}
    return sum(len(m.buffers[b].data) for b in used if m.buffers[b].data is not None)


def test_quality_report_psnr_and_ops(bundle):
    root, man = bundle
    doc = json.loads((root / "quality.json").read_text())
    assert (root / "quality.md").read_text().startswith("# Quantization quality")
    rows = {(r["model"], r["format"], r["precision"], r.get("variant")): r for r in doc["results"]}
    assert len(rows) == len(man["artifacts"])
    assert "not sampled for calibration" in doc["held_out"]  # 6 content files, 4 calibrate, 2 held out
    floors = {"fp32": 80, "fp16": 45, "int8": 30}
    for key, r in rows.items():
        net, fmt, prec, variant = key
        assert r.get("psnr_db") is not None, (key, r.get("note"))
        floor = floors[prec] if variant not in ("palettize4", "full") else 20
        assert r["psnr_db"] >= floor, (key, r["psnr_db"])
        assert 0.0 <= r["ssim"] <= 1.0
    # op kinds counted from the graphs
    assert "ConvInteger" in rows[("transformer", "onnx", "int8", "dynamic")]["ops_quantized"]
    assert "Conv (QDQ)" in rows[("predictor", "onnx", "int8", None)]["ops_quantized"]  # qlinear when calibrated
    assert _art(man, "predictor", "onnx", "int8")["details"]["int8_kind"] == "qlinear"
    plain = rows[("transformer", "onnx", "int8", None)]  # qlinear when calibrated
    assert "Conv (QDQ)" in plain["ops_quantized"] and "Pad (int8)" in plain["ops_quantized"]
    assert "InstanceNormalization" in plain["ops_float"]
    assert _art(man, "transformer", "onnx", "int8")["details"]["int8_kind"] == "qlinear"
    st = rows[("predictor", "onnx", "int8", None)]
    assert "Clip" not in st["ops_float"]
    assert "Conv (QDQ)" in rows[("predictor", "onnx", "int8", "static")]["ops_quantized"]
    full = rows[("transformer", "tflite", "int8", "full")]
    assert "CONV_2D" in full["ops_quantized"] and "RSQRT" in full["ops_quantized"]
    assert "RSQRT" in rows[("transformer", "tflite", "int8", None)]["ops_float"]
    assert "constexpr_lut_to_dense" in rows[("transformer", "coreml", "int8", "palettize4")]["ops_quantized"]
    assert "constexpr_affine_dequantize" in rows[("transformer", "coreml", "int8", None)]["ops_quantized"]
    a = _art(man, "transformer", "onnx", "int8")
    assert a["details"]["calibration"]["content_count"] == 4 and a["details"]["quality"]["psnr_db"] > 30


def test_float_io_everywhere(bundle):
    root, man = bundle
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    for a in man["artifacts"]:
        if a["format"] == "onnx":
            m = onnx.load(str(root / a["path"]))
            assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in m.graph.input)
        elif a["format"] == "tflite":
            it = Interpreter(model_path=str(root / a["path"]))
            assert all(d["dtype"] == np.float32 for d in it.get_input_details() + it.get_output_details())


def test_calibration_deterministic_and_preprocessed(tmp_path):
    folder = _write_images(tmp_path / "c", 7)
    picks = [C._pick(sorted(folder.glob("*.png")), 3, 300, "content", folder) for _ in range(2)]
    assert picks[0] == picks[1] and picks[0] == sorted(picks[0])
    _, model = _tiny(tmp_path)
    cal = C.build_set({"content": folder, "style": folder, "count": 3}, model, "transformer", (40, 32), 64)
    assert [tuple(t.shape) for t in cal.content] == [(1, 3, 40, 32)] * 3  # stretched to the export size
    assert [tuple(t.shape) for t in cal.style] == [(1, 3, 64, 64)] * 3   # short side + centre crop
    from styleport.export.wrappers import io_spec
    inputs, _, _ = io_spec(model, "transformer", "tflite", (40, 32), 64)
    feeds = C.feeds(model, "transformer", inputs, cal)
    assert feeds[0]["content_image"].shape == (1, 40, 32, 3) and feeds[0]["style_bottleneck"].shape == (1, 1, 1, 100)


def test_dumoulin_calibration_uses_style_weights(tmp_path):
    _, model = _tiny(tmp_path, "dumoulin", num_styles=3)
    cal = C.build_set({"synthetic": True, "count": 8}, model, "transformer", (32, 32), 64)
    w = C.style_inputs(model, cal, 8)
    assert all(abs(float(x.sum()) - 1) < 1e-5 for x in w)
    assert sum(int((x > 0).sum()) == 1 for x in w) == 6  # one-hot, every fourth a blend


@pytest.mark.parametrize("case", ["empty", "too-few", "unreadable", "missing"])
def test_calibration_errors_exit_2(tmp_path, case, capsys):
    from styleport.cli import main
    ckpt, _ = _tiny(tmp_path)
    folder = tmp_path / "calib"
    folder.mkdir()
    if case == "too-few":
        _write_images(folder, 2)
    elif case == "unreadable":
        _write_images(folder, 3)
        (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    elif case == "missing":
        folder = tmp_path / "nope"
    rc = main(["export", str(ckpt), "--out", str(tmp_path / "b"), "--formats", "onnx", "--precisions", "int8",
               "--size", "32", "--style-size", "64", "--calib-content", str(folder), "--calib-style", str(folder),
               "--calib-count", "3", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    assert not (tmp_path / "b").exists()


def test_synthetic_never_silent(tmp_path, capsys):
    _, model = _tiny(tmp_path)
    with pytest.raises(BadInput, match="--calib-content"):
        C.build_set({"content": None, "style": None, "synthetic": False}, model, "transformer", (32, 32), 64)
    with pytest.raises(BadInput, match="method"):
        C.parse_options({"method": "mse"})
    # int8 without a calibration set: the plain (dynamic) int8 only, static variants skipped out loud
    from styleport.export.onnx_export import DEFAULT_OPSET, export_onnx
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import make_variant
    module = export_module(model, "transformer", "onnx")
    inputs, outputs, sample = io_spec(model, "transformer", "onnx", (32, 32), 64)
    export_onnx(module, sample, inputs, outputs, tmp_path / "t.onnx", DEFAULT_OPSET)
    d = make_variant("onnx", "int8", tmp_path / "t.onnx", tmp_path / "t.int8.onnx", module=module, sample=sample,
                     inputs=inputs, outputs=outputs, network="transformer", model=model,
                     calibration={"content": None, "style": None, "count": None, "synthetic": False})
    assert "variants" not in d and d["calibration"] is None and "skipped" in d["static_variants"]
    assert d["int8_kind"] == "dynamic"  # no calibration set: the plain int8 needs none
    assert "calib-synthetic" in capsys.readouterr().err
    d = make_variant("onnx", "int8", tmp_path / "t.onnx", tmp_path / "s.int8.onnx", module=module, sample=sample,
                     inputs=inputs, outputs=outputs, network="transformer", model=model,
                     calibration={"synthetic": True, "count": 4})
    assert [v["variant"] for v in d["variants"]] == ["dynamic", "a16w8"]
    assert d["int8_kind"] == "qlinear" and d["calibration"]["content_count"] == 4
    assert "synthetic" in d["calibration"]["content"] and d["variants"][0]["details"]["calibration"] is None
    assert "synthetic" in d["variants"][1]["details"]["calibration"]["content"]  # a16w8


def test_target_psnr_search(tmp_path):
    from styleport.export.onnx_export import DEFAULT_OPSET, export_onnx
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import search_target_psnr
    _, model = _tiny(tmp_path, "johnson")
    module = export_module(model, "transformer", "onnx")
    inputs, outputs, sample = io_spec(model, "transformer", "onnx", (32, 32), 64)
    export_onnx(module, sample, inputs, outputs, tmp_path / "t.onnx", DEFAULT_OPSET)
    res = search_target_psnr(tmp_path / "t.onnx", tmp_path / "t.best.onnx", model=model, network="transformer",
                             inputs=inputs, sample=sample, calibration={"synthetic": True, "count": 3},
                             target_psnr=99.0, kind="w8a8")
    curve = res["curve"]
    assert curve[0]["float_layers"] == 0 and len(curve) >= 2 and len(res["layer_gain_db"]) == 16
    assert curve[-1]["psnr_db"] >= curve[0]["psnr_db"]
    assert (tmp_path / "t.best.onnx").exists() and res["reached"] == (curve[-1]["psnr_db"] >= 99.0)


@pytest.mark.skipif(not (MAGENTA / "style_transfer_f16_384.tflite").exists() or not IMAGES.exists(),
                    reason="../shared/data (Google's Magenta files and images) absent")
def test_google_weights_targets(tmp_path):
    """Trained weights (imported from Google's release), held-out real photos/paintings, 256² content:
    fp16 >= 45 dB, plain int8 >= 30 dB on ORT and TFLite, int8 <= 0.3x the fp32 file."""
    from styleport.export.onnx_export import DEFAULT_OPSET, export_onnx
    from styleport.export.tflite_export import export_tflite
    from styleport.export.wrappers import export_module, io_spec
    from styleport.models.importers import magenta_from_tflite
    from styleport.quantization import make_variant
    from styleport.quantization.report import evaluate
    model, _ = magenta_from_tflite(MAGENTA / "style_predict_quantized_256.tflite",
                                   MAGENTA / "style_transfer_f16_384.tflite")
    arts = []
    for fmt, export in (("onnx", lambda *a: export_onnx(*a, DEFAULT_OPSET)), ("tflite", export_tflite)):
        module = export_module(model, "transformer", fmt)
        inputs, outputs, sample = io_spec(model, "transformer", fmt, (256, 256), 256)
        p32 = tmp_path / f"t.fp32.{fmt}"
        export(module, sample, inputs, outputs, p32)
        for prec, p in (("fp32", p32), ("fp16", tmp_path / f"t.fp16.{fmt}"), ("int8", tmp_path / f"t.int8.{fmt}")):
            if prec != "fp32":
                make_variant(fmt, prec, p32, p, model=model, network="transformer", inputs=inputs, sample=sample,
                             calibration={"variants": False})
            arts.append({"model": "transformer", "format": fmt, "precision": prec, "path": p.name,
                         "bytes": p.stat().st_size, "inputs": inputs})
    doc = evaluate(arts, tmp_path, model, (256, 256), 256,
                   {"eval_content": IMAGES / "content", "eval_style": IMAGES / "style"})
    for r in doc["results"]:
        print(r["format"], r["precision"], r["bytes"], r["ratio_to_fp32"], r.get("psnr_db"), r.get("ssim"))
        if r["precision"] == "fp16":
            assert r["psnr_db"] >= 45
        if r["precision"] == "int8":
            assert r["psnr_db"] >= 30 and r["ratio_to_fp32"] <= 0.3
