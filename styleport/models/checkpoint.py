"""Checkpoints: a folder with ``config.json`` (schema, preset, model config, training info) and
``model.safetensors``. Loading never unpickles. Written to a temp folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from styleport.errors import BadInput
from styleport.models.presets import build

SCHEMA = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, config: dict, path: str | os.PathLike, extra: dict | None = None,
                    extra_tensors: dict | None = None, overwrite: bool = True) -> Path:
    """Write ``path/`` atomically. ``extra`` goes into config.json; ``extra_tensors`` into
    ``state.safetensors`` (optimizer / RNG state for resuming)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BadInput(f"checkpoint exists: {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"output folder does not exist: {parent}")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    doc = {"schema": SCHEMA, "format": "styleport-checkpoint", "model": dict(config)}
    if extra:
        doc.update(extra)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
        _umask_mode(tmp)  # mkdtemp makes 0700; a finished folder follows the umask like any other
    except OSError as e:
        raise BadInput(f"cannot write in {parent}: {e.strerror or e}") from None
    try:
        save_file(state, str(tmp / WEIGHTS))
        if extra_tensors:
            save_file({k: v.contiguous() for k, v in extra_tensors.items()}, str(tmp / "state.safetensors"))
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInput(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    return path


def read_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise BadInput(f"a checkpoint is a folder with {CONFIG} and {WEIGHTS}; got a file: {path}")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise BadInput(f"checkpoint {path} has no {CONFIG}")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{cfg_path} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise BadInput(f"{cfg_path} is not a styleport checkpoint config")
    if doc.get("schema") != SCHEMA:
        raise BadInput(f"{cfg_path}: unknown checkpoint schema {doc.get('schema')!r} (this styleport reads {SCHEMA})")
    return doc


def load_checkpoint(path: str | os.PathLike, eval_mode: bool = True) -> tuple[torch.nn.Module, dict]:
    """Return (model, config document). Weights are checked for shape, completeness and finiteness."""
    path = Path(path)
    doc = read_config(path)
    model = build(doc["model"])
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise BadInput(f"checkpoint {path} has no {WEIGHTS}")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise BadInput(f"cannot read {wpath}: {str(e).splitlines()[0][:200]}") from None
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise BadInput(f"{wpath} does not fit preset {doc['model'].get('preset')} ({what})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise BadInput(f"{wpath}: {k} has shape {tuple(v.shape)}, expected {tuple(want[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise BadInput(f"{wpath}: weight {k} holds NaN or Inf")
    model.load_state_dict(state)
    if eval_mode:
        model.eval()
    return model, doc


def _umask_mode(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)
