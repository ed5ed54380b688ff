"""Reduced-precision variants of exported artefacts (fp16, int8) for ONNX, TFLite and CoreML.

``make_variant(fmt, precision, fp32_path, out_path, **context)`` writes one variant and returns
details for the manifest.
"""

from __future__ import annotations

from pathlib import Path

from styleport.errors import BadInput


def make_variant(fmt: str, precision: str, fp32_path: Path, out_path: Path, **ctx) -> dict:
    if fmt == "onnx" and precision == "fp16":
        from styleport.quantization.onnx_quant import to_fp16
        return to_fp16(fp32_path, out_path)
    raise BadInput(f"{fmt} {precision} is not supported yet")
