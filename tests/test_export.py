"""Export: every fp32 artefact matches PyTorch on its runtime at two sizes; bundle contract; inspect."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, assert_one_xnnpack_partition, run_cli
from styleport.export.bundle import export_bundle
from styleport.images import load_tensor
from styleport.manifest import load as load_manifest
from styleport.models.checkpoint import load_checkpoint, save_checkpoint
from styleport.models.presets import build, default_config

PRESETS = ["johnson", "dumoulin", "ghiasi", "magenta-mobile"]


def _ckpt(tmp_path, preset, width):
    cfg = default_config(preset, width=width, num_styles=3 if preset == "dumoulin" else None)
    torch.manual_seed(7)
    model = build(cfg)
    with torch.no_grad():  # move away from init so norms/gammas are non-trivial
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_checkpoint(model, cfg, tmp_path / f"ck-{preset}")


def _ort(path, feeds):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _litert(path, feeds):
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner()
    return next(iter(runner(**feeds).values()))


def _reference(model, network, content, extra):
    with torch.no_grad():
        if network == "predictor":
            return model.predictor(extra).numpy()
        if model.kind == "arbitrary":
            return model.transformer(content, extra).numpy()
        if model.kind == "multi":
            return model(content, extra).numpy()
        return model(content).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_fp32_artefacts_match_pytorch_at_two_sizes(tmp_path, preset, sample_images):
    width = 0.25 if preset != "ghiasi" else 0.125
    ck = _ckpt(tmp_path, preset, width)
    model, _ = load_checkpoint(ck)
    style_size = 96 if preset == "ghiasi" else 64
    for i, size in enumerate([(64, 64), (48, 80)]):
        out = tmp_path / f"b{size[0]}x{size[1]}"
        # CoreML cannot run here (see test_coreml_mil for its numbers): convert it once; the predictor
        # depends on style_size only: the second size exports the transformer alone (networks=)
        formats = ["onnx", "tflite", "coreml"] if i == 0 else ["onnx", "tflite"]
        m = export_bundle(ck, out, formats, ["fp32"], size=size, style_size=style_size, progress=False,
                          networks=None if i == 0 else ["transformer"])
        assert {a["model"] for a in m["artifacts"]} == ({"predictor", "transformer"}
                                                        if model.kind == "arbitrary" and i == 0 else {"transformer"})
        content = torch.nn.functional.interpolate(load_tensor(sample_images / "content.png"), size=size,
                                                  mode="bilinear", antialias=True, align_corners=False)
        style = load_tensor(sample_images / "swirl.png", style_size, crop=True)
        bottleneck = model.predictor(style).detach() if model.kind == "arbitrary" else None
        weights = torch.tensor([[0.2, 0.5, 0.3]]) if model.kind == "multi" else None
        for a in m["artifacts"]:
            path = out / a["path"]
            assert path.exists() and a["bytes"] > 0
            if a["format"] == "coreml":
                continue  # prediction needs macOS; the coreml-mil interpreter checks numbers
            nhwc = a["format"] == "tflite"
            if a["model"] == "predictor":
                feeds = {"style_image": style.numpy()}
                ref = _reference(model, "predictor", None, style)
            else:
                extra = bottleneck if bottleneck is not None else weights
                feeds = {"content_image": content.numpy()}
                if bottleneck is not None:
                    feeds["style_bottleneck"] = bottleneck.numpy()
                if weights is not None:
                    feeds["style_weights"] = weights.numpy()
                ref = _reference(model, "transformer", content, extra)
            if nhwc:
                feeds = {k: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for k, v in feeds.items()}
                got = _litert(path, feeds)
                got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got
                tol = 1e-3
                if a["model"] == "transformer":
                    assert_one_xnnpack_partition(path, a["details"], preset)
            else:
                got = _ort(path, feeds)
                tol = 1e-4
            assert got.shape == ref.shape, (a["path"], got.shape, ref.shape)
            if a["model"] == "transformer":
                assert ref.std() > 1e-3  # non-trivial output
            err = float(np.abs(got - ref).max())
            assert err <= tol, (preset, size, a["path"], err)


@pytest.fixture(scope="module")
def mm_bundle(tmp_path_factory):
    """A tiny magenta-mobile bundle in all three formats (ONNX and CoreML with free H, W)."""
    tmp = tmp_path_factory.mktemp("mm")
    ck = _ckpt(tmp, "magenta-mobile", 0.25)
    out = tmp / "bundle"
    export_bundle(ck, out, ["onnx", "tflite", "coreml"], ["fp32"], size=64, style_size=64, dynamic=True,
                  progress=False)
    return ck, out


@pytest.mark.slow
def test_bundle_manifest_contract_and_dynamic_onnx(mm_bundle):
    ck, out = mm_bundle
    m = load_manifest(out)  # validates schema, paths, sizes and sha256
    assert m["schema"] == 1 and m["source"]["preset"] == "magenta-mobile"
    assert len(m["source"]["sha256"]) == 64
    assert m["tools"]["torch"].startswith("2.13.0") and m["tools"]["onnx"]
    assert "content_image" in m["preprocessing"]
    names = {(a["model"], a["format"]) for a in m["artifacts"]}
    assert names == {(n, f) for n in ("predictor", "transformer") for f in ("onnx", "tflite", "coreml")}
    for a in m["artifacts"]:
        assert not os.path.isabs(a["path"]) and ".." not in a["path"]
        assert {"name", "shape", "dtype", "layout", "range"} <= set(a["inputs"][0])
    onnx_t = next(a for a in m["artifacts"] if a["model"] == "transformer" and a["format"] == "onnx")
    assert onnx_t["inputs"][0]["shape"] == [1, 3, "H", "W"]
    assert onnx_t["details"]["nodes_before_simplify"] >= onnx_t["details"]["nodes"] > 0
    coreml_t = next(a for a in m["artifacts"] if a["model"] == "transformer" and a["format"] == "coreml")
    assert coreml_t["details"]["deployment_target"] == "iOS16" and coreml_t["details"]["flexible_hw"]
    # free H and W really work in ONNX Runtime
    model, _ = load_checkpoint(ck)
    x, b = torch.rand(1, 3, 52, 76), torch.randn(1, 100, 1, 1)
    got = _ort(out / onnx_t["path"], {"content_image": x.numpy(), "style_bottleneck": b.numpy()})
    np.testing.assert_allclose(got, model.transformer(x, b).detach().numpy(), atol=1e-4, rtol=0)


def test_export_refuses_existing_bundle_without_force_and_keeps_it_on_failure(tmp_path):
    ck = _ckpt(tmp_path, "johnson", 0.125)
    out = tmp_path / "bundle"
    p = run_cli("export", ck, "--out", out, "--formats", "onnx", "--size", "32", "--no-progress")
    assert p.returncode == 0, p.stderr
    before = (out / "manifest.json").read_text()
    p = run_cli("export", ck, "--out", out, "--formats", "onnx", "--size", "32")
    assert_one_line_error(p, 2, "--force")
    # a failing conversion (opset 16 is below what we support -> usage error) leaves the bundle intact
    p = run_cli("export", ck, "--out", out, "--formats", "onnx", "--size", "32", "--opset", "16", "--force")
    assert_one_line_error(p, 2, "opset")
    assert (out / "manifest.json").read_text() == before
    assert not list(tmp_path.glob(".bundle.tmp-*"))


def test_converter_failure_exit_3_with_log_and_old_bundle_intact(tmp_path, monkeypatch):
    ck = _ckpt(tmp_path, "johnson", 0.125)
    out = tmp_path / "bundle"
    export_bundle(ck, out, ["onnx"], ["fp32"], size=32, progress=False)
    before = (out / "manifest.json").read_text()
    import styleport.export.tflite_export as tfl

    def boom(*a, **k):
        raise RuntimeError("converter exploded\nsecond line")
    monkeypatch.setattr(tfl, "export_tflite", boom)
    from styleport.errors import ConversionError
    with pytest.raises(ConversionError) as e:
        export_bundle(ck, out, ["onnx", "tflite"], ["fp32"], size=32, force=True, progress=False)
    msg = str(e.value)
    assert e.value.exit_code == 3 and "converter exploded" in msg and "\n" not in msg and "log:" in msg
    assert (out / "manifest.json").read_text() == before
    assert not list(tmp_path.glob(".bundle.tmp-*"))


def test_export_bad_arguments_exit_2(tmp_path):
    ck = _ckpt(tmp_path, "johnson", 0.125)
    assert_one_line_error(run_cli("export", ck, "--out", tmp_path / "b", "--formats", "onnx,pdf"), 2, "unknown format")
    assert_one_line_error(run_cli("export", ck, "--out", tmp_path / "b", "--precisions", "int4"), 2,
                          "unknown precision")
    assert_one_line_error(run_cli("export", tmp_path / "nope", "--out", tmp_path / "b"), 2, "not found")
    assert_one_line_error(run_cli("export", ck, "--out", tmp_path / "missing" / "b"), 2, "does not exist")
    assert_one_line_error(run_cli("export", ck, "--out", tmp_path / "b", "--size", "30"), 2, "multiple of 4")
    from styleport.errors import BadInput
    for bad in (["predictor"], []):   # johnson has no predictor; an empty choice writes nothing
        with pytest.raises(BadInput, match="networks must be some of transformer"):
            export_bundle(ck, tmp_path / "b", ["onnx"], ["fp32"], size=32, progress=False, networks=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck-johnson"]   # refused before any file


def test_stale_temp_folders_are_cleaned(tmp_path):
    ck = _ckpt(tmp_path, "johnson", 0.125)
    stale = tmp_path / ".bundle.tmp-999999.abc"  # a pid that does not exist
    stale.mkdir()
    (stale / "junk.onnx").write_bytes(b"x")
    export_bundle(ck, tmp_path / "bundle", ["onnx"], ["fp32"], size=32, progress=False)
    assert not stale.exists()


def _phases_extra(model, size):
    """Weights the TFLite "phases" convs add: r*co*ci*kh*(kw+r-1) stored instead of co*ci*kh*kw."""
    from styleport.export.wrappers import export_module
    extra = 0
    for m in export_module(model, "transformer", "tflite").modules():
        if getattr(m, "form", None) == "phases":
            r = m._phases(size)  # both ends run at the full image width
            co, ci, kh, kw = m.conv2d.weight.shape
            extra += r * co * ci * kh * (kw + r - 1) - co * ci * kh * kw
            extra += 0 if m.conv2d.bias is None else (r - 1) * co
    return extra


@pytest.mark.slow
def test_inspect_json_on_our_files(mm_bundle):
    ck, out = mm_bundle
    model, _ = load_checkpoint(ck)
    n_transformer = sum(p.numel() for p in model.transformer.parameters())
    files = [out / fmt / f"transformer.fp32.{ext}" for fmt, ext in
             (("onnx", "onnx"), ("tflite", "tflite"), ("coreml", "mlpackage"))]
    p = run_cli("inspect", *files, "--json")
    assert p.returncode == 0, p.stderr
    for fmt, info in zip(("onnx", "tflite", "coreml"), json.loads(p.stdout)):
        assert {"inputs", "outputs", "op_histogram", "params", "file_bytes", "transpose_count"} <= set(info)
        assert info["transpose_count"] == 0, (fmt, info["op_histogram"])
        # every real weight is counted (converters may add zero biases / small constants); in TFLite
        # the first and last conv hold their kernel at r column offsets (layers.conv_phases_nhwc)
        n = n_transformer + (_phases_extra(model, 64) if fmt == "tflite" else 0)
        assert n <= info["params"] <= n * 1.01 + 200, (fmt, info["params"])
        assert [i["name"] for i in info["inputs"]][-1].endswith("style_bottleneck")


def test_inspect_googles_files_and_transpose_budget(magenta_dir, tmp_path):
    p = run_cli("inspect", magenta_dir / "style_transfer_f16_384.tflite", "--json")
    assert p.returncode == 0, p.stderr
    google = json.loads(p.stdout)
    assert google["transpose_count"] == 0 and google["op_histogram"]["CONV_2D"] > 0
    assert google["inputs"][0]["shape"] == [1, 384, 384, 3]
    p = run_cli("inspect", magenta_dir / "style_predict_quantized_256.tflite", "--json")
    pred = json.loads(p.stdout)
    assert pred["params"] == 2_334_916  # = our magenta-mobile predictor's parameter count
    assert pred["weight_dtypes"].get("int8", 0) > 2_000_000
    # our full-width transformer has no more Transpose ops than Google's
    ck = _ckpt(tmp_path, "magenta-mobile", 1.0)
    export_bundle(ck, tmp_path / "b", ["tflite"], ["fp32"], size=128, style_size=128, progress=False)
    p = run_cli("inspect", tmp_path / "b" / "tflite" / "transformer.fp32.tflite", "--json")
    ours = json.loads(p.stdout)
    assert ours["transpose_count"] <= google["transpose_count"]
    model, _ = load_checkpoint(ck)
    assert sum(p.numel() for p in model.transformer.parameters()) == 177_718


def test_inspect_bad_files_exit_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    assert_one_line_error(run_cli("inspect", bad), 2, "not a valid ONNX")
    t = tmp_path / "bad.tflite"
    t.write_bytes(b"hello world, not a flatbuffer")
    assert_one_line_error(run_cli("inspect", t), 2, "TFLite")
    z = tmp_path / "zero.tflite"
    z.write_bytes(b"")
    assert_one_line_error(run_cli("inspect", z), 2, "empty")
    assert_one_line_error(run_cli("inspect", tmp_path / "model.pb"), 2)


# ---- the export-time fp32 check is a gate (issue 15) ----------------------------------------------

def _break_onnx(monkeypatch, delta=0.05):
    """A deliberately broken conversion: the ONNX exporter writes the file, then the last conv's bias
    is shifted by ``delta``, as a converter bug would; ONNX Runtime then runs the broken file."""
    import onnx
    from onnx import numpy_helper

    import styleport.export.onnx_export as OE
    real = OE.export

    def broken(module, sample, inputs, outputs, path, opts):
        details = real(module, sample, inputs, outputs, path, opts)
        m = onnx.load(str(path))
        last = [n for n in m.graph.node if n.op_type == "Conv"][-1]   # no instance norm after it to undo a shift
        init = next(t for t in m.graph.initializer if t.name == last.input[2])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + delta, init.name))
        onnx.save(m, str(path))
        return details
    monkeypatch.setattr(OE, "export", broken)


def test_a_miscompile_fails_the_export_and_keeps_the_old_bundle(tmp_path, monkeypatch, capsys):
    import json

    from styleport.cli import main
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    cfg = default_config("johnson", width=0.125)
    ck = save_checkpoint(build(cfg), cfg, tmp_path / "ck")
    args = ["export", str(ck), "--out", str(tmp_path / "b"), "--formats", "onnx", "--size", "32", "--no-progress"]
    assert main(args) == 0
    good = (tmp_path / "b" / "manifest.json").read_bytes()
    assert json.loads(good)["artifacts"][0]["details"]["check"]["passed"] is True
    _break_onnx(monkeypatch)
    capsys.readouterr()
    assert main(args + ["--force"]) == 3
    err = capsys.readouterr().err
    assert "transformer onnx fp32 differs from PyTorch beyond the fp32 tolerance" in err and "max_abs" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "b" / "manifest.json").read_bytes() == good          # the old bundle is intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.tmp")]
    # --tolerances can widen the gate; --allow-drift writes it anyway and records the drift
    (tmp_path / "wide.toml").write_text('["transformer/onnx/fp32"]\nmax_abs = 1.0\n')
    assert main(args + ["--force", "--tolerances", str(tmp_path / "wide.toml")]) == 0
    assert main(args + ["--force", "--allow-drift"]) == 0
    check = json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"][0]["details"]["check"]
    assert check["passed"] is False and check["drift"] and check["max_abs_vs_torch"] > 1e-3
    assert "written because of --allow-drift" in capsys.readouterr().err
    # a mistyped selector is exit 2 before anything is converted
    (tmp_path / "typo.toml").write_text('["transformr/onnx/fp32"]\nmax_abs = 0.0\n')
    assert main(args + ["--force", "--tolerances", str(tmp_path / "typo.toml")]) == 2
    assert "transformr" in capsys.readouterr().err


def test_manifest_timings_add_up_to_the_export_wall_time(tmp_path, capsys):
    """export.timings (export/timing.py): exclusive per-step rows that add up to within 10% of the
    export's wall time, labelled by artefact, plus the one-line summary on stderr."""
    import time
    ck = _ckpt(tmp_path, "johnson", 0.125)
    t0 = time.perf_counter()
    m = export_bundle(ck, tmp_path / "b", ["onnx", "tflite"], ["fp32", "int8"], size=32, progress=False)
    outer = time.perf_counter() - t0
    t = m["export"]["timings"]
    total = sum(r["seconds"] for r in t["rows"])
    assert abs(total - t["wall_s"]) <= 0.10 * t["wall_s"], (total, t["wall_s"])
    assert t["wall_s"] <= outer + 0.005 and t["wall_s"] >= 0.9 * outer, (t["wall_s"], outer)  # wall_s is rounded to 0.01
    assert abs(sum(t["by_step"].values()) - total) < 0.05 * total + 0.1
    steps = {r["step"] for r in t["rows"]}
    assert {"prepare", "convert", "simplify", "gate", "quantize", "score", "metadata", "write"} <= steps, steps
    assert all(r["seconds"] >= 0 for r in t["rows"])
    # the fp32 gate and the int8 quantization are rows of their artefact
    assert any(r["step"] == "gate" and r.get("format") == "onnx" and r.get("precision") == "fp32" for r in t["rows"])
    assert any(r["step"] == "quantize" and r.get("format") == "tflite" and r.get("precision") == "int8"
               for r in t["rows"])
    assert set(t["by_format"]) >= {"onnx", "tflite"}
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("styleport: export ")]
    assert len(line) == 1 and "steps cover" in line[0], err[-500:]
    assert (tmp_path / "b" / "manifest.json").is_file()
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["export"]["timings"]["rows"]
