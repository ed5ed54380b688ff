"""TFLite graphs that XNNPACK takes whole, LiteRT per-op profiles, the full-integer predictor
(issue 13). Tiny seeded models and small images; the trained-weight check uses ../shared/data and
is skipped when it is absent. No timing is asserted (the box is shared): sums of per-op times are
compared with the profiled run they come from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_xnnpack_partition
from styleport.export.tflite_export import export_tflite
from styleport.export.wrappers import export_module, io_spec
from styleport.models.layers import ConvLayer, conv_phases_nhwc, reflect_pad_slices, set_forms
from styleport.models.presets import build, default_config
from styleport.runtime.runners import litert_profile as LP
from styleport.runtime.runners.registry import make_runner

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MAGENTA = SHARED / "magenta"
IMAGES = SHARED / "images"
needs_profiler = pytest.mark.skipif(LP.profiler_unavailable() is not None,
                                    reason=f"LiteRT C API profiler: {LP.profiler_unavailable()}")


def _model(preset, width=0.25):
    torch.manual_seed(0)
    return build(default_config(preset, width=width)).eval()


def _export(model, path, size=48, forms=None, rewrite=True, monkeypatch=None):
    module = export_module(model, "transformer", "tflite")
    if forms:
        set_forms(module, **forms)
    inputs, outputs, sample = io_spec(model, "transformer", "tflite", (size, size), 64)
    if not rewrite:
        monkeypatch.setattr("styleport.export.tflite_rewrite.rewrite_file", lambda p: {})
    details = export_tflite(module, sample, inputs, outputs, path)
    feeds = {spec["name"]: t.numpy() for spec, t in zip(inputs, sample)}
    with torch.no_grad():
        ref = module(*sample).numpy()
    return details, feeds, ref


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    # every preset's bundle-made TFLite transformer is checked for one XNNPACK partition at two sizes
    # in test_export.py (test_fp32_artefacts_match_pytorch_at_two_sizes); here one model, big enough
    # (~10 ms a run) for LiteRT's fixed per-invoke cost (~0.2 ms) to sit inside 10% of a profile
    tmp = tmp_path_factory.mktemp("xnn")
    path = tmp / "johnson-128.tflite"
    return {"profiled": (path, *_export(_model("johnson", 0.5), path, size=128))}


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_reflect_pad_slices_is_reflection_padding(p):
    x = torch.rand(2, 3, 11, 13)
    assert torch.equal(reflect_pad_slices(x, p), F.pad(x, (p,) * 4, mode="reflect"))


@pytest.mark.parametrize("r,bias", [(2, True), (4, False), (4, True)])
def test_conv_phases_is_the_same_conv(r, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 3, 9, bias=bias)
    x = torch.rand(1, 5, 20, 16 + 8)
    with torch.no_grad():
        want = conv(x).permute(0, 2, 3, 1)
        got = conv_phases_nhwc(x, conv, r)
    assert got.shape == want.shape and float((got - want).abs().max()) < 1e-5
    layer = ConvLayer(5, 3, 9)
    layer.form = "phases"
    with torch.no_grad():  # width 18: 2 columns per step; 17: none (falls back to the plain conv)
        for w in (18, 17):
            y = torch.rand(1, 5, 12, w)
            assert float((layer.forward_nhwc(y) - layer(y).permute(0, 2, 3, 1)).abs().max()) < 1e-5


def test_fp32_transformers_one_partition_no_fallback(exports):
    for preset, (path, details, feeds, ref) in exports.items():
        assert_one_xnnpack_partition(path, details, preset)
        with make_runner("litert", path, threads=1) as r:
            out = r.run(feeds)["stylized_image"]
        assert float(np.abs(out - ref).max()) <= 1e-3, preset  # fp32 parity with torch


def test_older_forms_fall_back_and_the_rewrite_is_exact(tmp_path, monkeypatch):
    """Today's main forms (flip pad, RESIZE_NEAREST_NEIGHBOR) leave ops to the builtin kernels; the
    file rewrite alone changes no number."""
    model = _model("johnson")
    old = tmp_path / "old.tflite"
    _, feeds, ref = _export(model, old, forms={"pad": "cat"}, rewrite=False, monkeypatch=monkeypatch)
    monkeypatch.undo()
    with make_runner("litert", old, threads=1) as r:
        cov = LP.delegation(r.it)
        before = r.run(feeds)["stylized_image"]
    assert cov["partitions"] > 1 and cov["fallback"] == {"REVERSE_V2": 8, "RESIZE_NEAREST_NEIGHBOR": 2}, cov
    new = tmp_path / "new.tflite"
    shutil.copy(old, new)
    from styleport.export.tflite_rewrite import rewrite_file
    assert rewrite_file(new) == {"nearest_upsample_as_depth_to_space": 2}
    with make_runner("litert", new, threads=1) as r:
        cov2 = LP.delegation(r.it)
        after = r.run(feeds)["stylized_image"]
    assert cov2["fallback"] == {"REVERSE_V2": 8} and cov2["partitions"] < cov["partitions"]
    assert np.array_equal(before, after)
    assert float(np.abs(after - ref).max()) <= 1e-3


def _check_profile(prof, runs):
    # the keys every runtime's profile has (runtime/runners/base.py), then LiteRT's own
    assert {"runtime", "runs", "total_ms", "ops_ms", "coverage", "by_op_type", "slowest_nodes", "notes"} <= set(prof)
    assert prof["runtime"] == "litert" and prof["runs"] == runs and prof["total_ms"] > 0
    ms = [row["ms"] for row in prof["by_op_type"]]
    assert all(m is not None and m >= 0 for m in ms)
    # the per-op times add up to the profiled run's time (LiteRT's Invoke event) within 10%
    assert abs(sum(ms) - prof["total_ms"]) <= 0.10 * prof["total_ms"], (sum(ms), prof["total_ms"])
    assert abs(sum(ms) - prof["ops_ms"]) < 1e-3 and 0.9 <= prof["coverage"] <= 1.1
    assert abs(sum(row["pct"] for row in prof["by_op_type"]) - 100.0 * prof["coverage"]) < 0.5
    assert 0 < len(prof["slowest_nodes"]) <= 10 and all({"name", "op", "ms"} <= set(n) for n in prof["slowest_nodes"])
    assert prof["notes"]


@needs_profiler
def test_profile_names_real_ops_and_adds_up(exports, tmp_path, monkeypatch):
    path, _, feeds, _ = exports["profiled"]
    with make_runner("litert", path, threads=1) as r:
        prof = r.profile(feeds, runs=3)
        ops = {o["op_name"] for o in r.it._get_ops_details()}
    _check_profile(prof, 3)
    assert prof["delegate"]["partitions"] == 1 and prof["delegate"]["fallback"] == {}
    assert prof["fully_accelerated"] is True
    names = [row["op"] for row in prof["by_op_type"]]
    assert any(n.startswith("Convolution (NHWC, F32)") for n in names), names  # XNNPACK's own op names
    assert "CONV_2D" in ops and not any(n.endswith("(builtin kernel)") for n in names)
    # a graph with fallbacks: the builtin ops appear under their TFLite names, with times
    old = tmp_path / "old.tflite"
    _, feeds, _ = _export(_model("johnson", 0.5), old, size=128, forms={"pad": "cat"}, rewrite=False,
                          monkeypatch=monkeypatch)
    with make_runner("litert", old, threads=1) as r:
        prof = r.profile(feeds, runs=3)
    _check_profile(prof, 3)
    assert prof["delegate"]["fallback"] == {"REVERSE_V2": 8, "RESIZE_NEAREST_NEIGHBOR": 2}
    assert prof["fully_accelerated"] is False
    rows = {row["op"]: row for row in prof["by_op_type"]}
    assert rows["REVERSE_V2 (builtin kernel)"]["count"] == 8 and rows["RESIZE_NEAREST_NEIGHBOR (builtin kernel)"]["count"] == 2


@needs_profiler
def test_profiled_model_computes_what_the_interpreter_computes(exports):
    """The C API CompiledModel profiles the same file on the same inputs: same outputs."""
    path, _, feeds, _ = exports["profiled"]
    with make_runner("litert", path, threads=1) as r:
        want = r.run(feeds)["stylized_image"]
    s = LP.CompiledModelSession(str(path), threads=1)
    try:
        s.set_inputs(feeds)
        run = s.profile(runs=1)
        got = s.read_outputs()["stylized_image"].reshape(want.shape)
    finally:
        s.close()
    assert run.total_ms and len(run.ops) > 10
    assert float(np.abs(got - want).max()) <= 1e-5


@needs_profiler
def test_profile_without_xnnpack_times_builtin_ops(exports):
    path, _, feeds, _ = exports["profiled"]
    with make_runner("litert", path, threads=1, xnnpack=False) as r:
        prof = r.profile(feeds, runs=2)
    _check_profile(prof, 2)
    assert prof["delegate"]["partitions"] == 0
    rows = {row["op"]: row for row in prof["by_op_type"]}
    assert rows["CONV_2D (builtin kernel)"]["count"] == 16


# ---------------------------------------------------------------------------- full-integer predictor

def _predictor_int8(model, tmp, calibration, size=64):
    from styleport.quantization import make_variant
    module = export_module(model, "predictor", "tflite")
    inputs, outputs, sample = io_spec(model, "predictor", "tflite", (size, size), size)
    p32, p8 = tmp / "predictor.fp32.tflite", tmp / "predictor.int8.tflite"
    export_tflite(module, sample, inputs, outputs, p32)
    details = make_variant("tflite", "int8", p32, p8, model=model, network="predictor", inputs=inputs,
                           sample=sample, calibration=calibration)
    return p8, details, inputs


def _assert_full_integer(path, details):
    from styleport.quantization.tflite_quant import op_dtypes
    ops = op_dtypes(path)  # read from the .tflite: an op is quantized when its tensors are integer
    assert ops["float"] == {}, ops
    assert set(ops["quantized"]) == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN"}, ops
    assert ops["converters"] == {"QUANTIZE": 1, "DEQUANTIZE": 1}  # float I/O, int8 inside
    assert "int8" in ops["weight_values_by_dtype"] and "float32" not in ops["weight_values_by_dtype"]
    with make_runner("litert", path, threads=1) as r:
        assert [s.dtype for s in r.input_specs() + r.output_specs()] == ["float32", "float32"]
        assert LP.delegation(r.it)["fallback"] == {}
    assert details["io_dtype"] == "float32" and "min/max over the whole calibration set" in details["method"]


def test_full_integer_predictor_tiny_seeded(tmp_path):
    """Tiny seeded magenta-mobile, procedural calibration: plain int8 predictor is full-integer, the
    calibration-free one is kept as the `dynamic` variant, and the bottleneck follows torch fp32."""
    from styleport.quantization import calibration as C
    model = _model("magenta-mobile")
    p8, details, inputs = _predictor_int8(model, tmp_path, {"synthetic": True, "count": 6})
    _assert_full_integer(p8, details)
    assert [v["variant"] for v in details["variants"]] == ["dynamic", "int16x8"] and details["int8_kind"] == "full"
    # 6 images, widened with 5 views each (calibration.style_views_of) to reach MIN_STYLE_SAMPLES
    assert details["calibration"]["style_count"] == 30 and len(details["calibration"]["style_views"]) == 5
    from styleport import samples
    imgs = [C.style_tensor(samples.style_pattern(samples.STYLES[i % len(samples.STYLES)], 64, seed=500 + i), 64)
            for i in range(3)]  # not the calibration seeds
    with make_runner("litert", p8, threads=1) as r, torch.no_grad():
        for s in imgs:
            got = r.run({"style_image": C.to_feed(inputs[0], s)})["style_bottleneck"].reshape(1, -1)
            ref = model.predictor(s).reshape(1, -1).numpy()
            cos = float((got * ref).sum() / (np.linalg.norm(got) * np.linalg.norm(ref)))
            assert cos >= 0.99, cos


@pytest.mark.slow
@pytest.mark.skipif(not (MAGENTA / "style_predict_quantized_256.tflite").exists() or not IMAGES.exists(),
                    reason="../shared/data (Google's Magenta files and images) absent")
def test_full_integer_predictor_google_weights(tmp_path):
    """Imported weights, leave-one-painting-out: calibrated on 4 paintings (the bundle's style
    calibration), scored on the held-out one with every photo (256² content): the stylised image
    made by the fp32 torch transformer from the int8 bottleneck vs the all-fp32 pipeline; Google's
    own int8 predictor scored the same way on the same pairs."""
    import sys

    from styleport.models.importers import magenta_from_tflite
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from suites.ours_vs_google import predictor_quality   # the protocol make bench runs at 384²
    google = MAGENTA / "style_predict_quantized_256.tflite"
    model, _ = magenta_from_tflite(google, MAGENTA / "style_transfer_f16_384.tflite")
    model.eval()
    folds = []
    res = predictor_quality(model, google, sorted((IMAGES / "style").iterdir()),
                            sorted((IMAGES / "content").iterdir()), 256, tmp_path,
                            on_fold=lambda k, path, details: folds.append((path, details)))
    _assert_full_integer(*folds[0])
    print(res)
    assert res["pairs"] == 20 and res["ours"]["min"] >= 38.0
    assert res["ours"]["mean"] >= res["google"]["mean"] - 0.5  # benchmarks/results/ours_vs_google.json: 384²
