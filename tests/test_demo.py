"""The main job in reduced mode: every section of the report is there, parsed without a browser."""

import json
from html.parser import HTMLParser

import pytest

from conftest import run_cli
from styleport.magenta_reference import find
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
    # the quick default: plain int8 only, and the report says what was skipped; the export's step timings
    assert doc["int8_search"]["done"] is False and "ExecuTorch static" in doc["int8_search"]["skipped"]
    assert not any(a.get("variant") for a in doc["artifacts"])
    t = json.loads((out / "bundle" / "manifest.json").read_text())["export"]["timings"]
    assert abs(t["steps_s"] - t["wall_s"]) <= 0.1 * t["wall_s"] and "styleport: export " in p.stderr
    formats = {(a["format"], a["precision"]) for a in doc["artifacts"]}
    assert formats == {(f, p) for f in ("onnx", "tflite", "coreml", "executorch") for p in ("fp32", "fp16", "int8")}
    ran = {(c["format"], c["precision"]) for c in doc["compare"] if c.get("file")}
    assert ("onnx", "int8") in ran and ("tflite", "int8") in ran and ("coreml", "fp32") in ran
    assert ("executorch", "int8") in ran
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["transformer/onnx/fp32@onnxruntime"] == "pass"
    # every int8 that ran meets the 30 dB gate: a plain int8 below it was redone dynamic-range (int8 floor)
    assert all(st in ("pass", "skipped") for n, st in statuses.items() if "/int8@" in n), statuses
    man = json.loads((out / "bundle" / "manifest.json").read_text())
    for a in man["artifacts"]:
        rec = a["details"].get("int8_floor")
        if rec:
            assert rec["kept"] == a["details"]["int8_kind"] and rec["first"]["psnr_min_db"] < 30.0
    # where the time went: the phases add up to the whole run and the summary line says so
    ph = doc["phases_s"]
    assert list(ph) == ["model", "stylise", "google", "export", "parity", "web", "latency", "compare"]
    assert abs(sum(ph.values()) - doc["elapsed_s"]) <= 0.05 * doc["elapsed_s"] + 1
    assert f"demo took {doc['elapsed_s']:.0f} s (model" in p.stdout
    # the gallery ran inside the export (beside the ExecuTorch worker), timed as its own step
    assert man["export"]["timings"]["by_step"]["alongside"] >= ph["stylise"] + ph["google"] - 0.5
    assert statuses["transformer/coreml/fp32@coreml-mil"] == "pass"
    assert statuses["transformer/executorch/fp32@executorch"] == "pass"
    # the browser target: the page and which ORT Web and browser ran, or why not
    text = "".join(parser.text)
    assert "web" in parser.ids
    if doc["web"]["present"]:
        assert (out / doc["web"]["page"]).is_file() and doc["web"]["onnxruntime_web"] in text
        assert doc["web"]["browser"] and doc["web"]["browser"] in text
        assert statuses["transformer/onnx/int8@onnxruntime-web"] == "pass"
    else:
        assert doc["web"]["note"] in text
    assert any(r["runtime"] == "executorch" and r["latency_ms"] for r in doc["results"])
    assert any(r["latency_ms"] for r in doc["results"] if r.get("latency_ms"))
    assert len(doc["gallery"]) >= 4 and {g["strength"] for g in doc["gallery"]} == {1.0, 0.5}
    junit = (out / "junit.xml").read_text()
    assert "<testsuite" in junit and "transformer/onnx/fp32" in junit
    # which model ran, in the summary and the report: Google's network, imported
    assert "model: embedded default: Magenta" in p.stdout and "Apache-2.0" in p.stdout
    assert "Magenta" in doc["model"] and "Magenta" in "".join(parser.text)
    # Google's own files beside each stylised image when ../shared/data/magenta is there
    if find() is not None:
        assert doc["google"]["present"] and doc["google"]["pairs"] == len(doc["gallery"])
        for g in doc["gallery"]:
            assert g["google_file"] in parser.imgs and (out / g["google_file"]).is_file()
            assert g["google_psnr_db"] >= 30.0, g  # the same network on identical inputs
        assert "Google's own TFLite files" in p.stdout
    else:
        assert not doc["google"]["present"] and "no Google column" in "".join(parser.text)


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="no embedded default model in this checkout")
def test_demo_without_shared_data_and_a_failing_check(tmp_path):
    """make demo on a fresh clone without ../shared: offline, works, and the report says why there is
    no Google column (one format and precision, to keep it short). A tolerance the run cannot meet
    makes it exit 1, like every other verb, with the report still written; a mistyped selector is
    exit 2 before any work."""
    strict = tmp_path / "strict.toml"
    strict.write_text('["transformer/onnx/fp32"]\npsnr_db = 300\n')   # above the 200 dB cap: always fails
    out = tmp_path / "demo-out"
    p = run_cli("demo", "--out", out, "--quick", "--formats", "onnx", "--precisions", "fp32", "--num_runs", "1",
                "--shared-data", "none", "--tolerances", strict, timeout=900)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "parity FAILED for: transformer/onnx/fp32@onnxruntime" in p.stderr
    assert "no Google column" in p.stdout and "model: embedded default: Magenta" in p.stdout
    doc = json.loads((out / "report.json").read_text())
    assert doc["exit_code"] == 1 and (out / "report.html").is_file()
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["transformer/onnx/fp32@onnxruntime"] == "fail"
    assert statuses["predictor/onnx/fp32@onnxruntime"] == "pass"
    assert doc["google"]["present"] is False and not (out / "google").exists()
    assert not any("google_file" in g for g in doc["gallery"])
    assert {g["style"] for g in doc["gallery"]} == {"swirl", "waves"}  # no shared paintings either
    parser = _Collect()
    parser.feed((out / "report.html").read_text())
    assert "google" in parser.ids and "no Google column" in "".join(parser.text)
    p = run_cli("demo", "--out", tmp_path / "x", "--shared-data", tmp_path / "missing")
    assert p.returncode == 2 and "no such folder" in p.stderr and "Traceback" not in p.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text('["transformr/onnx/fp32"]\nmax_abs = 0.0\n')
    p = run_cli("demo", "--out", tmp_path / "d2", "--quick", "--tolerances", typo)
    assert p.returncode == 2 and "[transformr/onnx/fp32] matches no artefact" in p.stderr, p.stderr
    assert not (tmp_path / "d2").exists()
