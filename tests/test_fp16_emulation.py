"""fp16 emulation (parity --emulate) and the fp16-safe export, on a 0..255 pytorch/examples-style
network the test writes itself (issue #16)."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from styleport.cli import main
from styleport.metrics import psnr_db

SIZE = 32


@pytest.fixture(scope="module")
def ex255(tmp_path_factory):
    """(checkpoint, unsafe bundle (TFLite fp16, --no-fp16-rescale), safe bundle (default export))."""
    from styleport.models.examples255 import examples255_state_dict
    d = tmp_path_factory.mktemp("ex255")
    torch.save(examples255_state_dict(width=0.125), d / "ex255.pth")
    assert main(["import", "--from", "fast-neural-style", str(d / "ex255.pth"), "--out", str(d / "ck")]) == 0
    common = ["--precisions", "fp16", "--size", str(SIZE), "--no-variants", "--no-progress"]
    assert main(["export", str(d / "ck"), "--out", str(d / "unsafe"), "--formats", "tflite",
                 "--no-fp16-rescale", *common]) == 0
    assert main(["export", str(d / "ck"), "--out", str(d / "safe"), "--formats", "onnx,tflite,coreml", *common]) == 0
    return d / "ck", d / "unsafe", d / "safe"


def test_unsafe_export_overflows_at_the_first_norm(ex255, tmp_path):
    _, unsafe, _ = ex255
    p = run_cli("parity", unsafe, "--emulate", "fp16", "--json", tmp_path / "p.json")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "overflow" in (p.stdout + p.stderr).lower()
    doc = json.loads((tmp_path / "p.json").read_text())
    ck = doc["checks"][0]
    em = ck["emulation"]
    first = em["first_overflow"]
    # conv1 -> in1: the square of (x - mean) inside the decomposed instance norm (MEAN, SUB, MUL)
    assert first["block"].startswith("conv_2d #1") and first["op"] == "MUL", first
    assert first["max_abs"] > 65504 and first["overflow"] > 0
    assert "overflow at layer conv_2d #1" in ck["reasons"][0]
    assert ck["parity"]["psnr_db"] < 45
    # x86 LiteRT on the same file passes: the overflow is invisible without emulation
    assert run_cli("parity", unsafe).returncode == 0


def test_safe_export_passes_emulated_fp16_with_headroom_table(ex255, tmp_path):
    _, _, safe = ex255
    man = json.loads((safe / "manifest.json").read_text())
    for a in man["artifacts"]:
        r = a["details"]["fp16_rescale"]
        assert r["applied"] and r["layers"][0]["conv"] == "conv1" and r["layers"][0]["scale"] < 1
        assert r["fp32_max_abs_change"] <= 1e-4
    p = run_cli("parity", safe, "--emulate", "fp16", "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "fp16 headroom" in p.stdout and "margin" in p.stdout
    doc = json.loads((tmp_path / "p.json").read_text())
    assert {c["format"] for c in doc["checks"]} == {"onnx", "tflite", "coreml"}
    for c in doc["checks"]:
        assert c["runtime"] == "emulate-fp16" and c["parity"]["psnr_db"] >= 45, c["name"]
        assert c["emulation"]["first_overflow"] is None
        assert c["emulation"]["headroom"] and all(r["overflow"] == 0 for r in c["emulation"]["headroom"])
    # the quality report carries the headroom table too
    q = json.loads((safe / "quality.json").read_text())
    heads = [r["fp16_headroom"] for r in q["results"] if r.get("fp16_headroom")]
    assert len(heads) == 3 and all(h.get("layers") and h["problem"] is None for h in heads)
    assert "fp16 headroom" in (safe / "quality.md").read_text()


def test_rescale_leaves_fp32_numbers_unchanged(ex255):
    from styleport.export.fp16safe import make_fp16_safe
    from styleport.export.wrappers import export_module, io_spec
    from styleport.models.checkpoint import load_checkpoint
    model, _ = load_checkpoint(ex255[0])
    for fmt in ("onnx", "tflite"):
        ref = export_module(model, "transformer", fmt)
        mod = export_module(model, "transformer", fmt)
        inputs, _, sample = io_spec(model, "transformer", fmt, (48, 40), 256)
        d = make_fp16_safe(mod, sample, inputs)
        assert d["applied"] and mod.net.conv1.conv2d.weight.abs().max() < ref.net.conv1.conv2d.weight.abs().max()
        x = torch.rand(sample[0].shape, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            a, b = ref(x), mod(x)
        assert float((a - b).abs().max()) <= 1e-4   # the fp32 tolerance (ORT)


def test_acc16_runs_and_tflite_interpreter_matches_litert(ex255):
    from ai_edge_litert.interpreter import Interpreter

    from styleport.runtime.numerics.emulate import emulate
    from styleport.runtime.numerics.tflite import TFLiteEmulator
    from styleport.runtime.numerics.fp16 import round16
    path = ex255[2] / "tflite" / "transformer.fp16.tflite"
    x = np.random.default_rng(0).random((1, SIZE, SIZE, 3), dtype=np.float32)
    it = Interpreter(model_path=str(path))
    want = next(iter(it.get_signature_runner()(content_image=x).values()))
    got, _ = TFLiteEmulator(path, "fp32").run({"content_image": x})
    assert np.abs(got["stylized_image"] - want).max() <= 1e-5   # the interpreter itself is faithful
    for mode in ("fp16", "fp16-acc16"):
        e = emulate(path, {"content_image": x}, mode)
        out = e.outputs["stylized_image"]
        assert np.isfinite(out).all() and np.array_equal(round16(out), out)   # stored in fp16
        assert 30 < psnr_db(want, out) < 200
    p = run_cli("parity", ex255[1], "--emulate", "fp16-acc16")   # the CLI path of acc16 names it too
    assert p.returncode == 1 and "overflow at layer conv_2d #1" in p.stdout + p.stderr, p.stdout + p.stderr


def test_onnx_cast_pairs_round_every_node():
    """A Mul by 300 of a value of 300 overflows in fp16 even though fp32 holds 90,000: the
    emulator's Cast pairs must show it, and name the node."""
    from onnx import TensorProto, helper

    from styleport.runtime.numerics.emulate import emulate
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [300.0])
    g = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["m"], name="big"),
                           helper.make_node("Div", ["m", "k"], ["y"], name="back")], "g", [x], [y], [k])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    e = emulate(model, {"x": np.array([[1.0, 2.0, 300.0, 1e-3]], np.float32)}, "fp16", fmt="onnx")
    assert np.isinf(e.outputs["y"][0, 2]) and abs(e.outputs["y"][0, 0] - 1.0) < 1e-3
    first = e.first_overflow()
    assert first.name == "m" and first.overflow == 1 and first.max_abs == pytest.approx(90000.0)
    assert "overflow" in e.problem()
