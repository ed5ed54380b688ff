"""ExecuTorch int8 through PT2E: ``prepare_pt2e`` / ``convert_pt2e`` (torchao.quantization.pt2e) with
the XNNPACK quantizer (``executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer``),
then lowered to XNNPACK like the fp32 program (export/executorch_export.lower).

| kind    | conv2d                                   | linear (style head)     | calibration |
|---------|------------------------------------------|-------------------------|-------------|
| static  | int8 per-channel weights, static int8     | int8 per-channel,       | yes         |
|         | activations (HistogramObserver)           | dynamic activations     |             |
| dynamic | int8 per-channel weights, activations     | same                    | no          |
|         | quantized on the fly per run              |                         |             |

Instance norm stays float on both, as on every int8 path of this project: the quantizer is given
conv2d and linear only (``set_operator_type``), never the global config, so the norm's mean,
subtract, square, rsqrt, multiply and add (and the residual adds) run in fp32 inside the same XNNPACK
delegate; only the conv inputs/outputs cross int8. Quantizing them too (the global config) puts one
per-tensor scale in front of the norm. The constants of the style head (26 linear maps
concatenated) are folded first (``constant_prop_pass``) so the linear has static weights.
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
    return q


def quantize(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, dst: Path, kind: str,
             calib_feeds: list | None = None) -> dict:
    """Write the int8 ``.pte`` of ``module``; ``calib_feeds`` ({input name: array} per sample) for static."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from styleport.export.executorch_export import capture, lower
    if kind == "static" and not calib_feeds:
        raise ValueError("static ExecuTorch int8 needs calibration feeds")
    names = [s["name"] for s in inputs]
    with _quiet(), torch.no_grad():
        prepared = prepare_pt2e(capture(module.eval(), sample).module(), quantizer(kind))
        for feeds in (calib_feeds if kind == "static" else [dict(zip(names, (t.numpy() for t in sample)))]):
            prepared(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names))
        program = torch.export.export(convert_pt2e(prepared), tuple(sample))
    details = lower(program, dst, inputs, outputs)
    details.update(precision="int8", io_dtype="float32", quantizer="torchao pt2e + XNNPACKQuantizer",
                   method=("static int8 activations (HistogramObserver) / int8 per-channel weights on conv2d; "
                           "linear dynamic int8; instance norm and adds float" if kind == "static" else
                           "dynamic int8 activations / int8 per-channel weights on conv2d and linear; "
                           "instance norm and adds float"),
                   ops=op_kinds(dst))
    return details


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
