"""Which module exports which format: the exporters' table, shaped like runtime/runners/registry.py.

    FORMATS   name -> module (imported lazily, so a missing converter only matters when asked for)

Every format module defines the same names:

    EXT       suffix of the file (or package folder) it writes: ".onnx", ".tflite", ".mlpackage", ".pte"
    NATIVE    precisions its exporter writes itself ("fp32"; CoreML and ExecuTorch also "fp16"); the
              others come from ``styleport.quantization.make_variant``
    BASE      what the quantizers of the format start from: "file" (the fp32 artefact, exported
              unlisted when fp32 was not asked for) or "module" (the wrapped torch module)
    DYNAMIC   whether the format can take free H and W (``export --dynamic``)
    export(module, sample, inputs, outputs, path, opts: ExportOptions) -> dict
              write ``path``; return the manifest ``details``
    check(path, feeds) -> (runtime name, first output as numpy)
              run a fresh fp32 artefact once (the export-time check against torch); raise
              :class:`CheckSkipped` with the reason where it cannot run here

Adding a format is one module with these names and one line below (plus its forms and layout in
export/wrappers.py, its name in manifest.FORMATS and its runner in runtime/runners/registry.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

FORMATS: dict[str, str] = {
    "onnx": "styleport.export.onnx_export",
    "tflite": "styleport.export.tflite_export",
    "coreml": "styleport.export.coreml_export",
    "executorch": "styleport.export.executorch_export",
}


class CheckSkipped(Exception):
    """The fresh artefact cannot be run on this platform (e.g. CoreML prediction on Linux)."""


@dataclass(frozen=True)
class ExportOptions:
    """What one export call needs besides the module and its I/O. ``extra`` carries format-specific
    options through unchanged (a format reads the keys it knows and ignores the rest)."""

    precision: str = "fp32"
    network: str = "transformer"
    dynamic: bool = False           # free H and W; already False where the format or network cannot
    opset: int | None = None        # ONNX only (None: the exporter's default)
    extra: dict = field(default_factory=dict)


def exporter(fmt: str) -> ModuleType:
    """The format's module (KeyError for an unknown format: callers validate names first)."""
    return importlib.import_module(FORMATS[fmt])


def ext(fmt: str) -> str:
    return exporter(fmt).EXT


def artefact_path(fmt: str, network: str, precision: str) -> str:
    """Bundle-relative path of one artefact: ``FMT/NETWORK.PRECISION.EXT``."""
    return f"{fmt}/{network}.{precision}{ext(fmt)}"
