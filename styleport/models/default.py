"""The embedded default model (styleport/assets/): Google's Magenta arbitrary-style network (TFLite
release, Apache-2.0), imported with ``styleport import --from magenta-tflite`` and packed into the
package so the demo and ``stylize`` work offline. Provenance and fidelity: assets/MODEL_CARD.md,
licence: assets/NOTICE.

Storage (to stay under 4 MB), chosen per tensor, exact first:

- ``int8`` + one float32 scale per output channel (dim 0), when ``q * scale`` gives back every
  float32 value bit for bit. Google's predictor file holds symmetric per-channel int8 weights, so
  its imported weights take this form with no loss;
- ``fp16`` when every value is a float16 number (Google's f16 transfer file: no loss);
- otherwise lossy: weights with >= 4096 elements as int8 with the scale ``max|w| / 127`` per
  output channel, the rest float16 (a trained checkpoint of your own, e.g. a distilled student).
  Tensors that fit neither exact form and are small (Google's int32-quantized biases,
  dequantized to float32) are kept in float32 when ``exact_small`` is on (the default).

``load_default()`` rebuilds a float32 model. ``pack_checkpoint()`` writes the asset from a
checkpoint and reports, per storage kind, how many values it holds and how many differ from the
checkpoint.
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


def _exact_int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(q int8, scale float32 per row) with ``q * scale == v`` bit for bit, or None.

    A per-channel symmetric int8 tensor dequantized to float32 has ``max|w| = fl(127 * s)``; the
    scale ``s`` is that value / 127 or one of its float32 neighbours, so a few candidates per row
    are tried and the first that reproduces the row exactly is kept."""
    flat = v.reshape(v.shape[0], -1)
    amax = flat.abs().amax(dim=1)
    if not bool((amax > 0).all()):
        return None
    base = (amax.double() / 127.0).float()
    q = torch.empty_like(flat, dtype=torch.int8)
    scale = torch.empty_like(amax)
    for r in range(flat.shape[0]):
        row, done = flat[r], False
        cands = [base[r]]
        up = down = base[r]
        for _ in range(2):
            up, down = torch.nextafter(up, up + 1), torch.nextafter(down, down - 1)
            cands += [up, down]
        for s in cands:
            qr = torch.round(row.double() / s.double())
            if qr.abs().max() > 127:
                continue
            if torch.equal(qr.float() * s, row):
                q[r], scale[r], done = qr.to(torch.int8), s, True
                break
        if not done:
            return None
    return q.reshape(v.shape).contiguous(), scale.contiguous()


def pack_state(state: dict, exact_small: bool = True) -> tuple[dict, dict]:
    """(packed tensors, {kind: {"tensors", "values", "inexact_values"}}) for a float state dict."""
    packed, kinds = {}, {}

    def note(kind, v, stored):
        k = kinds.setdefault(kind, {"tensors": 0, "values": 0, "inexact_values": 0})
        k["tensors"] += 1
        k["values"] += v.numel()
        k["inexact_values"] += int((stored != v).sum())

    for name, v in state.items():
        v = v.detach().float().contiguous()
        exact = _exact_int8(v) if v.dim() >= 2 else None
        if exact is not None:
            packed[name + ".q8"], packed[name + ".scale"] = exact
            note("int8 (exact)", v, v)
        elif torch.equal(v.half().float(), v):
            packed[name + ".f16"] = v.half()
            note("fp16 (exact)", v, v)
        elif v.dim() >= 2 and v.numel() >= INT8_MIN_ELEMENTS:
            flat = v.reshape(v.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            packed[name + ".q8"], packed[name + ".scale"] = q.reshape(v.shape).contiguous(), scale.contiguous()
            note("int8 (lossy)", v, (q.float() * scale[:, None]).reshape(v.shape))
        elif exact_small:
            packed[name + ".f32"] = v
            note("fp32", v, v)
        else:
            packed[name + ".f16"] = v.half()
            note("fp16 (lossy)", v, v.half().float())
    return packed, kinds


def unpack_state(packed: dict) -> dict:
    state = {}
    for k, v in packed.items():
        if k.endswith(".q8"):
            base = k[:-3]
            scale = packed[base + ".scale"].float()
            state[base] = (v.float().reshape(v.shape[0], -1) * scale[:, None]).reshape(v.shape)
        elif k.endswith(".f16") or k.endswith(".f32"):
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


def describe(doc: dict) -> str:
    """One line naming the embedded model, for the demo's summary and ``stylize``'s message."""
    src = doc.get("source") or {}
    if src.get("name"):
        return f"{src['name']} ({src.get('author', '?')}, {src.get('license', '?')}), imported by styleport"
    return f"{doc['model'].get('preset', '?')} checkpoint {doc.get('source_checkpoint', '?')}"


def pack_checkpoint(ckpt, dest: Path | None = None, card_info: dict | None = None) -> dict:
    """Write the asset pair from a checkpoint; returns sizes and what the storage kept exactly.

    ``card_info`` (provenance: source, licence, import command) goes into default_model.json."""
    from styleport.models.checkpoint import load_checkpoint, sha256_file
    model, doc = load_checkpoint(ckpt)
    dest = dest or _assets()
    dest.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    packed, kinds = pack_state(state)
    save_file(packed, str(dest / ASSET))
    (dest / ASSET).chmod(0o644)
    back = unpack_state(load_file(str(dest / ASSET)))
    differ = sum(int((back[k] != v.float()).sum()) for k, v in state.items())
    info = {"bytes": (dest / ASSET).stat().st_size, "kinds": kinds,
            "values": sum(v.numel() for v in state.values()), "values_differing_from_checkpoint": differ,
            "max_abs_weight_error": max(float((back[k] - v.float()).abs().max()) for k, v in state.items())}
    meta = {"model": doc["model"], "source_checkpoint": Path(ckpt).name,
            "source_checkpoint_weights_sha256": sha256_file(Path(ckpt) / "model.safetensors"), "storage": info}
    meta.update({k: v for k, v in doc.items() if k in ("imported_from", "distilled_from", "train")})
    if card_info:
        meta.update(card_info)
    (dest / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return info
