"""Imports of optional runtime packages, with the install hint a user needs (exit 3)."""

from __future__ import annotations

import importlib
from importlib import metadata

from styleport.runtime.runners.base import RuntimeUnavailable

HINTS = {
    "onnxruntime": "pip install onnxruntime",
    "onnx": "pip install onnx",
    "ai_edge_litert": "pip install ai-edge-litert",
    "coremltools": "pip install coremltools",
    "torch": "pip install torch",
    "skimage": "pip install scikit-image",
}


def need(module: str, what: str | None = None):
    """Import ``module`` or raise RuntimeUnavailable naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        hint = HINTS.get(top, f"pip install {top}")
        raise RuntimeUnavailable(f"{what or top} is not installed or cannot be imported ({e}); "
                                 f"install it: {hint}") from None


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]
