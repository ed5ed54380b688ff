"""Shared pieces of the benchmark suites: timing (interleaved sides), stats, load average, machine,
transformer-only export (fixed size or --dynamic) through styleport's own exporters, and models.

Every figure is a median over >= 10 timed runs after warmup, with min and max beside it. Ratios are
taken between sides timed in the same process, interleaved run by run (round-robin, rotated start),
so load drift hits every side alike. The machine is shared: every result records os.getloadavg().
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
MAGENTA = SHARED / "magenta"
IMAGES = SHARED / "images"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from styleport.paths import scrub  # noqa: E402


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def stats(samples_s: list[float]) -> dict:
    ms = [s * 1e3 for s in samples_s]
    return {"median_ms": round(statistics.median(ms), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3), "runs": len(ms)}


def interleave(sides: dict, runs: int, warmup: int = 2) -> dict:
    """sides: name -> zero-arg callable. Warm each up, then time one call of each side per round,
    the starting side rotating every round. Returns name -> list of seconds."""
    names = list(sides)
    for n in names:
        for _ in range(warmup):
            sides[n]()
    out = {n: [] for n in names}
    for r in range(runs):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            sides[n]()
            out[n].append(time.perf_counter() - t0)
    return out


def paired_ratio(a: list[float], b: list[float]) -> dict:
    """median of per-round ratios b/a (both sides from the same round) and ratio of medians."""
    pr = sorted(y / x for x, y in zip(a, b))
    return {"ratio_of_medians": round(statistics.median(b) / statistics.median(a), 3),
            "paired_median": round(statistics.median(pr), 3), "paired_min": round(pr[0], 3),
            "paired_max": round(pr[-1], 3)}


def machine() -> dict:
    from styleport.export.bundle import tool_versions
    from styleport.runtime.harness.machine import machine_info
    info = machine_info()
    info["tools"] = tool_versions()
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / 1e6, 1)
    except OSError:
        pass
    return info


def write(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc.setdefault("loadavg_end", loadavg())
    doc.setdefault("machine", machine())
    doc.setdefault("command", " ".join([Path(sys.executable).name] + sys.argv))
    p = RESULTS / f"{name}.json"
    # no absolute path of this machine in a committed result (../shared/..., benchmarks/...: issue 20)
    p.write_text(scrub(json.dumps(doc, indent=1), ROOT) + "\n")
    return p


def build_model(preset: str):
    """(model, weights description). magenta-mobile: Google's imported weights when present."""
    import torch

    from styleport.models.presets import build, default_config
    if preset == "magenta-mobile" and (MAGENTA / "style_transfer_f16_384.tflite").exists():
        from styleport.models.importers import magenta_from_tflite
        model, _ = magenta_from_tflite(MAGENTA / "style_predict_quantized_256.tflite",
                                       MAGENTA / "style_transfer_f16_384.tflite")
        return model.eval(), "Google's Magenta weights (imported)"
    torch.manual_seed(0)
    return build(default_config(preset, width=1.0)).eval(), "random init (seed 0), width 1"


def export_transformer(model, folder: Path, fmt: str, precisions, size: int, dynamic: bool = False,
                       calibration: dict | None = None, variants: tuple = ()) -> dict:
    """Export only the transformer network through styleport's exporters / quantizers (the format
    table, export/formats.py; plain artefacts). ``calibration`` reaches the quantizers; ``variants``
    names calibration variants to keep as well, returned as "PRECISION-VARIANT" (e.g. ExecuTorch's
    "int8-static"). Returns precision -> path."""
    from styleport.export.formats import ExportOptions, exporter
    from styleport.export.wrappers import export_module, io_spec
    from styleport.quantization import make_variant
    fm = exporter(fmt)
    dyn = bool(dynamic and fm.DYNAMIC)
    module = export_module(model, "transformer", fmt)
    inputs, outputs, sample = io_spec(model, "transformer", fmt, (size, size), 256, dyn)
    base = folder / f"{fmt}_{size}{'_dyn' if dynamic else ''}.fp32{fm.EXT}"
    fm.export(module, sample, inputs, outputs, base, ExportOptions(dynamic=dyn))
    paths = {"fp32": base}
    for p in precisions:
        if p == "fp32":
            continue
        out = base.with_name(base.name.replace(".fp32", f".{p}"))
        if p in fm.NATIVE:
            fm.export(module, sample, inputs, outputs, out, ExportOptions(precision=p, dynamic=dyn))
        else:
            d = make_variant(fmt, p, base, out, module=module, sample=sample, inputs=inputs, outputs=outputs,
                             network="transformer", model=model,
                             calibration=dict(calibration or {}, variants=bool(variants)))
            for v in d.get("variants", []):
                if v["variant"] in variants:
                    paths[f"{p}-{v['variant']}"] = Path(v["path"])
        paths[p] = out
    return paths


def feeds_for(model, size: int, nhwc: bool, seed: int = 0) -> dict:
    """Canonical inputs (numpy float32) for the transformer: content image [0,1] and a bottleneck /
    style weights, in the layout the format wants."""
    import numpy as np
    rng = np.random.default_rng(seed)
    c = rng.random((1, 3, size, size), dtype=np.float32)
    feeds = {"content_image": c.transpose(0, 2, 3, 1).copy() if nhwc else c}
    if model.kind == "arbitrary":
        b = rng.standard_normal((1, 100, 1, 1)).astype(np.float32)
        feeds["style_bottleneck"] = b.reshape(1, 1, 1, 100) if nhwc else b
    elif model.kind == "multi":
        feeds["style_weights"] = np.full((1, model.num_styles), 1.0 / model.num_styles, np.float32)
    return feeds


def ort_session(path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    # no spin-waiting after a run: spinning ORT threads would steal the cores from the side timed
    # next (torch eager measured 15x slower interleaved with spinning ORT sessions on 2 cores)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def litert_call(path, threads: int, feeds: dict):
    """A zero-arg callable running the LiteRT model on ``feeds`` (set inputs + invoke + read output)."""
    from styleport.runtime.runners.registry import make_runner
    r = make_runner("litert", path, threads=threads).open()
    return lambda: r.run(feeds), r


def executorch_call(path, threads: int, feeds: dict):
    """A zero-arg callable running the ExecuTorch program on ``feeds`` (the XNNPACK threadpool is
    process-wide: every ExecuTorch side of one run shares it, sized by the last call)."""
    from styleport.runtime.runners.registry import make_runner
    r = make_runner("executorch", path, threads=threads).open()
    return lambda: r.run(feeds), r


def op_hist(path) -> dict:
    from styleport.export.inspect import inspect_file
    info = inspect_file(path)
    return {"ops": info["op_histogram"], "transpose": info["transpose_count"], "bytes": info["file_bytes"]}


class TFL:
    """A TFLite model fed by shape: the 100-element input is the bottleneck, the other the image."""

    def __init__(self, path, threads):
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        self.np = np
        self.path = Path(path)
        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.ins = self.it.get_input_details()
        self.out = self.it.get_output_details()[0]["index"]

    def set(self, image=None, bottleneck=None):
        np = self.np
        for d in self.ins:
            a = bottleneck if int(np.prod(d["shape"])) == 100 else image
            self.it.set_tensor(d["index"], np.ascontiguousarray(a.reshape(d["shape"]), dtype=np.float32))

    def __call__(self, image=None, bottleneck=None):
        self.set(image, bottleneck)
        self.it.invoke()
        return self.it.get_tensor(self.out).copy()
