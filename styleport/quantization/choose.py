"""``export --target-psnr DB``: the latency-aware int8 choice (issue 13).

For every network and format of the bundle, each int8 artefact (the plain one and its variants) is
timed on this machine and scored on the held-out images of the quality report; the fastest one
whose *worst* held-out pair reaches DB becomes the plain ``int8`` file, and the one it replaces
becomes a variant named by its kind. The whole table (variant, bytes, ms, PSNR, meets) and the
choice go into ``quality.json`` / ``quality.md`` and each group's manifest entry.

Latency is measured in this process, the candidates of one group interleaved round by round
(warm-up first, then ``rounds`` timed runs each, median), so every candidate sees the same machine
state; the runners are the ones of the quality report (ONNX Runtime and LiteRT at 2 threads,
ExecuTorch's XNNPACK threadpool). CoreML latency cannot be measured off macOS (coreml-mil is a numpy
reference interpreter, not Core ML): CoreML keeps its plain int8 and the table says why.

When no candidate reaches DB, the plain artefact stays and the choice says so (and stderr too):
nothing is promoted that misses the target.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from styleport.export.timing import step

# what the plain int8 is when its details do not say (quantization/__init__.py)
PLAIN_KIND = {"onnx": "dynamic", "tflite": "dynamic", "coreml": "linear", "executorch": "dynamic"}


def _feeds(entry: dict, seed: int = 0) -> dict:
    """Deterministic inputs of the entry's shapes and dtypes (images in their declared range)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for e in entry["inputs"]:
        shape = [int(d) if isinstance(d, int) else 256 for d in e["shape"]]
        lo, hi = (e.get("range") or [0.0, 1.0])[:2]
        if e["name"] == "style_bottleneck":
            x = rng.normal(0.0, 0.5, size=shape)
        elif e["name"] == "style_weights":   # one style
            x = np.zeros(shape)
            x.reshape(-1)[0] = 1.0
        else:
            x = rng.uniform(lo, hi, size=shape)
        dtype = e.get("dtype", "float32")
        feeds[e["name"]] = (np.round(x).astype(np.uint8) if dtype == "uint8" else x.astype(np.float32))
    return feeds


def time_candidates(root: Path, entries: list[dict], rounds: int = 7, warmup: int = 2) -> list[float | None]:
    """Median ms per entry, interleaved; None where the file cannot run here."""
    from styleport.quantization.report import _Run
    runs, feeds = [], []
    for e in entries:
        try:
            runs.append(_Run(e["format"], Path(root) / e["path"]))
            feeds.append(_feeds(e))
        except Exception:  # noqa: BLE001 - a candidate that cannot run is simply not chosen
            runs.append(None)
            feeds.append(None)
    times: list[list[float]] = [[] for _ in entries]
    for r in range(warmup + rounds):
        order = list(range(len(entries)))
        if r % 2:
            order.reverse()  # no candidate always runs first after the others
        for i in order:
            if runs[i] is None:
                continue
            t0 = time.perf_counter()
            try:
                runs[i](feeds[i])
            except Exception:  # noqa: BLE001
                runs[i] = None
                times[i] = []
                continue
            if r >= warmup:
                times[i].append((time.perf_counter() - t0) * 1000)
    return [round(statistics.median(t), 2) if t and runs[i] is not None else None for i, t in enumerate(times)]


def _kind(entry: dict) -> str:
    return entry.get("variant") or (entry.get("details") or {}).get("int8_kind") or PLAIN_KIND.get(entry["format"], "plain")


