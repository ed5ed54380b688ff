"""ExecuTorch (issue 17): export -> parity -> bench of .pte files on a tiny model, inspect, a bare .pte
against the ONNX of the same network, int8 through PT2E, per-op profile and layer-wise outputs.
Real executorch runtime (the pip wheel), no mocks. Google's trained weights only when
../shared/data is present."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import MAGENTA, SHARED, assert_one_line_error, run_cli
from styleport.models.checkpoint import load_checkpoint, save_checkpoint
from styleport.models.presets import build, default_config

pytest.importorskip("executorch.runtime")


@pytest.fixture(scope="module")
def et_bundle(tmp_path_factory):
    """A tiny magenta-mobile (predictor + transformer) exported to ExecuTorch fp32 + int8 (plain: dynamic;
    variant static, calibrated on procedural images) and ONNX fp32 + int8 through the CLI."""
    tmp = tmp_path_factory.mktemp("et")
    cfg = default_config("magenta-mobile", width=0.25)
    torch.manual_seed(3)
    model = build(cfg).eval()
    with torch.no_grad():  # away from init so the norms' gammas/betas matter
        for p in model.transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ck = save_checkpoint(model, cfg, tmp / "ck")
    out = tmp / "bundle"
    p = run_cli("export", ck, "--out", out, "--formats", "executorch,onnx", "--precisions", "fp32,int8",
                "--size", "48", "--style-size", "64", "--calib-synthetic", "--calib-count", "3", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    return ck, out, json.loads((out / "manifest.json").read_text())


def _art(man, net, fmt, prec, variant=None):
    (a,) = [a for a in man["artifacts"] if (a["model"], a["format"], a["precision"]) == (net, fmt, prec)
            and a.get("variant") == variant]
    return a


def test_format_tables_agree():
    from styleport.export.formats import FORMATS, exporter
    from styleport.export.wrappers import FORMS, LAYOUT
    from styleport.manifest import FORMATS as MANIFEST_FORMATS
    from styleport.runtime.runners.registry import DEFAULTS, FORMAT_OF_SUFFIX
    assert tuple(FORMATS) == MANIFEST_FORMATS
    for fmt in FORMATS:
        mod = exporter(fmt)
        assert mod.EXT.startswith(".") and "fp32" in mod.NATIVE and mod.BASE in ("file", "module")
        assert callable(mod.export) and callable(mod.check)
        assert fmt in FORMS and fmt in LAYOUT and DEFAULTS[fmt]
        assert FORMAT_OF_SUFFIX[mod.EXT] == fmt


def test_export_manifest_delegation_and_fp32_check(et_bundle):
    ck, out, man = et_bundle
    for net in ("predictor", "transformer"):
        a = _art(man, net, "executorch", "fp32")
        assert a["path"] == f"executorch/{net}.fp32.pte" and (out / a["path"]).is_file()
        d = a["details"]
        assert d["backend"] == "XnnpackBackend" and d["layout"] == "NCHW"
        assert d["check"]["runtime"] == "executorch" and d["check"]["max_abs_vs_torch"] <= 1e-4
        dl = d["delegation"]
        assert dl["delegated_ops"] > 50
        assert a["inputs"][0]["layout"] == "NCHW" and a["inputs"][0]["shape"][1] == 3
    # both networks run whole in one XNNPACK delegate (pad, norm and upsample forms of wrappers.py)
    for net in ("predictor", "transformer"):
        for prec, var in (("fp32", None), ("int8", None), ("int8", "static")):
            d = _art(man, net, "executorch", prec, var)["details"]["delegation"]
            assert d["non_delegated_ops"] == 0 and d["delegated_subgraphs"] == 1, (net, prec, var, d)
    assert [s["name"] for s in _art(man, "transformer", "executorch", "fp32")["inputs"]] == \
        ["content_image", "style_bottleneck"]
    q = _art(man, "transformer", "executorch", "int8")["details"]  # plain: dynamic, no calibration
    assert "dynamic" in q["method"] and q["calibration"] is None
    assert q["ops"]["quantized"].get("Conv2d", 0) >= 10
    assert q["ops"]["float"].get("ReciprocalSquareRoot", 0) >= 1  # instance norm stays float
    s = _art(man, "transformer", "executorch", "int8", "static")["details"]
    assert s["ops"]["quantized"].get("Conv2d", 0) == 16 and s["ops"]["quantized"].get("ConvTranspose2d") == 2
    assert s["ops"]["float"].get("ReciprocalSquareRoot", 0) >= 1
    assert s["calibration"] and "synthetic" in json.dumps(s["calibration"])


def test_parity_and_bench_of_the_bundle(et_bundle, tmp_path):
    ck, out, man = et_bundle
    p = run_cli("parity", out, "--runtimes", "executorch", "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stdout + p.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "p.json").read_text())["checks"]}
    t32 = checks["transformer/executorch/fp32@executorch"]
    assert t32["status"] == "pass" and t32["metrics"]["stylized_image"]["max_abs"] <= 1e-4
    assert checks["pipeline/executorch/int8@executorch"]["status"] == "pass"
    assert checks["pipeline/executorch/int8/static@executorch"]["status"] == "pass"
    for v in ("", "/static"):
        assert checks[f"transformer/executorch/int8{v}@executorch"]["metrics"]["stylized_image"]["psnr_db"] >= 30
    p = run_cli("bench", out, "--runtimes", "executorch", "--num_runs", "3", "--warmup_runs", "0", "--threads", "1",
                "--json", tmp_path / "b.json")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert {(r["model"], r["precision"], r["variant"]) for r in rows} == {
        (n, q, v) for n in ("predictor", "transformer") for q, v in (("fp32", None), ("int8", None), ("int8", "static"))}
    for r in rows:
        assert r["status"] == "ok" and r["runtime"] == "executorch" and r["latency_ms"]["p50"] > 0
        assert r["settings"]["threadpool"] == 1  # --threads reached XNNPACK's pool
        assert r["parity"]["pass"], r
    assert {r["precision"] for r in rows if r["model"] == "transformer"} == {"fp32", "int8"}


def test_runner_process_does_not_import_the_exporter(et_bundle):
    """A benchmark worker loads the runtime extension, not executorch.exir (4.5 s of import per worker
    through executorch.runtime / portable_lib; runners/executorch.py)."""
    import subprocess
    import sys
    ck, out, man = et_bundle
    a = _art(man, "transformer", "executorch", "fp32")
    code = ("import sys, numpy as np\n"
            "from styleport.runtime.runners.registry import make_runner\n"
            f"r = make_runner('executorch', {str(out / a['path'])!r}, threads=1).open()\n"
            "feeds = {s.name: np.random.rand(*s.shape).astype('float32') for s in r.input_specs()}\n"
            "y = r.run(feeds)['stylized_image']\n"
            "print(y.shape, np.isfinite(y).all(), [m for m in sys.modules if m.startswith('executorch.exir')])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("\n")[-2] == f"{tuple(a['outputs'][0]['shape'])} True []", p.stdout


def test_bench_worker_takes_the_precision_from_the_job(et_bundle, tmp_path, monkeypatch):
    """A bundle artefact's precision comes with the job (the manifest's): the worker does not read
    the .pte for it (that imports ExecuTorch's exporter, ~3 s and its memory in the peak RSS); a bare
    file's is read after the peak RSS was taken."""
    from styleport.runtime.harness.worker import run_job
    from styleport.runtime.runners.executorch import ExecuTorchRunner
    ck, out, man = et_bundle
    a = _art(man, "predictor", "executorch", "fp32")
    job = {"runtime": "executorch", "path": str(out / a["path"]), "threads": 1, "size": [64, 64],
           "warmup_runs": 0, "num_runs": 2, "precision": "fp32", "manifest_inputs": a["inputs"],
           "manifest_outputs": a["outputs"]}
    calls = []
    real = ExecuTorchRunner.precision
    monkeypatch.setattr(ExecuTorchRunner, "precision", lambda self: calls.append(1) or real(self))
    res = run_job(job)
    assert res["ok"] and res["precision"] == "fp32" and calls == [] and res["peak_rss_mb"] > 0
    res = run_job({**job, "precision": None})
    assert res["ok"] and res["precision"] == "fp32" and calls == [1]


def test_inspect_pte(et_bundle):
    from styleport.export.inspect import inspect_file
    ck, out, man = et_bundle
    info = inspect_file(out / "executorch" / "transformer.fp32.pte")  # the CLI's --json, in-process
    assert info["format"] == "executorch"
    assert info["file_bytes"] == (out / "executorch/transformer.fp32.pte").stat().st_size
    assert [i["name"] for i in info["inputs"]] == ["content_image", "style_bottleneck"]
    assert info["inputs"][0]["shape"] == [1, 3, 48, 48] and info["outputs"][0]["name"] == "stylized_image"
    assert {"forward", "input_names", "output_names", "layout"} <= set(info["methods"])
    d = info["delegation"]
    assert d["delegated_ops"] > 50 and d["non_delegated_ops"] == 0 and d["delegates"][0]["backend"] == "XnnpackBackend"
    assert info["op_histogram"]["xnnpack:Conv2d"] == 16 and info["op_histogram"]["xnnpack:ConvTranspose2d"] == 2
    assert info["precision"] == "fp32"
    model = load_checkpoint(ck)[0]
    model_params = sum(t.numel() for t in model.transformer.parameters())
    # the first and last conv run in the "phases" form (export/wrappers.py END_CONV_FORM): their
    # kernels are stored widened, r copies offset by a column, zeros around
    from styleport.export.wrappers import END_CONV_FORM, export_module
    from styleport.models.transformer import TransformerNet
    assert END_CONV_FORM["executorch"] == "phases"
    net = next(m for m in export_module(model, "transformer", "executorch").modules() if isinstance(m, TransformerNet))
    widened = 0
    for conv in (net.conv1, net.deconv3):
        r, (co, ci, kh, kw) = conv._phases(48), conv.conv2d.weight.shape
        widened += (r * co * ci * kh * (kw + r - 1) - co * ci * kh * kw + (r - 1) * co) if r > 1 else 0
    assert widened > 0
    expected = model_params + widened
    assert expected <= info["params"] <= expected * 1.01 + 200
    q = inspect_file(out / "executorch" / "transformer.int8-static.pte")
    assert q["precision"] == "int8" and q["weight_dtypes"].get("int8", 0) > 0.5 * model_params
    p = run_cli("inspect", out / "executorch" / "transformer.fp32.pte")
    assert p.returncode == 0 and "delegated ops" in p.stdout


def test_bare_pte_against_onnx_of_the_same_network(et_bundle, tmp_path):
    ck, out, man = et_bundle
    pte = tmp_path / "anon.pte"  # a bare file, no manifest beside it
    pte.write_bytes((out / "executorch/transformer.fp32.pte").read_bytes())
    p = run_cli("parity", "--reference", out / "onnx/transformer.fp32.onnx", "--candidate", pte,
                "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stdout + p.stderr
    (c,) = json.loads((tmp_path / "p.json").read_text())["checks"]
    assert c["format"] == "executorch" and c["metrics"]["stylized_image"]["max_abs"] <= 1e-4
    p = run_cli("bench", pte, "--num_runs", "2", "--json", tmp_path / "b.json")
    assert p.returncode == 0, p.stderr
    (r,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert r["format"] == "executorch" and r["input_size"] == [48, 48] and r["parity"] is None


def test_dynamic_int8_without_calibration_runs(et_bundle, tmp_path):
    """No calibration set: the plain (dynamic) int8 only, static skipped out loud. The predictor's
    3-channel first conv stays float (XNNPACK cannot run it dynamically quantized); every other conv
    is int8 and the program runs."""
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import make_variant
    ck, out, man = et_bundle
    model = load_checkpoint(ck)[0]
    module = export_module(model, "predictor", "executorch")
    inputs, outputs, sample = io_spec(model, "predictor", "executorch", (48, 48), 64)
    d = make_variant("executorch", "int8", None, tmp_path / "p.int8.pte", module=module, model=model,
                     network="predictor", inputs=inputs, outputs=outputs, sample=sample, calibration=None)
    assert "dynamic" in d["method"] and d["calibration"] is None and "variants" not in d
    assert "skipped" in d["static_variants"]
    assert d["ops"]["quantized"]["Conv2d"] >= 10 and d["ops"]["float"]["Conv2d"] == 1
    with torch.no_grad():
        ref = module(*sample).numpy()
    from styleport.runtime.runners.registry import make_runner
    with make_runner("executorch", tmp_path / "p.int8.pte") as r:
        got = r.run({"style_image": sample[0].numpy()})["style_bottleneck"]
    cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
    assert cos > 0.95, cos


def test_bad_pte_files_one_line(tmp_path):
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"\x00" * 64)
    assert_one_line_error(run_cli("inspect", bad), 2, "ExecuTorch")
    p = run_cli("bench", bad, "--num_runs", "1")
    assert p.returncode == 3 and "Traceback" not in p.stderr and "bad.pte" in p.stderr


def test_profile_and_layerwise_through_etdump(et_bundle):
    from styleport.runtime.harness.layerwise import layerwise
    from styleport.runtime.runners.registry import make_runner
    ck, out, man = et_bundle
    path = out / "executorch/transformer.fp32.pte"
    feeds = {"content_image": np.random.default_rng(0).random((1, 3, 48, 48), dtype=np.float32),
             "style_bottleneck": np.zeros((1, 100, 1, 1), np.float32)}
    with make_runner("executorch", path, threads=1) as r:
        prof = r.profile(feeds, runs=2)
    ops = {row["op"]: row for row in prof["by_op_type"]}
    assert prof["runtime"] == "executorch" and prof["runs"] == 2 and prof["total_ms"] > 0
    assert any(o.startswith("Convolution") for o in ops) and any(o.startswith("Deconvolution") for o in ops)
    assert sum(row["ms"] for row in prof["by_op_type"]) == pytest.approx(prof["total_ms"], rel=0.02)
    assert prof["slowest_nodes"][0]["ms"] >= prof["slowest_nodes"][-1]["ms"]
    # one delegate: the ETDump holds its output only, which matches the ONNX network's last tensor
    doc = layerwise(out / "onnx/transformer.fp32.onnx", path, (48, 48), None, 0, 1e-3)
    assert doc["candidate_tensors"] >= 1 and doc["matched"] >= 1 and "delegates" in doc["note"]
    assert doc["first_failing"] is None, doc["first_failing"]
    assert doc["final"]["stylized_image"]["max_abs"] <= 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not (MAGENTA / "style_transfer_f16_384.tflite").exists() or not (SHARED / "images").exists(),
                    reason="../shared/data (Google's Magenta files and images) absent")
def test_google_weights_int8_and_fp16(tmp_path):
    """Google's transfer network, 256² content, the static int8 calibrated on scikit-image's sample images
    that are not held out, measured on the held-out photos x paintings: int8 (dynamic and static) >= 30 dB,
    fp16 >= 45 dB."""
    from pathlib import Path

    import skimage

    from styleport.export.formats import ExportOptions
    from styleport.export.executorch_export import export
    from styleport.export.wrappers import export_module, io_spec
    from styleport.models.importers import magenta_from_tflite
    from styleport.quantization import make_variant
    from styleport.quantization.report import evaluate
    model, _ = magenta_from_tflite(MAGENTA / "style_predict_quantized_256.tflite",
                                   MAGENTA / "style_transfer_f16_384.tflite")
    calib = tmp_path / "calib"
    calib.mkdir()
    held = {"astronaut", "chelsea", "coffee", "rocket"}
    for f in sorted((Path(skimage.__file__).parent / "data").iterdir()):
        if f.suffix in (".png", ".jpg") and f.stem not in held and "GRAY" not in f.stem:
            (calib / f.name).write_bytes(f.read_bytes())
    module = export_module(model, "transformer", "executorch")
    inputs, outputs, sample = io_spec(model, "transformer", "executorch", (256, 256), 256)
    arts = []
    for prec in ("fp16", "int8"):
        p = tmp_path / f"t.{prec}.pte"
        if prec == "fp16":
            export(module, sample, inputs, outputs, p, ExportOptions(precision="fp16"))
        else:
            d = make_variant("executorch", "int8", None, p, module=module, model=model, network="transformer",
                             inputs=inputs, outputs=outputs, sample=sample,
                             calibration={"content": str(calib), "style": str(calib), "count": 8})
            (v,) = d["variants"]
            arts.append({"model": "transformer", "format": "executorch", "precision": prec, "variant": "static",
                         "path": v["path"].name, "bytes": v["path"].stat().st_size, "inputs": inputs})
        arts.append({"model": "transformer", "format": "executorch", "precision": prec, "path": p.name,
                     "bytes": p.stat().st_size, "inputs": inputs})
    doc = evaluate(arts, tmp_path, model, (256, 256), 256,
                   {"eval_content": SHARED / "images" / "content", "eval_style": SHARED / "images" / "style"})
    got = {(r["precision"], r.get("variant")): r for r in doc["results"]}
    print({k: (r.get("psnr_db"), r.get("psnr_min_db"), r["bytes"]) for k, r in got.items()})
    assert got[("fp16", None)]["psnr_db"] >= 45
    for v in (None, "static"):  # every held-out pair >= 30 dB, plain (dynamic) and static
        assert got[("int8", v)]["psnr_db"] >= 30 and got[("int8", v)]["psnr_min_db"] >= 30, v
