"""The bench JSON contract (shared/DESIGN.md) as a small JSON-Schema-like description, and a
hand-written checker (jsonschema is not a dependency).

Types: "str", "int", "num" (int or float, not bool), "bool", "null", "list", "dict"; a tuple means
any of them; a dict value means a nested object with those required keys.
"""

from __future__ import annotations

NUM = ("int", "num")
LATENCY = {k: NUM for k in ("p50", "p90", "p99", "mean", "min")}
PARITY = {"max_abs": NUM + ("null",), "mean_abs": NUM + ("null",), "psnr_db": NUM + ("null",),
          "ssim": NUM + ("null",), "pass": ("bool", "null")}
RESULT = {
    "model": "str", "format": "str", "precision": "str", "runtime": "str",
    "input_size": ("list", "null"), "threads": ("int", "null"),
    "latency_ms": (LATENCY, "null"), "load_ms": NUM + ("null",), "first_run_ms": NUM + ("null",),
    "peak_rss_mb": NUM + ("null",), "file_bytes": "int", "parity": (PARITY, "null"),
    "status": "str",
}
BENCH = {"schema": "int", "kind": "str",
         "machine": {"cpu": "str", "cores": ("int", "null"), "os": "str", "python": "str", "versions": "dict"},
         "results": "list"}


def _is(value, t) -> bool:
    if isinstance(t, dict):
        return isinstance(value, dict)
    return {"str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "num": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool), "null": value is None,
            "list": isinstance(value, list), "dict": isinstance(value, dict)}[t]


def check(value, spec, where="$") -> list[str]:
    """Problems of ``value`` against ``spec`` (a dict of required keys -> types), as strings."""
    errors = []
    if not isinstance(value, dict):
        return [f"{where}: expected an object"]
    for key, t in spec.items():
        if key not in value:
            errors.append(f"{where}.{key}: missing")
            continue
        v = value[key]
        options = t if isinstance(t, tuple) else (t,)
        if not any(_is(v, o) for o in options):
            errors.append(f"{where}.{key}: {type(v).__name__} not {options}")
            continue
        if isinstance(v, dict):
            nested = next((o for o in options if isinstance(o, dict)), None)
            if nested:
                errors += check(v, nested, f"{where}.{key}")
    return errors


def validate_bench(doc) -> list[str]:
    errors = check(doc, BENCH)
    for i, r in enumerate(doc.get("results") or [] if isinstance(doc, dict) else []):
        errors += check(r, RESULT, f"$.results[{i}]")
        if isinstance(r, dict) and r.get("status") == "ok" and r.get("latency_ms") is None:
            errors.append(f"$.results[{i}].latency_ms: null for a run that succeeded")
    return errors
