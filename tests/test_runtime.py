"""Runners, adaptation, latency and the worker process (styleport.runtime)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from styleport.runtime.harness import adapt
from styleport.runtime.runners.base import RuntimeSkipped, RuntimeUnavailable, TensorSpec
from styleport.runtime.harness.latency import measure, stats_ms
from styleport.runtime.runners.registry import make_runner, register_runner, runner_class
from tiny import nan_onnx, opset9_onnx, tiny_bundle

from conftest import ROOT, assert_one_line_error, run_cli


@pytest.fixture(scope="session")
def bundle(shared_tmp):
    return tiny_bundle(shared_tmp / "styleport-rt")


def test_onnx_runner_opset9(tmp_path):
    path = opset9_onnx(tmp_path / "old.onnx", size=16)
    with make_runner("onnxruntime", path, threads=1) as r:
        (spec,) = r.input_specs()
        assert spec.name == "content_image" and spec.shape == [1, 3, 16, 16] and spec.dtype == "float32"
        x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
        out = r.run({"content_image": x})["stylized_image"]
        np.testing.assert_allclose(out, x * 0.5 + 0.25, atol=1e-6)
        assert r.precision() == "fp32"


def test_litert_runner_xnnpack_switch(bundle):
    path = bundle / "tflite/transformer.fp32.tflite"
    outs = []
    for xnn in (True, False):
        with make_runner("litert", path, threads=1, xnnpack=xnn) as r:
            names = [s.name for s in r.input_specs()]
            assert names == ["content_image", "style_bottleneck"]  # signature names, not tensor names
            assert r.describe()["xnnpack"] is xnn
            plan = adapt.IOPlan(r.input_specs(), r.output_specs(), (64, 64))
            outs.append(plan.canonical_outputs(r.run(plan.feeds(plan.canonical_feeds(seed=1)))))
    assert outs[0]["stylized_image"].shape == (1, 3, 64, 64)
    np.testing.assert_allclose(outs[0]["stylized_image"], outs[1]["stylized_image"], atol=1e-4)


def test_torch_runner_and_nhwc_adaptation(bundle):
    ckpt = bundle.parent / "ckpt"
    with make_runner("torch", ckpt, threads=1, part="transformer") as t, \
            make_runner("litert", bundle / "tflite/transformer.fp32.tflite", threads=1) as l:
        can = adapt.IOPlan(t.input_specs(), t.output_specs(), (64, 64)).canonical_feeds(seed=3)
        assert can["content_image"].shape == (1, 3, 64, 64) and can["style_bottleneck"].shape == (1, 100)
        outs = []
        for r in (t, l):
            plan = adapt.IOPlan(r.input_specs(), r.output_specs(), (64, 64))
            outs.append(plan.canonical_outputs(r.run(plan.feeds(can)))["stylized_image"])
        np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)
    with make_runner("torch", ckpt, part="predictor") as p:
        assert [s.name for s in p.output_specs()] == ["style_bottleneck"]


def test_roles_from_google_style_names():
    ins = [TensorSpec("content_image", [1, 384, 384, 3]), TensorSpec("mobilenet_conv/Conv/BiasAdd", [1, 1, 1, 100])]
    outs = [TensorSpec("transformer/expand/conv3/conv/Sigmoid", [1, 384, 384, 3])]
    assert adapt.assign_roles(ins, outs) == (["content_image", "style_bottleneck"], ["stylized_image"])
    pred = adapt.assign_roles([TensorSpec("input", [1, 256, 256, 3])], [TensorSpec("x", [1, 1, 1, 100])])
    assert pred == (["style_image"], ["style_bottleneck"])
    assert adapt.model_role(ins, outs) == "transformer"


def test_range_and_layout_roundtrip():
    spec = TensorSpec("content_image", [1, 8, 8, 3], layout="NHWC", range=[-1, 1])
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    m = adapt.to_model(x, spec, "content_image", (8, 8))
    assert m.shape == (1, 8, 8, 3) and m.min() < 0
    back = adapt.from_model(m, spec, "stylized_image")
    np.testing.assert_allclose(back, x, atol=1e-6)
    q = TensorSpec("content_image", [1, 3, 8, 8], dtype="uint8", layout="NCHW", quantization=(1 / 255, 0))
    assert adapt.to_model(x, q, "content_image", (8, 8)).dtype == np.uint8


def test_latency_stats_and_loop():
    s = stats_ms([0.001, 0.002, 0.003, 0.004])
    assert s["min"] == pytest.approx(1.0) and s["p50"] == pytest.approx(2.5) and s["stdev"] > 0
    calls = []
    first, times, out = measure(lambda f: calls.append(1) or f, {"a": 1}, warmup_runs=2, num_runs=5)
    assert len(times) == 5 and len(calls) == 1 + 2 + 5 and out == {"a": 1}


def test_coreml_skips_on_linux(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS runs CoreML for real")
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(RuntimeSkipped, match="only on macOS"):
        make_runner("coreml", tmp_path / "m.mlpackage").open()


def test_registry_hook():
    from styleport.runtime.runners.base import Runner

    class Echo(Runner):
        runtime = "echo"
        formats = ("onnx",)

        def _open(self):
            pass

        def input_specs(self):
            return [TensorSpec("x", [1, 4])]

        def output_specs(self):
            return [TensorSpec("x", [1, 4])]

        def run(self, feeds):
            return dict(feeds)

    register_runner("echo", Echo, ("onnx",), default=False)
    assert runner_class("echo") is Echo
    assert runner_class("coreml-mil").runtime == "coreml-mil"  # the reference interpreter plugs in


def test_missing_package_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(RuntimeUnavailable, match="pip install onnxruntime"):
        make_runner("onnxruntime", opset9_onnx(tmp_path / "m.onnx")).open()


def _shim(tmp_path, module="onnxruntime"):
    d = tmp_path / "shim"
    (d / module).mkdir(parents=True)
    (d / module / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    return dict(os.environ, PYTHONPATH=f"{d}{os.pathsep}{ROOT}", PYTHONWARNINGS="ignore")


def test_missing_runtime_exit3_with_hint(tmp_path):
    model = opset9_onnx(tmp_path / "m.onnx")
    env = _shim(tmp_path)
    for verb in (["bench", str(model), "--num_runs", "1"], ["parity", "--reference", str(model),
                                                             "--candidate", str(model)]):
        proc = subprocess.run([sys.executable, "-m", "styleport", *verb], capture_output=True, text=True,
                              env=env, timeout=300)
        assert_one_line_error(proc, code=3, contains="pip install onnxruntime")


def test_worker_fresh_process_rss(tmp_path):
    """The worker's peak RSS is its own (VmHWM), not the parent's high-water mark."""
    big = np.ones(200 * 1024 * 1024 // 8)  # the parent holds 200 MB more than a worker needs
    big[::512] = 2.0
    model = opset9_onnx(tmp_path / "m.onnx", size=32)
    from styleport.runtime.harness.bench import run_worker
    res = run_worker({"runtime": "onnxruntime", "path": str(model), "threads": 1, "size": [32, 32],
                      "num_runs": 3, "warmup_runs": 0}, tmp_path, "w", 120)
    assert res["ok"], res
    assert res["peak_rss_mb"] < 180, res["peak_rss_mb"]
    assert res["load_ms"] > 0 and res["first_run_ms"] > 0 and res["runs"] == 3
    assert res["_outputs"]["stylized_image"].shape == (1, 3, 32, 32)
    del big


def test_worker_reports_runtime_failure(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file at all")
    from styleport.runtime.harness.bench import run_worker
    res = run_worker({"runtime": "onnxruntime", "path": str(bad), "num_runs": 1}, tmp_path, "w", 120)
    assert not res["ok"] and res["exit_code"] == 3 and "broken.onnx" in res["error"]


def test_bad_usage_exit2(tmp_path):
    assert_one_line_error(run_cli("bench", tmp_path / "nope.onnx"), 2, "not found")
    (tmp_path / "x.txt").write_text("hi")
    assert_one_line_error(run_cli("bench", tmp_path / "x.txt"), 2, "not a model file")
    assert_one_line_error(run_cli("parity"), 2, "give one of")
    assert_one_line_error(run_cli("bench", opset9_onnx(tmp_path / "m.onnx"), "--runtimes", "bogus"), 2, "unknown runtime")


def test_nan_helper_model(tmp_path):
    with make_runner("onnxruntime", nan_onnx(tmp_path / "nan.onnx")) as r:
        out = r.run({"content_image": np.zeros((1, 3, 16, 16), np.float32)})["stylized_image"]
    assert np.isnan(out).all()


_ = (json, textwrap)
