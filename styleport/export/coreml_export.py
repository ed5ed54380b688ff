"""torch -> CoreML ML program with coremltools (from a traced module).

fp32 and fp16 compute precision; the I/O dtypes are set to float32 explicitly (with an iOS16 target
an FP16 program would otherwise silently get float16 I/O); outputs are named. Flexible content size
with ``dynamic``: ct.RangeDim on H and W. Prediction needs macOS: on Linux the saved package is
validated by loading its spec without compiling it (``skip_model_load=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from styleport.export.wrappers import quiet_torch_export

TARGET = "iOS16"
EXT = ".mlpackage"
NATIVE = ("fp32", "fp16")
BASE = "file"
DYNAMIC = True


def export(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path, opts) -> dict:
    """The format table's entry point (export/formats.py)."""
    return export_coreml(module, sample, inputs, outputs, path, precision=opts.precision, dynamic=opts.dynamic)


def check(path: Path, feeds: dict):
    from styleport.export.formats import CheckSkipped
    raise CheckSkipped("CoreML prediction needs macOS")


def export_coreml(module: torch.nn.Module, sample: tuple, inputs: list, outputs: list, path: Path,
                  precision: str = "fp32", dynamic: bool = False) -> dict:
    with quiet_torch_export(), torch.no_grad():
        import coremltools as ct
        traced = torch.jit.trace(module, sample, check_trace=False)
        ct_inputs = []
        for spec, t in zip(inputs, sample):
            shape = tuple(t.shape)
            if dynamic and spec["name"] == "content_image":
                shape = ct.Shape(shape=(1, 3, ct.RangeDim(64, 4096, default=shape[2]),
                                        ct.RangeDim(64, 4096, default=shape[3])))
            ct_inputs.append(ct.TensorType(name=spec["name"], shape=shape, dtype=np.float32))
        ml = ct.convert(traced, inputs=ct_inputs,
                        outputs=[ct.TensorType(name=o["name"], dtype=np.float32) for o in outputs],
                        convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, TARGET),
                        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                        compute_units=ct.ComputeUnit.ALL)
        ml.short_description = "styleport export"
        path.parent.mkdir(parents=True, exist_ok=True)
        ml.save(str(path))
    _stable_identifiers(path)
    # Validate the way Linux can: reload the spec without compiling.
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    got = [i.name for i in spec.description.input]
    if got != [s["name"] for s in inputs]:
        raise RuntimeError(f"CoreML package inputs {got} differ from {[s['name'] for s in inputs]}")
    return {"deployment_target": TARGET, "compute_precision": precision, "flexible_hw": bool(dynamic),
            "spec_version": spec.specificationVersion,
            "prediction": "macOS only (coremltools cannot run ML programs on Linux)"}


def _stable_identifiers(package: Path) -> None:
    """coremltools names the package items with random UUIDs, so two exports of the same model
    differ. Replace them with UUIDs derived from each item's path: same model, same bytes."""
    import json
    import uuid
    mpath = Path(package) / "Manifest.json"
    doc = json.loads(mpath.read_text())
    entries = doc.get("itemInfoEntries", {})
    remap = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, "styleport:" + e.get("path", old))).upper()
             for old, e in entries.items()}
    doc["itemInfoEntries"] = {remap[k]: v for k, v in sorted(entries.items(), key=lambda kv: remap[kv[0]])}
    if doc.get("rootModelIdentifier") in remap:
        doc["rootModelIdentifier"] = remap[doc["rootModelIdentifier"]]
    mpath.write_text(json.dumps(doc, indent=4, sort_keys=True) + "\n")
