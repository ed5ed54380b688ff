"""``--emulate fp16`` / ``--emulate fp16-acc16``: run an artefact with the arithmetic of a phone's
fp16 path on an x86 box, and report each layer's distance to the fp16 range (issue #16).

Why: on x86 our fp16 artefacts compute in fp32 (ORT casts fp16 weights up and drops the casts
between nodes; XNNPACK's x86 path and LiteRT's reference kernels dequantize fp16 weights; coreml-mil
rounded only what the program declares fp16), so parity passes where a device overflows.

Modes (the arithmetic is in runtime/numerics/fp16.py):

| mode | tensors | accumulators (conv, depthwise, FC, matmul) | reductions (mean) | stands for |
|---|---|---|---|---|
| ``fp16`` | fp16 | fp32 | fp32 | TFLite GPU delegate at ``F32_F16`` precision (MAX_PRECISION as 2nd priority; Metal GPUs without round-to-nearest; LiteRT ``use_f32_accum_for_fp16``); Core ML on the GPU by default (fp16 storage, fp32 accumulation unless ``allowLowPrecisionAccumulationOnGPU``) |
| ``fp16-acc16`` | fp16 | fp16 (FMA, from the bias) | fp32 | TFLite GPU delegate at ``F16`` (its default once precision loss is allowed), XNNPACK's fp16 path on ARMv8.2 (``f16-gemm`` ``neonfp16arith`` kernels accumulate in ``float16x8_t``), Core ML GPU with ``allowLowPrecisionAccumulationOnGPU``, and (evidence weak) the Neural Engine |

Sources: TensorFlow ``lite/delegates/gpu/common/precision.h`` ("F16 - all data and all math ops in
F16; F32_F16 - as F16, but Convolution, DepthwiseConvolution, FullyConnected,
ConvolutionTransposed have accumulator in F32") and ``gpu/cl/api.cc`` ``GetPrecision``; TFLite
GPU ``tasks/reduce.cc`` (MEAN reduces in ``float4``); XNNPACK ``src/f16-gemm`` (neonfp16arith:
fp16 accumulators; avx2: accumulator rounded to fp16 after each FMA) and ``src/f16-f32acc-rsum``;
Apple ``MLModelConfiguration.allowLowPrecisionAccumulationOnGPU``; coremltools "Typed Execution"
guide. The Neural Engine's arithmetic is not documented by Apple; the claim that it is fp16
throughout comes from community measurements (github.com/hollance/neural-engine), so treat the
ANE row as an assumption.

What it catches: overflow (|x| > 65504 -> inf) and the rounding of every stored tensor, in the
artefact's own op decomposition (TFLite: MEAN/SUB/MUL/MEAN/RSQRT instance norm; ONNX/CoreML: the
native norm op). What it cannot: a device's accumulation order and blocking (ours is sequential),
operator fusion by a delegate, flush-to-zero of fp16 subnormals, or kernels that differ from the
definitions above. Native norm ops: in ``fp16`` one op (fp32 inside, output rounded); in
``fp16-acc16`` their decomposition with every step rounded (the strict assumption).

Per-artefact backends: ONNX -> runtime/numerics/onnx.py (Cast pairs in ORT; reference evaluator for
acc16), TFLite -> runtime/numerics/tflite.py (the .tflite op list interpreted with numpy), CoreML ML
programs -> runtime/numerics/coreml.py (coreml-mil's program, every float op rounded).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from styleport.runtime.runners.base import Runner, RuntimeFailed, RuntimeSkipped, RuntimeUnavailable
from styleport.runtime.numerics.fp16 import FP16_MAX, MODES, check_mode, margin_bits, round16

RUNTIME_OF_MODE = {"fp16": "emulate-fp16", "fp16-acc16": "emulate-fp16-acc16"}
MODE_OF_RUNTIME = {v: k for k, v in RUNTIME_OF_MODE.items()}
CLEAR_MARGIN_BITS = 2.0   # a layer within 4x of 65504 is flagged "tight" in the headroom table


@dataclass
class LayerStat:
    index: int
    name: str            # tensor name in the artefact
    op: str              # op type that produced it
    block: str           # the layer it belongs to: the last convolution (by weight name when known)
    shape: list
    max_abs: float | None   # max |value| as the op computed it, before rounding to fp16
    overflow: int        # finite values past 65504 that became inf when stored
    nonfinite: int       # inf/NaN in the stored fp16 tensor (overflow here or carried in)
    margin_bits: float | None
    snr_db: float | None = None   # against the same graph computed in fp32 (when run)


def layer_stat(index, name, op, block, pre) -> LayerStat:
    a = np.asarray(pre)
    if a.dtype.kind != "f" or a.size == 0:
        return LayerStat(index, name, op, block, list(a.shape), None, 0, 0, None)
    with np.errstate(invalid="ignore"):
        absval = np.abs(a)
        finite = np.isfinite(a)
        mx = float(absval[finite].max()) if finite.any() else None
        over = int((finite & (absval >= 65520.0)).sum())   # 65520 and up round to inf in fp16
        carried = int((~finite).sum())
    if carried:
        return LayerStat(index, name, op, block, list(a.shape), math.inf, over, carried + over, -math.inf)
    return LayerStat(index, name, op, block, list(a.shape), mx, over, over, margin_bits(mx))


def _json_safe(v):
    """inf/NaN -> None (JSON has neither); overflow stays visible in the overflow/nonfinite counts."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def short(name: str, n: int = 48) -> str:
    """A tensor name for messages: the last module-path segment (litert-torch names hold the whole
    path), at most ``n`` characters."""
    name = str(name).split(";")[0]
    if "/" in name:
        name = name.rsplit("/", 1)[-1]
        name = name.rsplit("_", 1)[-1] if "." in name.split("_", 1)[0] else name
    return name if len(name) <= n else "..." + name[-(n - 3):]


