"""`styleport bench`: JSON contract, reports, bare files, exit codes."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from styleport.reports import html, markdown, schema
from tiny import opset9_onnx, tiny_bundle

from conftest import run_cli


@pytest.fixture(scope="session")
def bundle(shared_tmp):
    return tiny_bundle(shared_tmp / "styleport-rt")


def _independent_check(doc):
    """A second, deliberately plain reading of the DESIGN.md contract."""
    assert isinstance(doc["schema"], int)
    for k in ("cpu", "cores", "os", "python", "versions"):
        assert k in doc["machine"], k
    for r in doc["results"]:
        for k in ("model", "format", "precision", "runtime", "input_size", "threads", "latency_ms", "load_ms",
                  "first_run_ms", "peak_rss_mb", "file_bytes", "parity"):
            assert k in r, k
        assert set(r["latency_ms"]) >= {"p50", "p90", "p99", "mean", "min"}
        assert r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        if r["parity"] is not None:
            assert set(r["parity"]) >= {"max_abs", "mean_abs", "psnr_db", "ssim", "pass"}
        else:
            assert r["parity_reason"]


def test_bench_bundle_json_junit_html(bundle, tmp_path):
    out = tmp_path / "b.json"
    proc = run_cli("bench", bundle, "--num_runs", "3", "--warmup_runs", "0", "--threads", "1",
                   "--runtimes", "onnxruntime", "litert", "--json", out, "--junit", tmp_path / "b.xml",
                   "--report", tmp_path / "b.html", "--markdown", tmp_path / "b.md")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert schema.validate_bench(doc) == []
    _independent_check(doc)
    rows = {(r["model"], r["format"], r["precision"]): r for r in doc["results"]}
    assert set(rows) == {("transformer", "onnx", "fp32"), ("predictor", "onnx", "fp32"),
                         ("transformer", "onnx", "fp16"), ("transformer", "tflite", "fp32"),
                         ("predictor", "tflite", "fp32")}
    t = rows[("transformer", "onnx", "fp32")]
    assert t["input_size"] == [64, 64] and t["threads"] == 1 and t["file_bytes"] > 1000
    assert t["parity"]["pass"] is True and t["parity"]["max_abs"] < 1e-4
    assert 0 < t["peak_rss_mb"] < 2000 and t["load_ms"] > 0 and t["first_run_ms"] > 0
    assert rows[("transformer", "tflite", "fp32")]["settings"]["xnnpack"] is True
    assert ET.parse(tmp_path / "b.xml").getroot().find("testsuite").get("tests") == "5"
    page = (tmp_path / "b.html").read_text()
    assert "data:image/png;base64," in page and "transformer" in page
    assert "| p50 ms |" in (tmp_path / "b.md").read_text()


def test_bench_missing_checkpoint_gives_null_parity_with_reason(bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["source"]["checkpoint"] = "/nowhere/ckpt"
    (b / "manifest.json").write_text(json.dumps(m))
    proc = run_cli("bench", b, "--num_runs", "2", "--runtimes", "onnxruntime", "--json", tmp_path / "b.json",
                   "--no-xnnpack")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "b.json").read_text())
    assert schema.validate_bench(doc) == []
    for r in doc["results"]:
        assert r["parity"] is None and "not found" in r["parity_reason"]


def test_bench_bare_old_onnx_and_torch_free_worker(tmp_path):
    model = opset9_onnx(tmp_path / "old9.onnx", size=32)
    proc = run_cli("bench", model, "--num_runs", "5", "--min_seconds", "0.05", "--json", tmp_path / "o.json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o.json").read_text())
    (r,) = doc["results"]
    assert r["format"] == "onnx" and r["runtime"] == "onnxruntime" and r["input_size"] == [32, 32]
    assert r["parity"] is None and "bare model file" in r["parity_reason"]
    assert r["runs"] >= 5
    assert r["peak_rss_mb"] < 250  # the worker imports no torch


def test_bench_google_bare_files(magenta_dir, tmp_path):
    proc = run_cli("bench", magenta_dir / "style_predict_quantized_256.tflite", "--num_runs", "2",
                   "--warmup_runs", "0", "--json", tmp_path / "g.json")
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads((tmp_path / "g.json").read_text())["results"]
    assert r["model"] == "predictor" and r["precision"] == "int8" and r["input_size"] == [256, 256]


def test_bench_runtime_failure_exit3(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    proc = run_cli("bench", bad, "--num_runs", "1", "--json", tmp_path / "x.json")
    assert proc.returncode == 3
    assert "broken.onnx" in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["results"][0]["status"] == "error" and doc["results"][0]["latency_ms"] is None


def test_coreml_target_is_skipped_not_passed(tmp_path):
    import sys
    if sys.platform == "darwin":
        pytest.skip("macOS runs CoreML for real")
    pkg = tmp_path / "m.mlpackage"
    pkg.mkdir()
    (pkg / "Manifest.json").write_text("{}")
    proc = run_cli("bench", pkg, "--runtimes", "coreml", "--num_runs", "1", "--junit", tmp_path / "c.xml")
    assert proc.returncode == 3  # nothing ran: never a silent pass
    assert "macOS" in proc.stderr
    assert ET.parse(tmp_path / "c.xml").getroot().find(".//skipped") is not None


def test_html_escapes_strings_from_files():
    rows = [{"model": "<script>alert(1)</script>", "format": "onnx", "precision": "fp32", "runtime": "ort",
             "path": "a&b.onnx", "status": "ok", "latency_ms": {"p50": 1.0, "p90": 2.0}, "load_ms": 1.0,
             "peak_rss_mb": 10.0, "parity": None, "parity_reason": "<b>x</b>", "error": None}]
    page = html.render_html("t", rows, [], {"cpu": "<cpu>", "cores": 2, "os": "x", "python": "3"})
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;cpu&gt;" in page and "a&amp;b" in page
    assert "<b>x</b>" not in page
    assert "FAIL" not in markdown.bench_table([dict(rows[0], input_size=None, threads=1, file_bytes=1,
                                                    first_run_ms=1.0)])
