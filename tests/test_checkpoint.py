import json

import pytest
import torch

from styleport.errors import BadInput
from styleport.models.checkpoint import load_checkpoint, save_checkpoint
from styleport.models.presets import build, default_config


@pytest.mark.parametrize("preset", ["johnson", "dumoulin", "ghiasi", "magenta-mobile"])
def test_round_trip_bit_exact(tmp_path, preset):
    cfg = default_config(preset, width=0.125, num_styles=2 if preset == "dumoulin" else None)
    torch.manual_seed(1)
    model = build(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_checkpoint(model, cfg, tmp_path / "ck")
    loaded, doc = load_checkpoint(tmp_path / "ck")
    assert doc["model"] == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_errors(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_checkpoint(tmp_path / "nope")
    cfg = default_config("johnson", width=0.125)
    model = build(cfg)
    save_checkpoint(model, cfg, tmp_path / "ck")
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    doc["schema"] = 99
    (tmp_path / "ck" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="schema"):
        load_checkpoint(tmp_path / "ck")
    doc["schema"] = 1
    doc["model"]["preset"] = "picasso"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="unknown preset"):
        load_checkpoint(tmp_path / "ck")


def test_nan_weights_refused(tmp_path):
    cfg = default_config("johnson", width=0.125)
    model = build(cfg)
    with torch.no_grad():
        model.net.conv1.conv2d.weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(model, cfg, tmp_path / "ck")
    with pytest.raises(BadInput, match="NaN"):
        load_checkpoint(tmp_path / "ck")