def _fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


class Emulation:
    """One emulated run: its outputs and per-tensor statistics, in execution order."""

    def __init__(self, mode: str, fmt: str, path: str, layers: list[LayerStat], outputs: dict):
        self.mode, self.format, self.path = mode, fmt, path
        self.layers = layers
        self.outputs = outputs

    def first_overflow(self) -> LayerStat | None:
        return next((s for s in self.layers if s.nonfinite), None)

    def first_over_tolerance(self, snr_db: float) -> LayerStat | None:
        return next((s for s in self.layers if s.snr_db is not None and s.snr_db < snr_db), None)

    def blocks(self) -> list[dict]:
        """The headroom table: one row per layer (block), max |value| over its tensors."""
        rows: dict[str, dict] = {}
        for s in self.layers:
            r = rows.setdefault(s.block, {"layer": s.block, "tensors": 0, "max_abs": None, "at": None,
                                          "margin_bits": None, "overflow": 0, "nonfinite": 0,
                                          "min_snr_db": None})
            r["tensors"] += 1
            r["overflow"] += s.overflow
            r["nonfinite"] += s.nonfinite
            if s.max_abs is not None and (r["max_abs"] is None or s.max_abs > r["max_abs"]):
                r["max_abs"], r["at"] = s.max_abs, f"{s.op} {short(s.name, 32)}"
            if s.snr_db is not None and (r["min_snr_db"] is None or s.snr_db < r["min_snr_db"]):
                r["min_snr_db"] = s.snr_db
        for r in rows.values():
            r["margin_bits"] = -math.inf if r["overflow"] else margin_bits(r["max_abs"])
        return list(rows.values())

    def summary(self, snr_threshold: float | None = None) -> dict:
        first = self.first_overflow()
        worst = min((s for s in self.layers if s.margin_bits is not None), key=lambda s: s.margin_bits,
                    default=None)
        doc = {"mode": self.mode, "format": self.format, "path": self.path, "tensors": len(self.layers),
               "first_overflow": asdict(first) if first else None,
               "min_margin_bits": worst.margin_bits if worst else None,
               "min_margin_at": f"{worst.op} {worst.name} ({worst.block})" if worst else None,
               "headroom": self.blocks(), "layers": [asdict(x) for x in self.layers]}
        if snr_threshold is not None:
            t = self.first_over_tolerance(snr_threshold)
            doc["snr_threshold_db"] = snr_threshold
            doc["first_over_tolerance"] = asdict(t) if t else None
        return _json_safe(doc)

    def problem(self, snr_threshold: float | None = None) -> str | None:
        """One sentence naming the first layer that overflows (or, failing that, breaks the
        tolerance), with its max |value|; None when neither happens."""
        first = self.first_overflow()
        if first is not None:
            if first.overflow:
                return (f"fp16 overflow at layer {first.block} ({first.op} {short(first.name)}): max |value| "
                        f"{first.max_abs:.4g} > 65504, {first.overflow} values became inf")
            return (f"fp16 inf/NaN first at layer {first.block} ({first.op} {short(first.name)}; "
                    f"max finite |value| {_fmt(first.max_abs, '.4g')}): no overflow there, a division "
                    "by zero or 0*inf")
        if snr_threshold is not None:
            t = self.first_over_tolerance(snr_threshold)
            if t is not None:
                return (f"first layer over tolerance: {t.block} ({t.op} {short(t.name)}): SNR {t.snr_db:.1f} dB "
                        f"< {snr_threshold:g} dB vs fp32, max |value| {_fmt(t.max_abs, '.4g')}")
        return None


