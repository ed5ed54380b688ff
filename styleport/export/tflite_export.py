"""torch -> TFLite with litert-torch (direct from the torch graph; no TensorFlow needed).

Chosen over onnx2tf by measurement (README "Why litert-torch"): NHWC I/O without any TRANSPOSE in
the graph once the network is written channels-last-friendly (wrappers.py), reflection padding as
slices+concat runs about 2x faster than MIRROR_PAD under XNNPACK, and every conversion is
checked against PyTorch here rather than trusted. After conversion the file gets the exact
rewrites of tflite_rewrite.py (nearest upsampling as DEPTH_TO_SPACE), so that XNNPACK takes every
op of the fp32 graph in one partition.

Shapes are fixed per file (TFLite has no free H/W through this route).
"""

from __future__ import annotations

from pathlib import Path

import torch

from styleport.export.timing import step
from styleport.export.wrappers import quiet_torch_export

EXT = ".tflite"
NATIVE = ("fp32",)
BASE = "file"
DYNAMIC = False


def export(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path, opts) -> dict:
    """The format table's entry point (export/formats.py)."""
    return export_tflite(module, sample, inputs, outputs, path)


def check(path: Path, feeds: dict):
    """Run a fresh artefact once in LiteRT (XNNPACK, 2 threads): (runtime, first output)."""
    from ai_edge_litert.interpreter import Interpreter
    with quiet_torch_export():
        it = Interpreter(model_path=str(path), num_threads=2)
    return "ai-edge-litert", next(iter(it.get_signature_runner()(**feeds).values()))


def export_tflite(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path,
                  quant_config=None) -> dict:
    kwargs = {spec["name"]: t for spec, t in zip(inputs, sample)}
    out_name = outputs[0]["name"]

    class Named(torch.nn.Module):  # a dict output names the signature's output tensor
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return {out_name: self.inner(**kw)}

    with step("convert"), quiet_torch_export(), torch.no_grad():
        import litert_torch
        path.parent.mkdir(parents=True, exist_ok=True)
        litert_torch.convert(Named(module).eval(), sample_kwargs=kwargs, quant_config=quant_config).export(str(path))
        if _transposes(path) and _plain_first_conv(module):
            # litert-torch's layout pass sometimes keeps the norm after a "phases" first conv in
            # NCHW, with two TRANSPOSE ops around it (tiny dumoulin): then the plain conv is kept
            litert_torch.convert(Named(module).eval(), sample_kwargs=kwargs, quant_config=quant_config).export(str(path))
    from styleport.export.tflite_rewrite import rewrite_file
    with step("simplify"):
        rewrites = rewrite_file(path)
    return {"converter": "litert-torch", "signature": "serving_default", "rewrites": rewrites}


def _transposes(path: Path) -> int:
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model(str(path))
    codes = {i for i, oc in enumerate(model.operatorCodes)
             if max(oc.builtinCode, oc.deprecatedBuiltinCode) == S.BuiltinOperator.TRANSPOSE}
    return sum(op.opcodeIndex in codes for sg in model.subgraphs for op in sg.operators)


def _plain_first_conv(module: torch.nn.Module) -> bool:
    """Switch the "phases" first conv of every TransformerNet in ``module`` back to the plain form;
    True when one was switched."""
    from styleport.models.transformer import TransformerNet
    changed = False
    for m in module.modules():
        if isinstance(m, TransformerNet) and m.conv1.form == "phases":
            m.conv1.form = "native"
            changed = True
    return changed
