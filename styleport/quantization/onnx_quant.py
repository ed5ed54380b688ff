"""ONNX Runtime precisions: fp16 (float32 I/O kept)."""

from __future__ import annotations

from pathlib import Path

import onnx


def to_fp16(src: Path, dst: Path) -> dict:
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.checker.check_model(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(half, str(dst))
    return {"method": "onnxconverter-common float16, keep_io_types", "io_dtype": "float32"}
