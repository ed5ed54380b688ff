"""The real aarch64 kernels under QEMU user mode (issue 22): litert-arm64 / onnxruntime-arm64.

The tests that run a model need qemu-aarch64 (apt-get install qemu-user) and the sysroot that
`styleport device setup arm64` builds (network once: Debian and PyPI); without them they skip and
say which is missing (tests never download). CLI contract tests (SME refused, bench refuses to time
an emulated runtime, setup without QEMU) run everywhere. Tiny seeded models at 32 px: an emulated
run is ~10-50x slower than native.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from styleport.device import arm64 as D
from styleport.errors import BadInput
from styleport.runtime.runners.registry import make_runner
from conftest import ROOT, assert_one_line_error, run_cli

SIZE = 32


def _sysroot_reason() -> str | None:
    if D.qemu_binary() is None:
        return "qemu-aarch64 not installed (apt-get install qemu-user)"
    try:
        D.find()
    except Exception as e:  # noqa: BLE001 - RuntimeUnavailable: the reason, e.g. not built yet
        return f"{e} (tests never download: build it once with `styleport device setup arm64`)"
    return None


needs_sysroot = pytest.mark.skipif(_sysroot_reason() is not None, reason=f"arm64: {_sysroot_reason()}")


def _model():
    from styleport.models.presets import build, default_config
    torch.manual_seed(0)
    m = build(default_config("magenta-mobile", width=0.25)).eval()
    with torch.no_grad():   # some spread in the CIN head, so the output is not flat
        for p in m.transformer.head.parameters():
            p.mul_(3.0)
    return m


class _Built(dict):
    """Artefacts made on first use: without qemu-user only test_bench_row_says_why_no_latency runs,
    and it needs the int8 predictor alone."""

    def __init__(self, makers):
        super().__init__()
        self.makers = makers

    def __missing__(self, key):
        self[key] = value = self.makers[key]()
        return value


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny transformer (.tflite fp32, .onnx fp32) and a full-integer int8 predictor .tflite, made
    by styleport's own exporters and quantizer (each when a test first asks for it)."""
    from styleport.export.tflite_export import export_tflite
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import make_variant
    from tiny import export_onnx
    d = tmp_path_factory.mktemp("arm64")
    model = _model()

    def tflite32():
        module = export_module(model, "transformer", "tflite")
        inputs, outputs, sample = io_spec(model, "transformer", "tflite", (SIZE, SIZE), 64)
        export_tflite(module, sample, inputs, outputs, d / "transformer.fp32.tflite")
        return d / "transformer.fp32.tflite"

    def int8():
        pmod = export_module(model, "predictor", "tflite")
        pin, pout, psample = io_spec(model, "predictor", "tflite", (SIZE, SIZE), SIZE)
        p32, p8 = d / "predictor.fp32.tflite", d / "predictor.int8.tflite"
        export_tflite(pmod, psample, pin, pout, p32)
        make_variant("tflite", "int8", p32, p8, model=model, network="predictor", inputs=pin, sample=psample,
                     calibration={"synthetic": True, "count": 6})
        return p8

    def onnx32():
        g = torch.Generator().manual_seed(1)
        c, b = torch.rand(1, 3, SIZE, SIZE, generator=g), torch.rand(1, 100, 1, 1, generator=g)
        return export_onnx(model.transformer, (c, b), ["content_image", "style_bottleneck"], ["stylized_image"],
                           d / "transformer.fp32.onnx")
    return _Built({"tflite32": tflite32, "int8": int8, "onnx32": onnx32})


