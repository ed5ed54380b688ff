"""torch -> ONNX: ``torch.onnx.export`` (dynamo exporter at opset >= 18; the TorchScript exporter
when opset 17 is asked for), then onnx.checker + shape inference, then onnxsim simplification.

Both node counts (before and after onnxsim) are returned for the manifest. The simplified model is
only kept when onnxsim's own check passes and it runs in ONNX Runtime to the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from styleport.export.timing import step
from styleport.export.wrappers import quiet_torch_export

DEFAULT_OPSET = 20
EXT = ".onnx"
NATIVE = ("fp32",)
BASE = "file"
DYNAMIC = True


def export(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path, opts) -> dict:
    """The format table's entry point (export/formats.py)."""
    return export_onnx(module, sample, inputs, outputs, path, opts.opset or DEFAULT_OPSET, dynamic=opts.dynamic)


def check(path: Path, feeds: dict):
    """Run a fresh artefact once in ONNX Runtime (CPU): (runtime, first output)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return "onnxruntime", ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def export_onnx(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path,
                opset: int = DEFAULT_OPSET, dynamic: bool = False, simplify: bool = True) -> dict:
    names_in = [s["name"] for s in inputs]
    names_out = [s["name"] for s in outputs]
    if opset < 17:
        raise ValueError(f"opset {opset} is below 17, the lowest this exporter supports")
    with step("convert"), quiet_torch_export(), torch.no_grad():
        if opset >= 18:
            dyn = None
            if dynamic:
                h = torch.export.Dim("H", min=16, max=8192)
                w = torch.export.Dim("W", min=16, max=8192)
                dyn = {names_in[0]: {2: h, 3: w}}
                dyn.update({n: None for n in names_in[1:]})
            prog = torch.onnx.export(module, sample, input_names=names_in, output_names=names_out,
                                     dynamo=True, opset_version=opset, dynamic_shapes=dyn,
                                     optimize=True, verify=False)
            model = prog.model_proto
        else:
            dyn_axes = {names_in[0]: {2: "H", 3: "W"}, names_out[0]: {2: "H", 3: "W"}} if dynamic else None
            import io
            buf = io.BytesIO()
            torch.onnx.export(module, sample, buf, input_names=names_in, output_names=names_out,
                              dynamo=False, opset_version=opset, dynamic_axes=dyn_axes)
            model = onnx.load_from_string(buf.getvalue())
    model.producer_name = "styleport"
    with step("simplify"):
        return _finish(model, path, sample, names_in, simplify, dynamic, opset)


def _finish(model, path, sample, names_in, simplify, dynamic, opset) -> dict:
    """Check, infer shapes, simplify (onnxsim, kept only when it runs to the same numbers), save."""
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    before = len(model.graph.node)
    simplified = False
    if simplify:
        import onnxsim
        try:
            candidate, ok = onnxsim.simplify(model)
        except Exception:  # noqa: BLE001 - onnxsim failing is not fatal: keep the checked model
            candidate, ok = None, False
        if ok and _same_outputs(model, candidate, sample, names_in):
            model, simplified = candidate, True
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return {"opset": _opset(model), "nodes_before_simplify": before, "nodes": len(model.graph.node),
            "simplified": simplified, "exporter": "dynamo" if opset >= 18 else "torchscript",
            "dynamic_hw": bool(dynamic)}


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _same_outputs(a, b, sample, names, atol=1e-5) -> bool:
    import onnxruntime as ort
    feeds = {n: t.numpy() for n, t in zip(names, sample)}
    outs = []
    for m in (a, b):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, feeds))
    return all(np.allclose(x, y, atol=atol, rtol=0) for x, y in zip(*outs))
