"""The demo's int8 floor (export_bundle ``calibration["int8_floor"]``): a calibrated plain int8 that
scores below the floor on the held-out pairs is quantized again dynamic-range, and the better of the
two is the plain file; manifest, hashes and quality.json say which and why."""

from __future__ import annotations

import json

import pytest
import torch

from styleport.export.bundle import export_bundle
from styleport.manifest import sha256_path
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("floor")
    torch.manual_seed(0)
    cfg = default_config("magenta-mobile", width=0.25)
    save_checkpoint(build(cfg).eval(), cfg, tmp / "ck")
    return tmp / "ck"


def _export(ckpt, out, floor):
    cal = {"synthetic": True, "count": 4, "variants": False, "int8_floor": floor}
    return export_bundle(ckpt, out, ("onnx", "tflite"), ("int8",), size=64, style_size=64, progress=False,
                         calibration=cal)


def test_a_plain_int8_below_the_floor_is_redone_and_the_better_one_kept(ckpt, tmp_path):
    man = _export(ckpt, tmp_path / "b", 99.0)   # nothing reaches 99 dB: every calibrated kind is retried
    q = json.loads((tmp_path / "b" / "quality.json").read_text())
    rows = {r["path"]: r for r in q["results"]}
    tried = {(r["model"], r["format"]): r for r in q["int8_floor"]}
    # the calibrated plain kinds: ONNX qlinear (both networks), TFLite full-integer predictor
    assert set(tried) == {("transformer", "onnx"), ("predictor", "onnx"), ("predictor", "tflite")}
    for a in man["artifacts"]:
        rec = a["details"].get("int8_floor")
        if (a["model"], a["format"]) not in tried:
            assert rec is None    # the TFLite transformer is dynamic-range already
            continue
        assert rec["first"]["kind"] in ("qlinear", "full") and rec["fallback"]["kind"] == "dynamic"
        better = max((rec["first"], rec["fallback"]), key=lambda r: r["psnr_min_db"])
        assert rec["kept"] == better["kind"] == a["details"]["int8_kind"]
        assert rows[a["path"]]["psnr_min_db"] == better["psnr_min_db"]
        assert sha256_path(tmp_path / "b" / a["path"]) == a["sha256"]
    assert not list((tmp_path / "b").rglob(".floor-*"))   # no trial file left behind


def test_a_plain_int8_above_the_floor_is_left_alone(ckpt, tmp_path):
    man = _export(ckpt, tmp_path / "b", 0.0)
    q = json.loads((tmp_path / "b" / "quality.json").read_text())
    assert "int8_floor" not in q
    kinds = {(a["model"], a["format"]): a["details"]["int8_kind"] for a in man["artifacts"]}
    assert kinds[("transformer", "onnx")] == "qlinear" and kinds[("predictor", "tflite")] == "full"
    assert all("int8_floor" not in a["details"] for a in man["artifacts"])
