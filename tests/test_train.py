"""Training: every preset learns, resume is exact, DDP matches one process, bad input is handled."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, assert_one_line_error, run_cli
from styleport.cli import main
from styleport.models.checkpoint import load_checkpoint
from styleport.samples import STYLES, content_scene, style_pattern


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: as fast as two on an idle 2-core box for these tiny nets, and far faster
    when other processes compete for the cores (OpenMP spin-waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("traindata")
    (d / "content" / "sub").mkdir(parents=True)
    for i in range(3):
        content_scene(72, seed=i).save(d / "content" / f"c{i}.png")
    content_scene(80, seed=5).resize((96, 72)).save(d / "content" / "sub" / "wide.jpg")  # recursive, jpg
    (d / "style").mkdir()
    for name in STYLES:
        style_pattern(name, 80).save(d / "style" / f"{name}.png")
    return d


def _losses(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def _train(*args):
    return main(["train", "--loss-net", "random", "--no-progress", *map(str, args)])


@pytest.mark.parametrize("preset", ["johnson", "dumoulin", "ghiasi", "magenta-mobile"])
def test_each_preset_lowers_the_loss(tmp_path, data, preset):
    style = data / "style" / "swirl.png" if preset == "johnson" else data / "style"
    log = tmp_path / "log.jsonl"
    rc = _train("--preset", preset, "--width", "0.125", "--content", data / "content", "--style", style,
                "--steps", 30, "--image-size", 64, "--style-size", 80, "--batch-size", 2, "--lr", "2e-3",
                "--out", tmp_path / "ck", "--log-json", log, "--log-every", 1)
    assert rc == 0
    rows = _losses(log)
    assert [r["step"] for r in rows] == list(range(1, 31))
    for r in rows:
        assert {"step", "total", "content", "style", "tv"} <= set(r)
        assert r["total"] == pytest.approx(r["content"] + r["style"] + r["tv"], rel=1e-4)
    first = sum(r["total"] for r in rows[:5]) / 5
    last = sum(r["total"] for r in rows[-5:]) / 5
    assert last < first, (preset, first, last)
    model, doc = load_checkpoint(tmp_path / "ck")
    assert doc["training"]["step"] == 30 and doc["model"]["preset"] == preset
    if preset == "dumoulin":
        assert doc["model"]["num_styles"] == len(STYLES)
    assert (tmp_path / "ck" / "state.safetensors").is_file()


def test_preset_loss_defaults():
    from styleport.training.train import TrainOptions, resolve_loss
    g = resolve_loss(TrainOptions(preset="ghiasi", content=[], style=[], steps=1, out="x"), None)
    assert g.content_layer == "relu3_3" and g.alpha == 1.0 and g.tv_weight == 1e4
    assert g.style_weights == {k: 0.5e-3 for k in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
    j = resolve_loss(TrainOptions(preset="johnson", content=[], style=[], steps=1, out="x"), None)
    assert j.content_layer == "relu2_2" and set(j.style_weights) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3"}
    o = resolve_loss(TrainOptions(preset="johnson", content=[], style=[], steps=1, out="x", content_layer="relu3_3",
                                  style_layers=["relu2_2"], style_layer_weight=2.0, tv_weight=3.0), None)
    assert o.content_layer == "relu3_3" and o.style_weights == {"relu2_2": 2.0} and o.tv_weight == 3.0


def test_resume_is_exact(tmp_path, data):
    common = ["--preset", "dumoulin", "--width", "0.125", "--content", data / "content", "--style", data / "style",
              "--image-size", 32, "--batch-size", 2, "--checkpoint-every", 4]
    assert _train(*common, "--steps", 20, "--out", tmp_path / "straight") == 0
    log = tmp_path / "log.jsonl"
    assert _train(*common, "--steps", 10, "--out", tmp_path / "resumed", "--log-json", log, "--log-every", 5) == 0
    assert load_checkpoint(tmp_path / "resumed")[1]["training"]["step"] == 10
    assert _train(*common, "--steps", 20, "--out", tmp_path / "resumed", "--resume", "--log-json", log,
                  "--log-every", 5) == 0
    for name in ("model.safetensors", "state.safetensors"):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    assert [r["step"] for r in _losses(log)] == [1, 5, 10, 11, 15, 20]
    # resuming with a different data stream is refused
    p = run_cli("train", *map(str, common), "--steps", 30, "--out", tmp_path / "resumed", "--resume",
                "--seed", 7, "--loss-net", "random")
    assert_one_line_error(p, 2, "--seed")


def _env1():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def test_ddp_two_processes_match_one(tmp_path, data):
    """torchrun, 2 CPU ranks (gloo, localhost): identical weights on both ranks, equal to one process on
    the same global batch. The one process splits the batch into the ranks' halves (--grad-accum 2)
    so the float summation order is the same; it runs on one thread like each rank."""
    args = ["train", "--preset", "johnson", "--width", "0.125", "--content", data / "content",
            "--style", data / "style" / "swirl.png", "--image-size", 32, "--batch-size", 4, "--steps", 4,
            "--loss-net", "random", "--no-progress"]
    args = list(map(str, args))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "styleport"]
    p = subprocess.run(torchrun + args + ["--out", str(tmp_path / "ddp"), "--log-json", str(tmp_path / "ddp.jsonl"),
                                          "--log-every", "1"],
                       capture_output=True, text=True, env=_env1(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 processes" in p.stdout
    doc = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert doc["training"]["ddp"] == {"world_size": 2, "max_rank_diff": 0.0, "backend": "gloo"}
    p = subprocess.run([sys.executable, "-m", "styleport", *args, "--out", str(tmp_path / "one"),
                        "--grad-accum", "2", "--log-json", str(tmp_path / "one.jsonl"), "--log-every", "1"],
                       capture_output=True, text=True, env=_env1(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff <= 1e-5, diff
    la, lb = _losses(tmp_path / "ddp.jsonl"), _losses(tmp_path / "one.jsonl")
    assert [r["step"] for r in la] == [1, 2, 3, 4]
    for ra, rb in zip(la, lb):
        assert ra["total"] == pytest.approx(rb["total"], rel=1e-5)


def test_bad_inputs(tmp_path, data, capsys):
    base = ["--preset", "johnson", "--width", "0.125", "--steps", 1, "--image-size", 32, "--batch-size", 1,
            "--style", data / "style" / "swirl.png", "--out", tmp_path / "ck"]
    # missing and empty folders, usage errors: one line, exit 2
    p = run_cli("train", *map(str, base), "--content", tmp_path / "nope", "--loss-net", "random")
    assert_one_line_error(p, 2, "not found")
    (tmp_path / "empty").mkdir()
    assert _train(*base, "--content", tmp_path / "empty") == 2
    assert "no content images" in capsys.readouterr().err
    assert _train(*base, "--content", data / "content", "--style", data / "style" / "waves.png") == 2
    assert "one style" in capsys.readouterr().err
    assert _train(*base[:-2], "--content", data / "content", "--out", tmp_path / "nodir" / "ck") == 2
    assert "does not exist" in capsys.readouterr().err

    # unreadable images: skipped and counted up to 10%, refused beyond
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i in range(9):
        content_scene(40, seed=i).save(mixed / f"c{i}.png")  # 40 px < 48 px crop: resized up, said once
    (mixed / "broken.png").write_text("not an image")
    assert _train(*base, "--content", mixed, "--image-size", 48) == 0
    err = capsys.readouterr().err
    assert "skipped 1 of 10 unreadable content image" in err
    assert err.count("resized up") == 1
    (mixed / "broken2.jpg").write_text("garbage")
    assert _train(*base, "--content", mixed) == 2
    assert "2 of 11 content images are unreadable" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data, capsys):
    args = ["--preset", "johnson", "--width", "0.125", "--content", data / "content",
            "--style", data / "style" / "swirl.png", "--image-size", 32, "--batch-size", 2,
            "--out", tmp_path / "ck", "--checkpoint-every", 1]
    assert _train(*args, "--steps", 2) == 0
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()
    capsys.readouterr()
    # an absurd learning rate drives the weights to overflow: the loss turns NaN/Inf
    rc = _train(*args, "--steps", 12, "--resume", "--lr", "1e30")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "training stopped" in err and "Traceback" not in err
    model, doc = load_checkpoint(tmp_path / "ck")  # still loadable: finite weights only
    step = doc["training"]["step"]
    assert 2 <= step < 12
    if step == 2:
        assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    shutil.rmtree(tmp_path / "ck")
