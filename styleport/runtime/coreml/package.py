"""Reading an ``.mlpackage`` without writing to it: ``(spec, weights folder)``.

coremltools' ``MLModel(path, skip_model_load=True)`` opens the package through its ModelPackage
library, which rewrites ``Manifest.json`` on every open: it writes ``Manifest.<uuid>`` next to it and
renames it over (twice). A bundle's artefact is then a folder whose file list changes while
another process reads it; ``manifest.load`` hashing that folder (``sha256_path``) at the same moment
sees the extra file and reports a sha256 mismatch, which is bad input, exit 2 — the flaky ``parity``
of an image-I/O CoreML bundle in issue 20 (a rerun passes). A process killed between the write and the
rename leaves the temp file behind for good. So the interpreter reads the package itself, read-only:
``Manifest.json`` names the root model (``rootModelIdentifier``) and the ``weights`` folder; the spec is
the protobuf ``Model`` in that file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from styleport.errors import BadInput
from styleport.runtime.coreml.ops import fail


def read_package(path) -> tuple[object, str | None]:
    """(``Model_pb2.Model`` spec, weights folder or None) of an ``.mlpackage``; reads files only."""
    from coremltools.proto import Model_pb2
    root = Path(os.fspath(path))
    if not root.exists():
        raise BadInput(f"no such CoreML model: {root}")
    if not root.is_dir():
        fail(f"{root} is not an .mlpackage directory (ML programs are saved as packages)")
    try:
        manifest = json.loads((root / "Manifest.json").read_text())
        entries = manifest["itemInfoEntries"]
        model_rel = entries[manifest["rootModelIdentifier"]]["path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"cannot read {root}: Manifest.json is missing or malformed ({type(e).__name__}: {e})")
    data = root / "Data"
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString((data / model_rel).read_bytes())
    except Exception as e:  # noqa: BLE001 - a protobuf DecodeError or an OSError: a broken package
        fail(f"cannot read {root}: model spec {model_rel}: {type(e).__name__}: {e}")
    weights = next((data / e["path"] for e in entries.values()
                    if isinstance(e, dict) and e.get("name") == "weights" and e.get("path")), None)
    return spec, (str(weights) if weights is not None and weights.is_dir() else None)