def problem_of(summary: dict, snr_threshold: float | None = None) -> str | None:
    """:meth:`Emulation.problem` from a summary dict (as stored on a parity check)."""
    layers = [LayerStat(**d) for d in summary.get("layers", [])]
    return Emulation(summary["mode"], summary["format"], summary["path"], layers, {}).problem(snr_threshold)


def annotate(checks: list) -> None:
    """Give every emulated parity check its problem sentence: the first overflowing layer (or the
    first layer whose SNR falls under the check's PSNR/SNR threshold), first among its reasons when
    it failed, and as ``emulation["problem"]`` always."""
    for ck in checks:
        em = getattr(ck, "emulation", None)
        if not em:
            continue
        th = ck.tolerance.get("psnr_db", ck.tolerance.get("snr_db"))
        msg = problem_of(em, th)
        em["problem"] = msg
        em["snr_threshold_db"] = th
        if msg and ck.status == "fail":
            ck.reasons.insert(0, msg)


def emulation_rules(rules: list | None) -> list:
    """Tolerance rules for ``--emulate``: fp32 artefacts computed in fp16 are judged with the fp16
    tolerances (a GPU delegate allowed to lose precision runs an fp32 file in fp16); the user's own
    rules still apply after these."""
    from styleport.runtime.harness.tolerances import default_tolerance
    out = []
    for model in ("predictor", "transformer", "pipeline"):
        fp32 = default_tolerance(model, "onnx", "fp32")
        fp16 = default_tolerance(model, "onnx", "fp16")
        out.append(((model, "*", "fp32"), {**{k: None for k in fp32}, **fp16}))
    return out + list(rules or [])


