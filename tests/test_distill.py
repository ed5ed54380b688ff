import json

import torch

from conftest import assert_one_line_error, run_cli
from styleport.models.checkpoint import load_checkpoint, save_checkpoint
from styleport.models.presets import build, default_config


def test_train_with_teacher_lowers_the_distillation_loss(tmp_path, sample_images):
    cfg = default_config("magenta-mobile", width=0.25)
    torch.manual_seed(11)
    teacher = build(cfg)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tck = save_checkpoint(teacher, cfg, tmp_path / "teacher")
    log = tmp_path / "log.jsonl"
    p = run_cli("train", "--preset", "magenta-mobile", "--width", "0.25", "--teacher", tck,
                "--content", sample_images, "--style", sample_images, "--steps", "40", "--image-size", "48",
                "--batch-size", "4", "--out", tmp_path / "student", "--log-json", log, "--no-progress")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[-1]["step"] == 40
    assert rows[-1]["image_l1"] < rows[0]["image_l1"]
    student, doc = load_checkpoint(tmp_path / "student")
    assert doc["distilled_from"]["checkpoint"] == "teacher"
    assert student.kind == "arbitrary"


def test_teacher_errors(tmp_path, sample_images):
    cfg = default_config("johnson", width=0.125)
    jck = save_checkpoint(build(cfg), cfg, tmp_path / "j")
    base = ["--content", sample_images, "--style", sample_images, "--steps", "1", "--out", tmp_path / "s"]
    assert_one_line_error(run_cli("train", "--preset", "magenta-mobile", "--teacher", jck, *base), 2,
                          "arbitrary-style checkpoint")
    assert_one_line_error(run_cli("train", "--preset", "johnson", "--teacher", jck, *base), 2, "arbitrary-style")
