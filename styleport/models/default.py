"""The embedded default model (styleport/assets/): a trained ``magenta-mobile`` network shipped in
the package so the demo and ``stylize`` work offline. How it was trained: assets/MODEL_CARD.md.

Storage (to stay under 4 MB): conv/linear weights with >= 4096 elements as int8 with one float32
scale per output channel (symmetric, like Google's own int8 predictor); everything else float16.
``load_default()`` dequantizes to a float32 model. ``pack_checkpoint()`` writes the asset from a
checkpoint and reports the PSNR the storage costs.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from styleport.errors import BadInput
from styleport.models.presets import build

ASSET = "default_model.safetensors"
CONFIG = "default_model.json"
INT8_MIN_ELEMENTS = 4096


def _assets() -> Path:
    return Path(str(resources.files("styleport") / "assets"))


def available() -> bool:
    return (_assets() / ASSET).is_file() and (_assets() / CONFIG).is_file()


def pack_state(state: dict) -> dict:
    packed = {}
    for k, v in state.items():
        v = v.detach().float()
        if v.dim() >= 2 and v.numel() >= INT8_MIN_ELEMENTS:
            flat = v.reshape(v.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            packed[k + ".q8"] = q.reshape(v.shape).contiguous()
            packed[k + ".scale"] = scale.contiguous()
        else:
            packed[k + ".f16"] = v.half().contiguous()
    return packed


def unpack_state(packed: dict) -> dict:
    state = {}
    for k, v in packed.items():
        if k.endswith(".q8"):
            base = k[:-3]
            scale = packed[base + ".scale"].float()
            state[base] = (v.float().reshape(v.shape[0], -1) * scale[:, None]).reshape(v.shape)
        elif k.endswith(".f16"):
            state[k[:-4]] = v.float()
    return state


def load_default(eval_mode: bool = True):
    """Return (model, doc) of the embedded default, or raise BadInput when the package lacks it."""
    if not available():
        raise BadInput("this styleport installation has no embedded default model (styleport/assets)")
    doc = json.loads((_assets() / CONFIG).read_text())
    model = build(doc["model"])
    model.load_state_dict(unpack_state(load_file(str(_assets() / ASSET))))
    if eval_mode:
        model.eval()
    return model, doc


def pack_checkpoint(ckpt, dest: Path | None = None, card_info: dict | None = None) -> dict:
    """Write the asset pair from a checkpoint; returns sizes and the storage round-trip error."""
    from styleport.models.checkpoint import load_checkpoint
    model, doc = load_checkpoint(ckpt)
    dest = dest or _assets()
    dest.mkdir(parents=True, exist_ok=True)
    packed = pack_state(model.state_dict())
    save_file(packed, str(dest / ASSET))
    (dest / ASSET).chmod(0o644)
    restored = build(doc["model"]).eval()
    restored.load_state_dict(unpack_state(load_file(str(dest / ASSET))))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 256, 256, generator=g)
    s = torch.rand(1, 3, 256, 256, generator=g)
    with torch.no_grad():
        a, b = model(x, s), restored(x, s)
    from styleport import metrics
    info = {"bytes": (dest / ASSET).stat().st_size,
            "storage_psnr_db_vs_fp32_on_noise": round(metrics.psnr_db(a.numpy(), b.numpy()), 2)}
    meta = {"model": doc["model"], "source_checkpoint": Path(ckpt).name, "storage": info}
    meta.update({k: v for k, v in doc.items() if k in ("distilled_from", "train")})
    if card_info:
        meta.update(card_info)
    (dest / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return info
