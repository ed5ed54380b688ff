"""``export --target-psnr DB`` (issue 13): the fastest int8 artefact that reaches DB on every held-out
pair becomes the plain int8; the table and the choice are in quality.json/.md and the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from styleport.manifest import sha256_path
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config


def _ckpt(tmp: Path) -> Path:
    torch.manual_seed(0)
    cfg = default_config("magenta-mobile", width=0.25)
    save_checkpoint(build(cfg).eval(), cfg, tmp / "ck")
    return tmp / "ck"


def _export(ckpt, out, *extra):
    return subprocess.run([sys.executable, "-m", "styleport", "export", str(ckpt), "--out", str(out),
                           "--formats", "onnx,tflite,coreml", "--precisions", "int8", "--size", "64",
                           "--style-size", "64", "--calib-synthetic", "--calib-count", "4", "--no-progress",
                           *extra], capture_output=True, text=True)


def _int8(man, model, fmt):
    return [a for a in man["artifacts"] if (a["model"], a["format"], a["precision"]) == (model, fmt, "int8")]


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("choice")
    ck = _ckpt(tmp)
    p = _export(ck, tmp / "b", "--target-psnr", "12")
    assert p.returncode == 0, p.stderr
    return tmp / "b", json.loads((tmp / "b" / "manifest.json").read_text()), p


def test_fastest_candidate_that_meets_the_target_is_the_plain_int8(chosen):
    root, man, _ = chosen
    q = json.loads((root / "quality.json").read_text())
    recs = {(r["model"], r["format"]): r for r in q["int8_choice"]}
    assert {("transformer", "onnx"), ("transformer", "tflite"), ("predictor", "onnx"),
            ("predictor", "tflite"), ("transformer", "coreml")} <= set(recs)
    for (net, fmt), rec in recs.items():
        arts = _int8(man, net, fmt)
        plain = [a for a in arts if not a.get("variant")]
        assert len(plain) == 1
        assert len(rec["candidates"]) == len(arts)   # every int8 file of the group was a candidate
        if fmt == "coreml":
            assert not rec["changed"] and "macOS" in rec["reason"]
            continue
        meets = [c for c in rec["candidates"] if c["meets"] and c["ms"] is not None]
        assert meets, rec
        best = min(meets, key=lambda c: c["ms"])
        assert rec["chosen"] == best["variant"]
        assert all(c["psnr_min_db"] >= 12 for c in meets)
        # the plain entry is the chosen file: its kind, its PSNR, its hash
        assert plain[0]["details"]["int8_kind"] == rec["chosen"]
        assert plain[0]["details"]["int8_choice"]["chosen"] == rec["chosen"]
        row = next(r for r in q["results"] if r["path"] == plain[0]["path"])
        assert row["psnr_min_db"] == best["psnr_min_db"]
        for a in arts:
            assert sha256_path(root / a["path"]) == a["sha256"], a["path"]
    assert "## int8 choice (--target-psnr 12 dB)" in (root / "quality.md").read_text()


def test_a_moved_file_says_what_it_now_is(chosen):
    import onnx
    root, man, _ = chosen
    for a in _int8(man, "transformer", "onnx") + _int8(man, "predictor", "onnx"):
        props = {p.key: p.value for p in onnx.load(str(root / a["path"]), load_external_data=False).metadata_props}
        assert props.get("styleport.variant") == a.get("variant"), a["path"]


def test_unreachable_target_keeps_the_plain_int8_and_says_so(tmp_path):
    ck = _ckpt(tmp_path)
    p = _export(ck, tmp_path / "b", "--formats", "onnx", "--target-psnr", "150")
    assert p.returncode == 0, p.stderr
    assert "no candidate reaches --target-psnr 150" in p.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    plain = next(a for a in _int8(man, "transformer", "onnx") if not a.get("variant"))
    assert plain["details"]["int8_kind"] == "qlinear"     # the calibrated default stays
    assert plain["details"]["int8_choice"]["changed"] is False


def test_no_variants_keeps_only_the_chosen_file(tmp_path):
    ck = _ckpt(tmp_path)
    p = _export(ck, tmp_path / "b", "--formats", "onnx", "--target-psnr", "12", "--no-variants")
    assert p.returncode == 0, p.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    for net in ("transformer", "predictor"):
        arts = _int8(man, net, "onnx")
        assert len(arts) == 1 and not arts[0].get("variant")
    files = sorted(x.name for x in (tmp_path / "b" / "onnx").iterdir())
    assert files == ["predictor.int8.onnx", "transformer.int8.onnx"]
    q = json.loads((tmp_path / "b" / "quality.json").read_text())
    assert {r["path"] for r in q["results"]} == {a["path"] for a in man["artifacts"]}


def test_swap_logic_with_given_latencies(tmp_path, monkeypatch):
    """choose() on fixed latencies: the faster variant that meets wins over a faster one that does
    not; the demoted plain gets its kind as variant name and its file moves with it."""
    from styleport.quantization import choose as CH
    for name in ("transformer.int8.onnx", "transformer.int8-static.onnx", "transformer.int8-dynamic.onnx"):
        (tmp_path / "onnx").mkdir(exist_ok=True)
        (tmp_path / "onnx" / name).write_bytes(name.encode())
    arts = [{"model": "transformer", "format": "onnx", "precision": "int8", "path": f"onnx/{n}", "bytes": 1,
             **({"variant": v} if v else {}), "details": {"int8_kind": k}, "inputs": [], "outputs": []}
            for n, v, k in (("transformer.int8.onnx", None, "qlinear"),
                            ("transformer.int8-static.onnx", "static", "static"),
                            ("transformer.int8-dynamic.onnx", "dynamic", "dynamic"))]
    q = {"results": [{"path": a["path"], "variant": a.get("variant"), "psnr_db": p + 1, "psnr_min_db": p}
                     for a, p in zip(arts, (25.0, 33.0, 40.0))]}
    monkeypatch.setattr(CH, "time_candidates", lambda root, entries, rounds=7: [10.0, 20.0, 30.0])
    [rec] = CH.choose(tmp_path, arts, q, 30.0)
    assert rec["chosen"] == "static" and rec["changed"]
    assert set(rec["pareto"]) == {"qlinear", "static", "dynamic"}   # each faster one is worse
    assert (tmp_path / "onnx" / "transformer.int8.onnx").read_bytes() == b"transformer.int8-static.onnx"
    assert (tmp_path / "onnx" / "transformer.int8-qlinear.onnx").read_bytes() == b"transformer.int8.onnx"
    assert not (tmp_path / "onnx" / "transformer.int8-static.onnx").exists()
    assert arts[0]["path"] == "onnx/transformer.int8.onnx" and arts[0]["details"]["int8_kind"] == "static"
    assert arts[1]["variant"] == "qlinear" and arts[1]["path"] == "onnx/transformer.int8-qlinear.onnx"
    rows = {r["path"]: r for r in q["results"]}
    assert rows["onnx/transformer.int8.onnx"]["psnr_min_db"] == 33.0
    assert rows["onnx/transformer.int8-qlinear.onnx"]["variant"] == "qlinear"
    assert np.isclose(rows["onnx/transformer.int8-qlinear.onnx"]["psnr_min_db"], 25.0)


def test_target_psnr_needs_int8_and_a_sane_value(tmp_path):
    ck = _ckpt(tmp_path)
    for extra, word in ((["--precisions", "fp32", "--target-psnr", "30"], "int8"),
                        (["--target-psnr", "-3"], "between")):
        p = subprocess.run([sys.executable, "-m", "styleport", "export", str(ck), "--out", str(tmp_path / "x"),
                            "--formats", "onnx", "--precisions", "int8", "--size", "64", *extra],
                           capture_output=True, text=True)
        assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr
        assert not (tmp_path / "x").exists()
