"""Parity: metrics, tolerances, bundle vs PyTorch, file vs file, layer-wise, exit codes and JUnit."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from styleport.errors import BadInput
from styleport.runtime.harness import tolerances as M
from tiny import nan_onnx, opset9_onnx, tiny_bundle

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="session")
def bundle(shared_tmp):
    return tiny_bundle(shared_tmp / "styleport-rt")


def test_metrics_psnr_peak_one_and_ssim():
    rng = np.random.default_rng(0)
    ref = rng.random((1, 3, 32, 32))
    cand = ref + 0.01  # MSE 1e-4 -> PSNR 40 dB with peak 1.0
    m = M.compare(ref, cand)
    assert m["psnr_db"] == pytest.approx(40.0, abs=1e-6)
    assert m["max_abs"] == pytest.approx(0.01) and m["mean_abs"] == pytest.approx(0.01)
    assert 0.9 < m["ssim"] <= 1.0 and m["cosine"] > 0.99
    same = M.compare(ref, ref)
    assert same["psnr_db"] == M.CAP_DB and same["snr_db"] == M.CAP_DB
    vec = M.compare(np.ones((1, 100)) * 3, np.ones((1, 100)) * 3.03, "vector")
    assert vec["psnr_db"] is None and vec["ssim"] is None and vec["snr_db"] == pytest.approx(40.0)


def test_nan_always_fails():
    ref = np.zeros((1, 3, 8, 8))
    cand = ref.copy()
    cand[0, 0, 0, 0] = np.nan
    ok, why = M.check(M.compare(ref, cand), {})
    assert not ok and "NaN" in why[0]
    ok, _ = M.check(M.compare(ref, np.full_like(ref, np.inf)), {"psnr_db": -1000})
    assert not ok


def test_default_tolerances():
    assert M.default_tolerance("transformer", "onnx", "fp32", "onnxruntime") == {"max_abs": 1e-4}
    assert M.default_tolerance("transformer", "tflite", "fp32", "litert") == {"max_abs": 1e-3}
    assert M.default_tolerance("transformer", "onnx", "fp16") == {"psnr_db": 45.0}
    assert M.default_tolerance("transformer", "tflite", "int8") == {"psnr_db": 30.0}
    assert "psnr_db" not in M.default_tolerance("predictor", "onnx", "fp16")


def test_tolerance_file_toml_and_json(tmp_path):
    t = tmp_path / "tol.toml"
    t.write_text('["*/*/int8"]\npsnr_db = 20\n["transformer/tflite/int8"]\npsnr_db = 25\nssim = 0.5\n'
                 '["transformer/onnx"]\nmax_abs = false\ncosine = 0.9\n')
    rules = M.load_tolerances(t)
    assert M.resolve_tolerance("transformer", "tflite", "int8", rules=rules) == {"psnr_db": 25.0, "ssim": 0.5}
    assert M.resolve_tolerance("predictor", "onnx", "int8", rules=rules)["psnr_db"] == 20.0
    assert M.resolve_tolerance("transformer", "onnx", "fp32", rules=rules) == {"cosine": 0.9}
    j = tmp_path / "tol.json"
    j.write_text(json.dumps({"tolerances": {"*/*/fp16": {"psnr_db": 30}}}))
    assert M.resolve_tolerance("transformer", "onnx", "fp16", rules=M.load_tolerances(j)) == {"psnr_db": 30.0}
    bad = tmp_path / "bad.toml"
    bad.write_text('["a/b/c"]\npsnr = 3\n')
    with pytest.raises(BadInput, match="unknown metric"):
        M.load_tolerances(bad)
    bad.write_text("not = [toml")
    with pytest.raises(BadInput, match="cannot parse"):
        M.load_tolerances(bad)


def test_bundle_parity_passes(bundle, tmp_path):
    proc = run_cli("parity", bundle, "--json", tmp_path / "p.json", "--junit", tmp_path / "p.xml",
                   "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    names = {c["name"]: c for c in doc["checks"]}
    # bottleneck, transformer and the chained pipeline are reported apart
    assert {"predictor/onnx/fp32@onnxruntime", "transformer/onnx/fp32@onnxruntime",
            "transformer/onnx/fp16@onnxruntime", "transformer/tflite/fp32@litert",
            "predictor/tflite/fp32@litert", "pipeline/onnx/fp32@onnxruntime",
            "pipeline/tflite/fp32@litert"} <= set(names)
    pred = names["predictor/onnx/fp32@onnxruntime"]
    assert pred["parity"]["psnr_db"] is None and pred["parity"]["cosine"] > 0.9999
    fp32 = names["transformer/onnx/fp32@onnxruntime"]
    assert fp32["parity"]["max_abs"] < 1e-4 and fp32["pass"] is True and fp32["reference"].startswith("torch:")
    fp16 = names["transformer/onnx/fp16@onnxruntime"]
    assert fp16["tolerance"] == {"psnr_db": 45.0} and fp16["parity"]["psnr_db"] > 45
    suite = ET.parse(tmp_path / "p.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == len(doc["checks"])


def test_pipeline_reuses_the_artefact_runs(bundle, monkeypatch):
    """The chained pipeline opens no runner of its own when the artefact checks ran its predictor
    (one open per artefact x runtime), and its figures equal those of fresh runners."""
    from styleport.runtime.harness import parity as P
    from styleport.runtime.harness.targets import Options, collect
    arts = collect([str(bundle)], None)
    opened = []
    real = P.make_runner

    def counting(rt, path, **kw):
        opened.append((rt, str(path)))
        return real(rt, path, **kw)
    monkeypatch.setattr(P, "make_runner", counting)
    opts = Options(threads=1, runtimes=["onnxruntime", "litert"])
    checks, _ = P.bundle_parity(arts, opts)
    pipes = {c.name: c.to_dict() for c in checks if c.model == "pipeline"}
    assert {"pipeline/onnx/fp32@onnxruntime", "pipeline/tflite/fp32@litert"} <= set(pipes)
    assert len(opened) == len(set(opened)) == sum(1 for c in checks if c.model != "pipeline")
    # the same pipelines with fresh runners: nothing cached from the artefact checks
    fresh = []
    for (f, p, v, r) in {(c.format, c.precision, None, c.runtime) for c in checks if c.model == "pipeline"}:
        pick = [a for a in arts if a.format == f and (a.precision or "fp32") == p and not a.variant]
        fc, _ = P.bundle_parity(pick, Options(threads=1, runtimes=[r]))
        fresh += [c.to_dict() for c in fc if c.model == "pipeline"]
    assert {c["name"]: c["parity"] for c in fresh} == {n: c["parity"] for n, c in pipes.items()}


def test_tolerance_failure_exit1_and_junit_failure(bundle, tmp_path):
    tol = tmp_path / "strict.toml"
    tol.write_text('["transformer/onnx/fp16"]\npsnr_db = 300\n')
    proc = run_cli("parity", bundle, "--tolerances", tol, "--junit", tmp_path / "p.xml", "--runtimes",
                   "onnxruntime", "--threads", "1")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    root = ET.parse(tmp_path / "p.xml").getroot()
    failed = [tc for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert [tc.get("name") for tc in failed] == ["transformer/onnx/fp16@onnxruntime"]
    assert "psnr_db" in failed[0].find("failure").get("message")


@pytest.mark.parametrize("selector", ["transformr/onnx/fp32", "transformer/onx", "*/*/int8", "pipeline/coreml"])
def test_a_selector_that_matches_nothing_is_exit_2(bundle, tmp_path, selector):
    tol = tmp_path / "typo.toml"
    tol.write_text(f'["{selector}"]\nmax_abs = 0.0\n')
    proc = run_cli("parity", bundle, "--tolerances", tol, "--runtimes", "onnxruntime", "--threads", "1")
    assert_one_line_error(proc, 2, f"[{selector}] matches no artefact")
    assert "models: pipeline, predictor, transformer; formats: onnx; precisions: fp16, fp32" in proc.stderr


def test_moved_checkpoint(bundle, tmp_path):
    import shutil
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["source"]["checkpoint"] = str(tmp_path / "gone")
    (b / "manifest.json").write_text(json.dumps(m))
    # no checkpoint: the fp32 artefacts stand in as reference, and it is said
    proc = run_cli("parity", b, "--runtimes", "onnxruntime", "--threads", "1", "--json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
    assert "not found" in proc.stderr and "fp32 artefacts as reference" in proc.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    # ... and are never reported as passing against themselves (nor is their own pipeline)
    names = [c["name"] for c in doc["checks"]]
    assert "transformer/onnx/fp32@onnxruntime" not in names and "predictor/onnx/fp32@onnxruntime" not in names
    assert "pipeline/onnx/fp32@onnxruntime" not in names
    assert "transformer/onnx/fp16@onnxruntime" in names
    assert all(c["reference"].startswith("onnxruntime:") for c in doc["checks"])
    assert sorted(doc["reference_artifacts"]) == ["onnxruntime:b/onnx/predictor.fp32.onnx",
                                                  "onnxruntime:b/onnx/transformer.fp32.onnx"]
    assert "reference (not checked)" in proc.stderr
    proc = run_cli("parity", b, "--checkpoint", bundle.parent / "ckpt", "--runtimes", "onnxruntime",
                   "--json", tmp_path / "q.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "q.json").read_text())["checks"][0]["reference"].startswith("torch:")
    assert_one_line_error(run_cli("parity", b, "--checkpoint", tmp_path / "nowhere"), 2, "checkpoint not found")


def test_nan_model_fails(tmp_path):
    ref = opset9_onnx(tmp_path / "ref.onnx", size=16)
    bad = nan_onnx(tmp_path / "nan.onnx", size=16)
    tol = tmp_path / "loose.toml"
    tol.write_text('["*"]\nmax_abs = false\n')  # even with no threshold at all
    proc = run_cli("parity", "--reference", ref, "--candidate", bad, "--tolerances", tol,
                   "--junit", tmp_path / "n.xml")
    assert proc.returncode == 1, proc.stderr
    assert "NaN" in proc.stdout
    assert ET.parse(tmp_path / "n.xml").getroot().find(".//failure") is not None


def test_two_files_opset9_pass_and_mismatch(tmp_path):
    a = opset9_onnx(tmp_path / "a.onnx", size=16)
    b = opset9_onnx(tmp_path / "b.onnx", size=16, nhwc=True)  # same net, NHWC layout
    proc = run_cli("parity", "--reference", a, "--candidate", b, "--json", tmp_path / "p.json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    c = json.loads((tmp_path / "p.json").read_text())["checks"][0]
    assert c["parity"]["max_abs"] < 1e-6
    off = opset9_onnx(tmp_path / "off.onnx", size=16, bias=0.3)
    assert run_cli("parity", "--reference", a, "--candidate", off).returncode == 1
    other = nan_onnx(tmp_path / "other.onnx", size=24)
    proc = run_cli("parity", "--reference", a, "--candidate", other)
    assert proc.returncode == 1 and "shape" in proc.stdout


def test_layerwise_onnx_vs_tflite_and_onnx(bundle, tmp_path):
    onnx_fp32 = bundle / "onnx/transformer.fp32.onnx"
    proc = run_cli("parity", "--layerwise", onnx_fp32, bundle / "tflite/transformer.fp32.tflite",
                   "--json", tmp_path / "l.json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    doc = json.loads((tmp_path / "l.json").read_text())
    assert doc["matching"] == "shape+order" and doc["matched"] > 20 and doc["first_failing"] is None
    proc = run_cli("parity", "--layerwise", onnx_fp32, bundle / "onnx/transformer.fp16.onnx",
                   "--layer-tol", "1e-6", "--json", tmp_path / "m.json")
    assert proc.returncode == 1
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["matching"] == "name" and doc["first_failing"]["index"] <= 3
    assert "first layer over tolerance" in proc.stdout


def test_google_int8_vs_f16(magenta_dir, tmp_path):
    f16 = magenta_dir / "style_transfer_f16_384.tflite"
    q8 = magenta_dir / "style_transfer_quantized_384.tflite"
    proc = run_cli("parity", "--reference", f16, "--candidate", q8, "--json", tmp_path / "g.json",
                   "--junit", tmp_path / "g.xml")
    assert proc.returncode == 1, proc.stderr
    c = json.loads((tmp_path / "g.json").read_text())["checks"][0]
    assert c["precision"] == "int8" and c["tolerance"] == {"psnr_db": 30.0}
    assert 15.0 < c["parity"]["psnr_db"] < 30.0  # about 22 dB on seeded random inputs
    assert ET.parse(tmp_path / "g.xml").getroot().find(".//failure") is not None
    tol = tmp_path / "int8.toml"
    tol.write_text('["*/tflite/int8"]\npsnr_db = 15\n')
    assert run_cli("parity", "--reference", f16, "--candidate", q8, "--tolerances", tol).returncode == 0
