"""torch -> TFLite with litert-torch (direct from the torch graph; no TensorFlow needed).

Chosen over onnx2tf by measurement (README "Why litert-torch"): NHWC I/O without any TRANSPOSE in
the graph once the network is written channels-last-friendly (wrappers.py), reflection padding as
slice+flip+concat runs about 2x faster than MIRROR_PAD under XNNPACK, and every conversion is
checked against PyTorch here rather than trusted.

Shapes are fixed per file (TFLite has no free H/W through this route).
"""

from __future__ import annotations

from pathlib import Path

import torch

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

    with quiet_torch_export(), torch.no_grad():
        import litert_torch
        edge = litert_torch.convert(Named(module).eval(), sample_kwargs=kwargs, quant_config=quant_config)
        path.parent.mkdir(parents=True, exist_ok=True)
        edge.export(str(path))
    return {"converter": "litert-torch", "signature": "serving_default"}
