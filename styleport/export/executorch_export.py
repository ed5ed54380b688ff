"""torch -> ExecuTorch program (``.pte``) lowered to the XNNPACK backend.

``torch.export.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` ->
``to_executorch()``. The network is written in the forms XNNPACK takes whole (export/wrappers.py:
reflection pad as one-pixel slices + concat, instance norm as mean/variance with gamma folded into
the scale, nearest upsample as an identity transposed conv), so one delegate runs all of it; what
would stay on ExecuTorch's portable CPU kernels is counted in the manifest (``delegation``:
delegated vs non-delegated ops, per op, and the number of delegate subgraphs; the ``getitem`` nodes
that unpack a delegate's outputs are not ops and are not counted).

I/O: NCHW float32, as ONNX and CoreML. A program's inputs are positional, so the names travel in
the file as constant methods, like a TFLite signature: ``input_names`` and ``output_names`` return
the bundle's names (``content_image``, ``style_bottleneck`` -> ``stylized_image``), ``layout``
returns "NCHW". Fixed shapes per file (as TFLite).

Precisions: fp32; fp16 (the module runs in half precision between a cast of each input and a cast
of the output back to float32, so the app still passes and gets float32; ExecuTorch 1.5.1's XNNPACK
serializer stores conv weights as fp32 even in an fp16 graph (op_conv2d: force_fp32), so the file
shrinks little, and x86 CPUs without fp16 arithmetic run it slower than fp32: see FP16_NOTE); int8
comes from styleport.quantization.executorch_quant (PT2E) through :func:`lower`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from styleport.export.timing import step
from styleport.export.wrappers import quiet_torch_export

EXT = ".pte"
NATIVE = ("fp32", "fp16")
BASE = "module"
DYNAMIC = False
LAYOUT = "NCHW"
BACKEND = "XnnpackBackend"
FP16_NOTE = ("float16 compute inside the XNNPACK delegate, float32 I/O (casts at the edges); conv weights "
             "are stored fp32 by ExecuTorch 1.5.1's XNNPACK serializer, so the file is ~0.8x fp32; fp16 "
             "arithmetic is native on ARMv8.2+ phones, emulated through conversions on x86 (slower than fp32)")


class HalfPrecision(torch.nn.Module):
    """float32 I/O around a float16 network: inputs cast down, output cast back up."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.half()

    def forward(self, *args):
        return self.inner(*(a.half() for a in args)).float()


def export(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path, opts) -> dict:
    """The format table's entry point (export/formats.py): fp32 or fp16 ``.pte``."""
    import copy
    if opts.precision not in NATIVE:
        raise ValueError(f"ExecuTorch {opts.precision} is made by styleport.quantization, not the exporter")
    module = module.eval()
    if opts.precision == "fp16":
        module = HalfPrecision(copy.deepcopy(module)).eval()
    with step("trace"), quiet_torch_export(), torch.no_grad():
        program = capture(module, sample)
    details = lower(program, path, inputs, outputs)
    details["precision"] = opts.precision
    if opts.precision == "fp16":
        details["fp16"] = FP16_NOTE
    return details


def capture(module: torch.nn.Module, sample: tuple):
    """``torch.export`` with the constants folded (ExecuTorch's ``constant_prop_pass``): the style
    head's 26 concatenated linear maps become one weight, so XNNPACK takes the linear as a static
    fully-connected op instead of re-concatenating the weights on every run."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    return constant_prop_pass(torch.export.export(module, tuple(sample)))


def lower(program, path: Path, inputs: list, outputs: list) -> dict:
    """An exported program (fp32, fp16 or PT2E-quantized) -> ``path``; returns the manifest details."""
    with step("convert"), quiet_torch_export():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.devtools.backend_debug import get_delegation_info
        from executorch.exir import to_edge_transform_and_lower
        names = {"input_names": [s["name"] for s in inputs], "output_names": [s["name"] for s in outputs],
                 "layout": LAYOUT}
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=names)
        info = get_delegation_info(edge.exported_program().graph_module)
        data = edge.to_executorch().buffer
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return {"lowering": "torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch",
            "backend": BACKEND, "method": "forward", "layout": LAYOUT, "delegation": delegation(info)}


def delegation(info) -> dict:
    """executorch.devtools.backend_debug.DelegationInfo -> plain counts (getitem unpacking left out)."""
    per_op = {k: (v.delegated, v.non_delegated) for k, v in info.delegation_by_operator.items() if k != "getitem"}
    return {"delegated_ops": sum(d for d, _ in per_op.values()),
            "non_delegated_ops": sum(n for _, n in per_op.values()),
            "delegated_subgraphs": info.num_delegated_subgraphs,
            "non_delegated": {_op(k): n for k, (_, n) in sorted(per_op.items()) if n},
            "delegated": {_op(k): d for k, (d, _) in sorted(per_op.items()) if d}}


def _op(node_type: str) -> str:
    """aten_convolution_default -> aten.convolution.default (the edge op's name)."""
    parts = node_type.split("_")
    if parts[0] in ("aten", "quantized") and len(parts) > 2:
        return f"{parts[0]}.{'_'.join(parts[1:-1])}.{parts[-1]}"
    return node_type


def check(path: Path, feeds: dict):
    """Run a fresh artefact once in the ExecuTorch runtime (XNNPACK): (runtime, first output)."""
    with quiet_torch_export():
        from styleport.runtime.runners.executorch import run_once
        out = run_once(path, [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
    return "executorch", out[0].numpy()
