"""JSON writer: atomic, strict JSON (NaN/Inf become null), sorted-free insertion order."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from styleport.errors import BadInput

BENCH_SCHEMA = 1
BENCH_KIND = "styleport-bench"
PARITY_KIND = "styleport-parity"


def clean(obj):
    """Drop private keys (leading underscore), turn numpy scalars into Python and NaN/Inf into None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def dumps(doc) -> str:
    return json.dumps(clean(doc), indent=2, allow_nan=False) + "\n"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    if not path.parent.exists():
        raise BadInput(f"output folder does not exist: {path.parent}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    return path


def write_json(doc, path) -> Path:
    return write_text_atomic(path, dumps(doc))
