"""`styleport embed`: bottlenecks of style images -> PCA / t-SNE plot with thumbnails, JSON coordinates."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, run_cli
from styleport.cli import main
from styleport.models.checkpoint import save_checkpoint
from styleport.models.presets import build, default_config
from styleport.samples import STYLES, content_scene, style_pattern
from styleport.training.embed import pca_2d, tsne_2d


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_arbitrary(tmp_path_factory):
    d = tmp_path_factory.mktemp("embed")
    cfg = default_config("magenta-mobile", width=0.25)
    torch.manual_seed(0)
    save_checkpoint(build(cfg), cfg, d / "ck")
    (d / "styles" / "more").mkdir(parents=True)
    for i, name in enumerate(STYLES):
        style_pattern(name, 64, seed=i).save(d / "styles" / f"{name}.png")
        style_pattern(name, 64, seed=10 + i).save(d / "styles" / "more" / f"{name}_b.jpg")
    content_scene(64).save(d / "scene.png")
    return d


def test_embed_writes_plot_and_json(tmp_path, tiny_arbitrary, capsys):
    d = tiny_arbitrary
    out, js = tmp_path / "plot.png", tmp_path / "points.json"
    rc = main(["embed", "--checkpoint", str(d / "ck"), str(d / "styles"), str(d / "scene.png"),
               "-o", str(out), "--json", str(js), "--size", "64"])
    assert rc == 0
    assert "9 style image" in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert len(doc["points"]) == 9  # one point per style image
    assert {p["path"].split("/")[-1] for p in doc["points"]} >= {"swirl.png", "swirl_b.jpg", "scene.png"}
    for p in doc["points"]:
        assert len(p["pca"]) == 2 and len(p["tsne"]) == 2 and len(p["bottleneck"]) == 100
    assert doc["tsne"]["perplexity"] > 0
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 600


def test_embed_few_points_pca_only_and_errors(tmp_path, tiny_arbitrary, capsys):
    d = tiny_arbitrary
    js = tmp_path / "p.json"
    assert main(["embed", "--checkpoint", str(d / "ck"), str(d / "styles" / "swirl.png"),
                 str(d / "styles" / "waves.png"), "-o", str(tmp_path / "p.png"), "--json", str(js),
                 "--size", "64"]) == 0
    doc = json.loads(js.read_text())
    assert len(doc["points"]) == 2 and doc["tsne"] is None
    assert "t-SNE skipped" in capsys.readouterr().err
    # a one-style checkpoint has no bottleneck
    cfg = default_config("johnson", width=0.125)
    save_checkpoint(build(cfg), cfg, tmp_path / "johnson")
    p = run_cli("embed", "--checkpoint", tmp_path / "johnson", d / "styles", "-o", tmp_path / "x.png")
    assert_one_line_error(p, 2, "arbitrary")
    assert main(["embed", "--checkpoint", str(d / "ck"), str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")]) == 2


def test_pca_and_tsne_separate_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (6, 100)) + 3.0
    b = rng.normal(0, 0.1, (6, 100)) - 3.0
    x = np.concatenate([a, b])
    coords, ratio = pca_2d(x)
    assert ratio[0] > 0.9
    assert np.all(np.sign(coords[:6, 0]) == -np.sign(coords[6:, 0]).mean())
    y, perp = tsne_2d(x, seed=0)
    assert y.shape == (12, 2) and perp > 0
    d = np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(1)
    assert all((i < 6) == (j < 6) for i, j in enumerate(nearest))