def choose(root: Path, artifacts: list[dict], quality: dict, target_db: float, rounds: int = 7) -> list[dict]:
    """Pick per (model, format); swap files and entries in place (``artifacts`` and ``quality``
    rows); returns the choice records (one per group)."""
    root = Path(root)
    rows = {r["path"]: r for r in quality.get("results", [])}
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(artifacts):
        if a["precision"] == "int8":
            groups.setdefault((a["model"], a["format"]), []).append(i)
    records = []
    for (net, fmt), idx in groups.items():
        plain = next((i for i in idx if not artifacts[i].get("variant")), None)
        if plain is None:
            continue
        cands = [artifacts[i] for i in idx]
        if fmt == "coreml":
            ms = [None] * len(cands)
            why = ("CoreML latency is not measurable off macOS (coreml-mil is a reference interpreter): "
                   "the plain int8 is kept")
        else:
            with step("choose", model=net, format=fmt, precision="int8"):
                ms = time_candidates(root, cands, rounds=rounds)
            why = None
        table = []
        for a, t in zip(cands, ms):
            q = rows.get(a["path"], {})
            worst = q.get("psnr_min_db")
            table.append({"variant": _kind(a), "plain": not a.get("variant"), "path": a["path"], "bytes": a["bytes"],
                          "ms": t, "psnr_db": q.get("psnr_db"), "psnr_min_db": worst,
                          "meets": worst is not None and worst >= target_db})
        rec = {"model": net, "format": fmt, "target_psnr_db": target_db, "criterion": "worst held-out pair >= target",
               "candidates": table, "pareto": _pareto(table)}
        ok = [k for k, r in enumerate(table) if r["meets"] and r["ms"] is not None]
        if why:
            rec.update(chosen=table[cands.index(artifacts[plain])]["variant"], changed=False, reason=why)
        elif not ok:
            rec.update(chosen=_kind(artifacts[plain]), changed=False,
                       reason=f"no int8 candidate reaches {target_db:g} dB on every held-out pair: the plain "
                              "int8 is kept as it was")
            print(f"styleport: {net} {fmt} int8: no candidate reaches --target-psnr {target_db:g} dB "
                  f"(best worst-pair {max((r['psnr_min_db'] or -1e9) for r in table):.1f} dB); plain int8 kept",
                  file=sys.stderr)
        else:
            best = min(ok, key=lambda k: table[k]["ms"])
            rec.update(chosen=table[best]["variant"], changed=not table[best]["plain"],
                       reason=f"fastest of {len(ok)} candidate(s) at >= {target_db:g} dB "
                              f"({table[best]['ms']} ms)")
            if rec["changed"]:
                _swap(root, artifacts, rows, plain, idx[best])
        records.append(rec)
    return records


def _pareto(table: list[dict]) -> list[str]:
    """Variants not beaten on both ms and worst-pair PSNR by another one."""
    pts = [r for r in table if r["ms"] is not None and r["psnr_min_db"] is not None]
    return [r["variant"] for r in pts if not any(
        o is not r and o["ms"] <= r["ms"] and o["psnr_min_db"] >= r["psnr_min_db"]
        and (o["ms"] < r["ms"] or o["psnr_min_db"] > r["psnr_min_db"]) for o in pts)]


def _variant_file(plain_rel: str, name: str) -> str:
    from styleport.quantization import _variant_path
    return _variant_path(Path(plain_rel), name).as_posix()


def _swap(root: Path, artifacts: list[dict], rows: dict, plain: int, chosen: int) -> None:
    """The chosen variant's file becomes the plain path; the old plain becomes a variant named by its kind."""
    p, c = artifacts[plain], artifacts[chosen]
    old_kind = _kind(p)
    new_kind = c["variant"]
    plain_rel, chosen_rel = p["path"], c["path"]
    demoted_rel = _variant_file(plain_rel, old_kind)
    if (root / demoted_rel).exists():
        raise RuntimeError(f"cannot demote {plain_rel}: {demoted_rel} exists")
    os.replace(root / plain_rel, root / demoted_rel)
    os.replace(root / chosen_rel, root / plain_rel)
    p_details, c_details = p.get("details") or {}, c.get("details") or {}
    p["details"], c["details"] = dict(c_details, int8_kind=new_kind), dict(p_details, int8_kind=old_kind)
    c["variant"], c["path"] = old_kind, demoted_rel
    # the quality rows follow their files
    rp, rc = rows.get(plain_rel), rows.get(chosen_rel)
    if rc is not None:
        rc.update(path=plain_rel, variant=None)
    if rp is not None:
        rp.update(path=demoted_rel, variant=old_kind)
