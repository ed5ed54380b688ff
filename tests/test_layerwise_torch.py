"""`styleport parity --layerwise CKPT FILE`: torch (leaf-module hooks) against ONNX and TFLite."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import run_cli


@pytest.fixture(scope="module")
def exported(magenta_fp32):
    return magenta_fp32   # (checkpoint, ONNX + TFLite fp32 bundle at 64 px): conftest


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_torch_vs_export_all_layers_pass(exported, tmp_path, fmt):
    ck, b = exported
    f = b / fmt / f"transformer.fp32.{fmt}"
    p = run_cli("parity", "--layerwise", ck, f, "--json", tmp_path / "lw.json")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "lw.json").read_text())
    assert doc["first_failing"] is None
    convs = [r for r in doc["layers"] if r["ref_op"] == "Conv2d"]
    # ONNX: nearly all 16 convs find their partner; TFLite fuses ReLU into the three contract convs,
    # so there the activated tensor is compared instead of the conv's own output
    assert len(convs) >= (14 if fmt == "onnx" else 12), len(convs)


def test_torch_vs_onnx_points_at_the_broken_conv(exported, tmp_path):
    ck, b = exported
    m = onnx.load(str(b / "onnx" / "transformer.fp32.onnx"))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    target = convs[8]  # a conv in the residual trunk
    inits = {i.name: i for i in m.graph.initializer}
    w = inits[target.input[1]]
    arr = numpy_helper.to_array(w).copy()
    arr *= 1.5
    w.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), w.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    p = run_cli("parity", "--layerwise", ck, bad, "--json", tmp_path / "lw.json")
    assert p.returncode == 1, p.stderr
    doc = json.loads((tmp_path / "lw.json").read_text())
    first = doc["first_failing"]
    assert first is not None and first["ref_op"] == "Conv2d"
    assert first["candidate"] == target.output[0]