def _feeds(runner, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in runner.input_specs():
        shape = s.concrete_shape()
        feeds[s.name] = rng.random(shape, dtype=np.float32) if s.dtype == "float32" else \
            rng.integers(-128, 127, shape).astype(s.dtype)
    return feeds


def _run_both(host_rt, arm_rt, path, **arm_options):
    with make_runner(host_rt, path, threads=1) as h:
        feeds = _feeds(h)
        x86 = h.run(feeds)
    with make_runner(arm_rt, path, threads=1, **arm_options) as a:
        assert a.info["machine"] == "aarch64"
        arm = a.run(feeds)
        desc = a.describe()
    assert list(arm) == list(x86)
    return x86, arm, desc


# ---- with the sysroot: the numerics -------------------------------------------------------------

@needs_sysroot
def test_int8_tflite_bit_identical_on_aarch64_and_x86(models):
    x86, arm, desc = _run_both("litert", "litert-arm64", models["int8"])
    assert desc["qemu_cpu"] == "cortex-a76" and desc["arm_fp16"] is False
    for name in x86:
        assert x86[name].dtype == arm[name].dtype
        assert np.array_equal(x86[name], arm[name]), np.abs(x86[name] - arm[name]).max()


@needs_sysroot
@pytest.mark.parametrize("host_rt,arm_rt,key", [("litert", "litert-arm64", "tflite32"),
                                                ("onnxruntime", "onnxruntime-arm64", "onnx32")])
def test_fp32_within_tolerance(models, host_rt, arm_rt, key):
    x86, arm, _ = _run_both(host_rt, arm_rt, models[key])
    for name in x86:
        err = float(np.abs(x86[name].astype(np.float64) - arm[name]).max())
        assert err <= 1e-4, err   # different kernels (NEON vs AVX), same fp32 arithmetic


@needs_sysroot
def test_forced_fp16_differs_and_is_reported(models, tmp_path):
    """--arm-fp16: XNNPACK computes the fp32 file in fp16; parity reports it against the x86 run
    (the fp16 tolerances) and the JSON says how it ran."""
    path = models["tflite32"]
    x86, arm, desc = _run_both("litert", "litert-arm64", path, arm_fp16=True)
    assert desc["arm_fp16"] is True and "FORCE_FP16" in desc["api"]
    name = next(iter(x86))
    err = np.abs(x86[name].astype(np.float64) - arm[name])
    assert err.max() > 1e-4          # not the fp32 arithmetic
    psnr = 10 * np.log10(1.0 / float(np.mean(err ** 2)))
    assert 40.0 <= psnr < 100.0, psnr   # still the same picture, and visibly not the fp32 arithmetic
    out = tmp_path / "p.json"
    p = run_cli("parity", "--reference", path, "--candidate", path, "--runtimes", "litert-arm64", "--arm-fp16",
                "--threads", "1", "--json", out, "-q", cwd=ROOT)
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(out.read_text())
    assert doc["arm64"] == {"cpu": "cortex-a76", "qemu_cpu": "cortex-a76", "fp16": True,
                            "judged_at": "fp16 tolerances"}
    (ck,) = doc["checks"]
    assert ck["runtime"] == "litert-arm64" and ck["reference"].startswith("litert:")
    psnr = next(iter(ck["metrics"].values()))["psnr_db"]
    assert 40.0 <= psnr < 100.0, (psnr, ck["status"])   # visibly not fp32
    assert ck["tolerance"].get("psnr_db") == 45.0 and "max_abs" not in ck["tolerance"]   # fp16 tolerances
    assert ck["status"] == ("pass" if psnr >= 45.0 else "fail")
    assert "XNNPACK forced to fp16" in p.stderr


@needs_sysroot
def test_max_cpu_without_sme_runs(models):
    x86, arm, desc = _run_both("litert", "litert-arm64", models["int8"], arm_cpu="max")
    assert desc["qemu_cpu"] == "max,sme=off"
    for name in x86:
        assert np.array_equal(x86[name], arm[name])


# ---- everywhere: the contract ------------------------------------------------------------------

def test_sme_enabled_cpu_refused(tmp_path):
    with pytest.raises(BadInput, match="SME"):
        D.qemu_cpu("max,sme=on")
    assert D.qemu_cpu("max") == "max,sme=off" and D.qemu_cpu(None) == "cortex-a76"
    with pytest.raises(BadInput, match="must be one of"):
        D.qemu_cpu("cortex-a53")
    # refused before any QEMU process starts, and from the CLI as a one-line usage error
    f = tmp_path / "m.tflite"
    f.write_bytes(b"not a model")
    with pytest.raises(BadInput, match="SME"):
        make_runner("litert-arm64", f, arm_cpu="max,sme=on").open()
    p = run_cli("parity", "--reference", f, "--candidate", f, "--runtimes", "litert-arm64",
                "--arm-cpu", "max,sme=on", cwd=ROOT)
    assert_one_line_error(p, 2, "SME-enabled CPU is refused")


def test_arm_flags_need_an_arm_runtime(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x")
    p = run_cli("parity", "--reference", f, "--candidate", f, "--arm-fp16", cwd=ROOT)
    assert_one_line_error(p, 2, "apply to --runtimes litert-arm64")
    p = run_cli("parity", "--reference", f, "--candidate", f, "--runtimes", "onnxruntime-arm64", "--arm-fp16",
                cwd=ROOT)
    assert_one_line_error(p, 2, "--arm-fp16 applies to litert-arm64")


def test_bench_gives_no_latency_for_emulated_runtimes(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x")
    p = run_cli("bench", f, "--runtimes", "litert-arm64", "--no-verify", cwd=ROOT)
    assert_one_line_error(p, 2, "says nothing about a phone")


def test_bench_row_says_why_no_latency(models):
    """With a host runtime beside it, the emulated runtime gets a row with no latency and the reason."""
    from styleport.runtime.harness.bench import BenchOptions, bench
    from styleport.runtime.harness.targets import bare_artifact
    a = bare_artifact(models["int8"], None)
    results, checks = bench([a], BenchOptions(runtimes=["litert", "litert-arm64"], threads=1, num_runs=2,
                                              warmup_runs=0))
    rows = {r["runtime"]: r for r in results}
    assert rows["litert"]["latency_ms"]["p50"] > 0
    assert rows["litert-arm64"]["latency_ms"] is None and rows["litert-arm64"]["status"] == "skipped"
    assert "emulated under QEMU" in rows["litert-arm64"]["error"]


def test_runner_without_sysroot_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ROOT_ENV, str(tmp_path / "none"))
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x")
    from styleport.runtime.runners.base import RuntimeUnavailable
    with pytest.raises(RuntimeUnavailable, match="styleport device setup arm64|apt-get install qemu-user"):
        make_runner("litert-arm64", f).open()


def test_setup_without_qemu_exits_3_naming_the_package(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=str(bindir), PYTHONWARNINGS="ignore", **{D.ROOT_ENV: str(tmp_path / "root")})
    p = subprocess.run([sys.executable, "-m", "styleport", "device", "setup", "arm64"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert_one_line_error(p, 3, "apt-get install qemu-user")
    assert not (tmp_path / "root").exists()   # nothing written before the check
    p = subprocess.run([sys.executable, "-m", "styleport", "device", "setup", "riscv"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert_one_line_error(p, 2, "available: arm64")