def render_headroom(summary: dict, title: str = "") -> str:
    lines = [f"fp16 headroom{(' ' + title) if title else ''} (emulate {summary['mode']}; margin = "
             "log2(65504 / max|value|) in bits; OVERFLOW = values past 65504 became inf)",
             "| layer | tensors | max abs value | at | margin (bits) | overflow | min SNR dB |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["headroom"]:
        m = r["margin_bits"]
        if r["overflow"] or r["nonfinite"]:
            ms = "OVERFLOW" if r["overflow"] else "inf/NaN"
        else:
            ms = _fmt(m, ".1f") + (" (tight)" if m is not None and m < CLEAR_MARGIN_BITS else "")
        mx = "inf" if r["max_abs"] is None and r["nonfinite"] else _fmt(r["max_abs"], ".4g")
        lines.append(f"| {r['layer']} | {r['tensors']} | {mx} | {r['at'] or '-'} | {ms} | "
                     f"{r['overflow'] or ''} | {_fmt(r['min_snr_db'], '.1f')} |")
    return "\n".join(lines)


# --- backends ------------------------------------------------------------------------------------

def _backend(fmt: str, path, mode: str, threads=None):
    if fmt == "onnx":
        from styleport.runtime.numerics.onnx import OnnxEmulator
        return OnnxEmulator(path, mode, threads)
    if fmt == "tflite":
        from styleport.runtime.numerics.tflite import TFLiteEmulator
        return TFLiteEmulator(path, mode)
    if fmt == "coreml":
        from styleport.runtime.numerics.coreml import CoreMLEmulator
        return CoreMLEmulator(path, mode)
    raise RuntimeFailed(f"fp16 emulation: no emulator for format {fmt!r} (onnx, tflite, coreml)")


def _blocks(layers: list) -> list[str]:
    """Block label per tensor: the most recent convolution (``conv #k``, or its weight's name)."""
    out, k, cur = [], 0, "input"
    for name, op, node, _ in layers:
        if op.lower() in ("conv", "conv_2d", "depthwise_conv_2d", "convtranspose", "conv_transpose",
                          "transpose_conv", "gemm", "matmul", "fully_connected", "linear", "batch_matmul"):
            k += 1
            cur = f"{op.lower()} #{k}" + (f" ({node})" if node and "node_" not in str(node) and node != name else "")
        out.append(cur)
    return out


def emulate(path, feeds: dict, mode: str = "fp16", fmt: str | None = None, reference: bool = True,
            threads: int | None = None) -> Emulation:
    """Run ``path`` (an .onnx, .tflite or .mlpackage) on ``feeds`` (the model's own names, layout and
    dtype) in emulated fp16. ``reference``: also run the same graph with fp32 arithmetic and give
    every tensor its SNR against it (to name the first layer whose error breaks a tolerance)."""
    from styleport.runtime.runners.registry import format_of
    check_mode(mode)
    fmt = fmt or format_of(path)
    emu = _backend(fmt, path, mode, threads)
    outs, layers = emu.run(feeds)
    ref_layers = _backend(fmt, path, "fp32", threads).run(feeds)[1] if reference else None
    blocks = _blocks(layers)
    stats = []
    ref_by_name = {n: v for n, _, _, v in ref_layers} if ref_layers is not None else {}
    from styleport.runtime.harness.tolerances import compare
    for i, ((name, op, node, pre), block) in enumerate(zip(layers, blocks)):
        s = layer_stat(i, name, op, block, pre)
        r = ref_by_name.get(name)
        if r is not None and np.asarray(r).shape == np.asarray(pre).shape and np.asarray(pre).dtype.kind == "f":
            m = compare(np.asarray(r), round16(pre), "vector")
            s.snr_db = m.get("snr_db")
        stats.append(s)
    return Emulation(mode, fmt, str(path), stats, outs)


class EmulatedRunner(Runner):
    """A Runner (runtime/runners/base.py) that runs ONNX, TFLite and CoreML artefacts in emulated fp16.
    Specs come from the format's own runner (onnxruntime, litert, coreml-mil); ``last`` holds the
    latest run's :class:`Emulation`."""

    mode = "fp16"
    name = runtime = "emulate-fp16"
    formats = ("onnx", "tflite", "coreml")

    def _open(self):
        from styleport.runtime.runners.registry import format_of, make_runner
        self.format = format_of(self.path)
        if self.format not in self.formats:
            raise RuntimeUnavailable(f"fp16 emulation covers .onnx, .tflite and .mlpackage files, not "
                                     f"{Path(str(self.path)).name}")
        if self.format == "coreml" and not Path(str(self.path)).is_dir():
            raise RuntimeSkipped("fp16 emulation covers CoreML ML programs (.mlpackage); neuralNetwork "
                                 ".mlmodel files are not emulated")
        plain = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml-mil"}[self.format]
        self._plain = make_runner(plain, self.path, threads=self.threads, **({"xnnpack": False}
                                                                             if plain == "litert" else {}))
        self._plain.open()
        prec = self._plain.precision()
        if prec == "int8":
            raise RuntimeSkipped("fp16 emulation covers float artefacts (fp32, fp16), not int8 ones")
        self._emu = _backend(self.format, self.path, self.mode, self.threads)
        self.last: Emulation | None = None

    def _close(self):
        self._plain.close()
        self._emu = None

    def input_specs(self):
        return self._plain.input_specs()

    def output_specs(self):
        return self._plain.output_specs()

    def run(self, feeds):
        self.last = emulate(self.path, feeds, self.mode, self.format, reference=True, threads=self.threads)
        return {k: np.asarray(v) for k, v in self.last.outputs.items()}

    def precision(self):
        return self._plain.precision()

    def describe(self):
        return {"threads": self.threads, "emulate": self.mode,
                "note": "numpy/ORT emulation of fp16 device arithmetic; latency is the emulator's, "
                        "not a device's"}

    def report(self, snr_threshold: float | None = None) -> dict | None:
        """The latest run's summary (headroom table, per-tensor statistics): the harness stores it
        on the parity check."""
        return self.last.summary(snr_threshold) if self.last is not None else None


class EmulatedRunnerAcc16(EmulatedRunner):
    mode = "fp16-acc16"
    name = runtime = "emulate-fp16-acc16"


_ = FP16_MAX, MODES
