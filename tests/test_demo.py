"""The main job in reduced mode: every section of the report is there, parsed without a browser."""

import json
from html.parser import HTMLParser

import pytest

from conftest import run_cli
from styleport.models.default import available


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="no embedded default model in this checkout")
def test_demo_quick_report_has_every_section(tmp_path):
    out = tmp_path / "demo-out"
    p = run_cli("demo", "--out", out, "--quick", timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "report:" in p.stdout and "parity:" in p.stdout
    for f in ("report.html", "report.json", "junit.xml", "bundle/manifest.json", "reference_torch.png"):
        assert (out / f).exists(), f
    html = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(html)
    assert {"gallery", "compare", "latency", "size", "parity", "benchmarks", "machine"} <= parser.ids
    # content, style, PyTorch reference and one output per runtime that ran; charts and heatmaps inline
    local = [s for s in parser.imgs if not s.startswith("data:")]
    for src in local:
        assert (out / src).is_file(), src
    inline = [s for s in parser.imgs if s.startswith("data:image/png;base64,")]
    assert len(inline) >= 3  # latency chart, size chart, at least one error heatmap
    doc = json.loads((out / "report.json").read_text())
    formats = {(a["format"], a["precision"]) for a in doc["artifacts"]}
    assert formats == {(f, p) for f in ("onnx", "tflite", "coreml") for p in ("fp32", "fp16", "int8")}
    ran = {(c["format"], c["precision"]) for c in doc["compare"] if c.get("file")}
    assert ("onnx", "int8") in ran and ("tflite", "int8") in ran and ("coreml", "fp32") in ran
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["transformer/onnx/fp32@onnxruntime"] == "pass"
    assert statuses["transformer/coreml/fp32@coreml-mil"] == "pass"
    assert any(r["latency_ms"] for r in doc["results"] if r.get("latency_ms"))
    assert len(doc["gallery"]) >= 4 and {g["strength"] for g in doc["gallery"]} == {1.0, 0.5}
    junit = (out / "junit.xml").read_text()
    assert "<testsuite" in junit and "transformer/onnx/fp32" in junit


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="no embedded default model in this checkout")
def test_demo_exits_1_when_parity_fails_and_2_on_a_mistyped_selector(tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('["transformer/onnx/fp32"]\npsnr_db = 300\n')   # above the 200 dB cap: always fails
    out = tmp_path / "demo-out"
    p = run_cli("demo", "--out", out, "--quick", "--formats", "onnx", "--precisions", "fp32", "--num_runs", "1",
                "--tolerances", strict, timeout=1500)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "parity FAILED for: transformer/onnx/fp32@onnxruntime" in p.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["exit_code"] == 1 and (out / "report.html").is_file()
    typo = tmp_path / "typo.toml"
    typo.write_text('["transformr/onnx/fp32"]\nmax_abs = 0.0\n')
    p = run_cli("demo", "--out", tmp_path / "d2", "--quick", "--tolerances", typo)
    assert p.returncode == 2 and "[transformr/onnx/fp32] matches no artefact" in p.stderr, p.stderr
    assert not (tmp_path / "d2").exists()
