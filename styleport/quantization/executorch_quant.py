"""ExecuTorch int8 through PT2E: ``prepare_pt2e`` / ``convert_pt2e`` (torchao.quantization.pt2e) with
the XNNPACK quantizer (``executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer``),
then lowered to XNNPACK like the fp32 program (export/executorch_export.lower).

| kind    | conv2d                                   | linear (style head)     | calibration |
|---------|------------------------------------------|-------------------------|-------------|
| static  | int8 per-channel weights, static int8     | int8 per-channel,       | yes         |
|         | activations (HistogramObserver); also the | dynamic activations     |             |
|         | identity transposed conv of the upsample  |                         |             |
| dynamic | int8 per-channel weights, activations     | same                    | no          |
|         | quantized on the fly per run              |                         |             |

The plain int8 of a bundle is ``dynamic`` (like ONNX's and TFLite's plain int8: no calibration, and
the better figure on Google's weights, 41.4 vs 34.2 dB); ``static`` is the variant written when a
calibration set is given (faster at 1 thread: 0.49 vs 0.58x fp32).

Instance norm stays float on both, as on every int8 path of this project: the quantizer is given
conv2d and linear only (``set_operator_type``), never the global config, so the norm's mean,
subtract, square, rsqrt, multiply and add (and the residual adds) run in fp32 inside the same XNNPACK
delegate; only the conv inputs/outputs cross int8. Quantizing them too (the global config) puts one
per-tensor scale in front of the norm: 31.0 dB mean, 29.0 dB on the worst held-out pair. The constants of the style head (26 linear maps
concatenated) are folded first (``constant_prop_pass``) so the linear has static weights.

ExecuTorch 1.5.1's XNNPACK cannot run the predictor's first conv (3 input channels, stride 2)
dynamically quantized ("Propagating input shapes failed ... xnn_status_invalid_parameter" at the
first run), so ``dynamic`` leaves convs with fewer than 4 input channels in float (the quantizer's
dynamic path skips depthwise convs itself); every int8 program is run once after lowering and
refused when it does not run.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import torch

KINDS = ("static", "dynamic")


def _quiet():
    from styleport.export.wrappers import quiet_torch_export
    return quiet_torch_export()


def quantizer(kind: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    if kind not in KINDS:
        raise ValueError(f"unknown ExecuTorch int8 kind {kind!r} (choose from {', '.join(KINDS)})")
    dynamic = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    conv = get_symmetric_quantization_config(is_per_channel=True) if kind == "static" else dynamic
    q = XNNPACKQuantizer()
    q.set_operator_type(torch.ops.aten.conv2d.default, conv)
    q.set_operator_type(torch.ops.aten.linear.default, dynamic)
    if kind == "static":
        # the upsample's identity kernel (1.0) is exact in int8 and its output range is its input's,
        # so the tensor stays int8 into the next conv (measured 0.62 -> 0.58x fp32 at 2 threads)
        q.set_operator_type(torch.ops.aten.conv_transpose2d.input, conv)
    if kind == "dynamic":
        q.set_filter_function(_dynamic_ok)
    return q


def _dynamic_ok(node) -> bool:
    """The dynamic config leaves convs with fewer than 4 input channels in float (XNNPACK's
    dynamically quantized conv fails on the predictor's 3-channel stride-2 first conv). The
    annotator asks this of every node of a pattern (the conv and its weight and bias), so
    anything that is not a conv passes."""
    if node.target is not torch.ops.aten.conv2d.default:
        return True
    w = node.args[1].meta.get("val") if hasattr(node.args[1], "meta") else None
    return not (w is not None and w.dim() == 4 and w.shape[1] < 4)


def quantize(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, dst: Path, kind: str,
             calib_feeds: list | None = None) -> dict:
    """Write the int8 ``.pte`` of ``module``; ``calib_feeds`` ({input name: array} per sample) for static."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from styleport.export.executorch_export import capture, lower
    if kind == "static" and not calib_feeds:
        raise ValueError("static ExecuTorch int8 needs calibration feeds")
    from styleport.models.layers import forms
    names = [s["name"] for s in inputs]
    # static: the plain conv form at the ends. The "phases" form's wide output (several columns as
    # channels) shares one static activation scale across them: Google's weights, worst held-out
    # pair 27.0 dB with it vs 32.4 dB without (tests/test_executorch.py); dynamic keeps it
    conv_form = "native" if kind == "static" else None
    with _quiet(), torch.no_grad(), forms(module, conv=conv_form):
        prepared = prepare_pt2e(capture(module.eval(), sample).module(), quantizer(kind))
        for feeds in (calib_feeds if kind == "static" else [dict(zip(names, (t.numpy() for t in sample)))]):
            prepared(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names))
        program = torch.export.export(convert_pt2e(prepared), tuple(sample))
    details = lower(program, dst, inputs, outputs)
    _runs(dst, sample)
    details.update(precision="int8", io_dtype="float32", quantizer="torchao pt2e + XNNPACKQuantizer",
                   method=("static int8 activations (HistogramObserver) / int8 per-channel weights on conv2d and "
                           "the upsample's transposed conv; linear dynamic int8; instance norm and adds float"
                           if kind == "static" else
                           "dynamic int8 activations / int8 per-channel weights on conv2d and linear; "
                           "instance norm and adds float"),
                   ops=op_kinds(dst))
    return details


def _runs(path: Path, sample: tuple) -> None:
    """Run the fresh int8 program once; a program XNNPACK cannot execute must not land in a bundle."""
    from styleport.runtime.runners.executorch import run_once
    with _quiet():
        try:
            out = run_once(path, list(sample))
            ok = bool(np.isfinite(out[0].numpy()).all())
            why = "output holds NaN/Inf"
        except Exception as e:  # noqa: BLE001 - the runtime raises RuntimeError with its status code
            ok, why = False, (str(e).strip().splitlines() or [type(e).__name__])[0]
    if not ok:
        Path(path).unlink(missing_ok=True)
        raise RuntimeError(f"the int8 ExecuTorch program does not run: {why}")


def op_kinds(path: Path) -> dict:
    """XNNPACK node kinds that read int8 values and that stayed float, plus portable kernels."""
    from styleport import pte
    doc = pte.read(path)
    q, f = collections.Counter(), collections.Counter()
    for d in doc["delegates"]:
        q.update(d.get("nodes_quantized") or {})
        f.update(d.get("nodes_float") or {})
    portable = collections.Counter()
    m = doc["methods"].get("forward", {})
    portable.update(m.get("ops", {}))
    return {"quantized": dict(q.most_common()), "float": dict(f.most_common()),
            "portable": dict(portable.most_common())}
