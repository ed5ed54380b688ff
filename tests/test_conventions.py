"""Comparing against files nobody here made: per-side value range and colour order.

A pytorch/examples fast_neural_style network takes and returns 0..255 values; others are BGR. The
parity of our TFLite export against a third party's 0..255 ONNX export of the same weights must pass
at the fp32 tolerance once each side states its convention (and fail without it: only the scale
differs, so cosine alone would look perfect).
"""

import json

import pytest
import torch

from conftest import assert_one_line_error, run_cli
from styleport.cli import main
from fast_neural_style_net import reference

SIZE = 64


class _BGR(torch.nn.Module):
    """The same network, taking and returning BGR."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.flip(1)).flip(1)


def _onnx(module, path):
    x = torch.rand(1, 3, SIZE, SIZE) * 255.0
    torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=["output"], dynamo=False,
                      opset_version=17)
    return path


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    d = tmp_path_factory.mktemp("third-party")
    net = reference((8, 16, 32), seed=1)
    torch.save(net.state_dict(), d / "model.pth")
    p = run_cli("import", "--from", "fast-neural-style", d / "model.pth", "--out", d / "ckpt")
    assert p.returncode == 0, p.stderr
    p = run_cli("export", d / "ckpt", "--out", d / "bundle", "--formats", "tflite", "--precisions", "fp32",
                "--size", SIZE, "--no-progress")
    assert p.returncode == 0, p.stderr
    return {"tflite": d / "bundle" / "tflite" / "transformer.fp32.tflite",
            "onnx255": _onnx(net, d / "theirs_0_255.onnx"),
            "bgr255": _onnx(_BGR(net), d / "theirs_bgr_0_255.onnx"), "dir": d}


class _Proc:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


def _cli(capsys, *args):
    """The real CLI in this process (the conversions above already paid the subprocess start-up)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return _Proc(code, out, err)


def _parity(tp, capsys, *args):
    out = tp["dir"] / "p.json"
    p = _cli(capsys, "parity", *args, "--threads", "1", "--json", out, "-q")
    doc = json.loads(out.read_text()) if out.exists() and p.returncode in (0, 1) else None
    out.unlink(missing_ok=True)
    return p, doc


def test_0_255_onnx_vs_our_tflite_passes_with_the_range(third_party, capsys):
    p, doc = _parity(third_party, capsys, "--reference", third_party["onnx255"], "--reference-range", "0,255",
                     "--candidate", third_party["tflite"])
    assert p.returncode == 0, (p.stdout, p.stderr)
    ck = doc["checks"][0]
    assert ck["tolerance"] == {"max_abs": 1e-3} and ck["parity"]["max_abs"] < 1e-3, ck
    assert doc["reference_convention"] == {"range": [0.0, 255.0], "order": None}


def test_without_the_range_it_fails_although_cosine_is_perfect(third_party, capsys):
    p, doc = _parity(third_party, capsys, "--reference", third_party["onnx255"], "--candidate", third_party["tflite"])
    assert p.returncode == 1, (p.stdout, p.stderr)
    par = doc["checks"][0]["parity"]
    assert par["cosine"] > 0.9999 and par["psnr_db"] < 20 and par["max_abs"] > 0.1, par


def test_bgr_side(third_party, capsys):
    p, _ = _parity(third_party, capsys, "--reference", third_party["bgr255"], "--reference-range", "0,255",
                   "--reference-order", "bgr", "--candidate", third_party["tflite"])
    assert p.returncode == 0, (p.stdout, p.stderr)
    # the same file taken as RGB: channels swapped, parity fails
    p, _ = _parity(third_party, capsys, "--reference", third_party["bgr255"], "--reference-range", "0,255",
                   "--candidate", third_party["tflite"])
    assert p.returncode == 1, (p.stdout, p.stderr)
    # conventions on both sides, the other way round
    p, _ = _parity(third_party, capsys, "--reference", third_party["tflite"], "--candidate", third_party["bgr255"],
                   "--candidate-range", "0,255", "--candidate-order", "bgr")
    assert p.returncode == 0, (p.stdout, p.stderr)


def test_bench_of_a_bare_file_with_a_convention(third_party, tmp_path, capsys):
    p = _cli(capsys, "bench", third_party["bgr255"], "--range", "0,255", "--order", "bgr", "--num_runs", "2",
                "--threads", "1", "--json", tmp_path / "b.json", "-q")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["settings"]["convention"] == {"range": [0.0, 255.0], "order": "bgr"}
    assert doc["results"][0]["convention"] == {"range": [0.0, 255.0], "order": "bgr"}


@pytest.mark.parametrize("args,msg", [
    (["--reference-range", "255"], "LO,HI"),
    (["--reference-range", "5,1"], "LO < HI"),
    (["--candidate-order", "rbg"], "rgb or bgr"),
])
def test_bad_conventions_are_one_line_errors(third_party, args, msg, capsys):
    p = _cli(capsys, "parity", "--reference", third_party["onnx255"], "--candidate", third_party["tflite"], *args)
    assert_one_line_error(p, 2, msg)


def test_conventions_need_two_files(third_party, capsys):
    p = _cli(capsys, "parity", third_party["dir"] / "bundle", "--candidate-range", "0,255")
    assert_one_line_error(p, 2, "--reference A --candidate B")
