"""What each exported file says about itself: name, description, version, author, licence, one
description per input and output, and (TFLite) the normalisation of each tensor.

:func:`describe` builds the texts from the checkpoint's config and the artefact's manifest entry;
:func:`stamp` writes them into the file in the format's own metadata, where the platform tools read it:

| format | where                                                                                       |
|--------|---------------------------------------------------------------------------------------------|
| CoreML | the spec's ``description.metadata`` (author, license, shortDescription, versionString,      |
|        | userDefined) and each feature's ``shortDescription``: Xcode's model page, ``MLModel``        |
|        | ``.modelDescription``, coremltools ``MLModel(...).author`` etc. (coreml_export.set_metadata) |
| TFLite | the ``TFLITE_METADATA`` entry of the model's ``metadata`` field: a ModelMetadata flatbuffer |
|        | (``M001``) with NormalizationOptions per input/output, as the LiteRT support library,       |
|        | its codegen and Android Studio's ML model binding read it (tflite_metadata.py)              |
| ONNX   | ``doc_string`` (description), ``metadata_props`` (name, version, author, license,          |
|        | normalisation) and each graph input/output's ``doc_string``: ONNX Runtime's               |
|        | ``InferenceSession.get_modelmeta()`` (description, custom_metadata_map), Netron             |

Author and licence: ``--author`` / ``--license`` when given, else the checkpoint's own ``author`` /
``license`` keys (config.json), else what its import records (Google's Magenta files: Apache-2.0;
pytorch/examples fast-neural-style: BSD-3-Clause), else "unspecified". Nothing time-dependent is
written, so exports stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

from styleport import __version__

KNOWN_SOURCES = {
    "magenta-tflite": ("Google Magenta (weights, Apache-2.0 TensorFlow Lite release); imported and exported by "
                       "styleport", "Apache-2.0"),
    "fast-neural-style": ("pytorch/examples fast_neural_style (weights); imported and exported by styleport",
                          "BSD-3-Clause"),
}
UNSPECIFIED = "unspecified (the checkpoint records no licence; pass --license)"


def _credit(doc: dict, overrides: dict | None) -> tuple[str, str]:
    overrides = overrides or {}
    src = (doc.get("imported_from") or {}).get("format")
    author, lic = KNOWN_SOURCES.get(src, (None, None))
    author = overrides.get("author") or doc.get("author") or author or "styleport user (trained with styleport)"
    lic = overrides.get("license") or doc.get("license") or lic or UNSPECIFIED
    return str(author), str(lic)


def _shape(e: dict) -> str:
    return "x".join(str(d) for d in e["shape"])


def _tensor_text(e: dict, net: str, style_size: int | None) -> str:
    name, lay = e["name"], e.get("layout", "any")
    img = e.get("image")
    if name in ("content_image", "style_image"):
        what = ("Photo to stylise" if name == "content_image" else
                f"Painting whose style to take (short side to {style_size}, centre crop)" if style_size else
                "Painting whose style to take")
        if img:
            return f"{what}: {img['color_layout']} image, 8-bit pixels (the program multiplies them by 1/255)."
        return f"{what}: RGB float32 {lay} [{_shape(e)}], values in [0, 1] (pixel / 255)."
    if name == "stylized_image":
        if img:
            return f"Stylised image: {img['color_layout']} image, 8-bit pixels."
        return f"Stylised image: RGB float32 {lay} [{_shape(e)}], values in [0, 1]; clip and multiply by 255 for pixels."
    if name == "style_bottleneck":
        if net == "predictor":
            return (f"Style vector [{_shape(e)}] float32: feed it to the transformer; cache it per style. "
                    "Strength s: s * b_style + (1 - s) * b_content.")
        return (f"Style vector [{_shape(e)}] float32 from the predictor (s * b_style + (1 - s) * b_content "
                "for strength s).")
    if name == "style_weights":
        return f"Style mix [{_shape(e)}] float32: non-negative, summing to 1 (one-hot = one style)."
    return f"{name}: {e.get('dtype')} [{_shape(e)}]."


def normalization(e: dict) -> dict | None:
    """TFLite NormalizationOptions of an entry: ``(x - mean) / std`` maps the app's values to the
    tensor's (inputs: 8-bit pixels -> [0,1], mean 0 std 255) or the tensor's to the app's (outputs:
    [0,1] -> pixels, mean 0 std 1/255). None for non-image tensors."""
    if e["name"] not in ("content_image", "style_image", "stylized_image") or e.get("range") != [0.0, 1.0]:
        return None
    if e["name"] == "stylized_image":
        return {"mean": [0.0], "std": [1.0 / 255.0]}
    return {"mean": [0.0], "std": [255.0]}


def describe(doc: dict, checkpoint_sha: str, artifact: dict, style_size: int | None = None,
             overrides: dict | None = None) -> dict:
    """Metadata for one artefact (``artifact``: its manifest entry without path/bytes/sha)."""
    net, fmt, prec = artifact["model"], artifact["format"], artifact["precision"]
    variant = artifact.get("variant")
    preset = doc["model"]["preset"]
    author, lic = _credit(doc, overrides)
    kind = "image" if any("image" in e for e in artifact["inputs"] + artifact["outputs"]) else "tensor"
    label = prec + (f" {variant}" if variant else "")
    if net == "predictor":
        job = "Style predictor: style image -> 100-d style vector"
    elif doc["model"].get("preset") == "dumoulin" or any(e["name"] == "style_weights" for e in artifact["inputs"]):
        job = "Style transfer network: content image + style mix -> stylised image"
    elif any(e["name"] == "style_bottleneck" for e in artifact["inputs"]):
        job = "Style transfer network: content image + style vector -> stylised image"
    else:
        job = "Style transfer network (one style): content image -> stylised image"
    description = (f"{job}. {preset} {net}, {fmt} {label}, {kind} I/O. Exported by styleport {__version__} "
                   f"from checkpoint sha256 {checkpoint_sha[:12]}.")
    meta = {
        "name": f"styleport {preset} {net} ({label})",
        "description": description,
        "version": f"{__version__}+ckpt.{checkpoint_sha[:12]}",
        "author": author, "license": lic,
        "inputs": {e["name"]: _tensor_text(e, net, style_size) for e in artifact["inputs"]},
        "outputs": {e["name"]: _tensor_text(e, net, style_size) for e in artifact["outputs"]},
        "normalization": {e["name"]: normalization(e) for e in artifact["inputs"] + artifact["outputs"]
                          if normalization(e)},
        "user_defined": {"styleport.model": net, "styleport.preset": preset, "styleport.precision": prec,
                         "styleport.io": kind, "styleport.checkpoint_sha256": checkpoint_sha},
    }
    if variant:
        meta["user_defined"]["styleport.variant"] = variant
    return meta


def stamp(fmt: str, path: Path, meta: dict, inputs: list, outputs: list) -> dict:
    """Write ``meta`` into the file at ``path``; returns the manifest's ``details.metadata`` record."""
    path = Path(path)
    if fmt == "coreml":
        from styleport.export.coreml_export import set_metadata
        set_metadata(path, meta)
        where = "CoreML model description (author, license, shortDescription, versionString, userDefined, " \
                "feature shortDescription)"
    elif fmt == "tflite":
        from styleport.export.tflite_metadata import write
        write(path, meta, [e["name"] for e in inputs], [e["name"] for e in outputs])
        where = "TFLITE_METADATA (ModelMetadata flatbuffer, file identifier M001)"
    elif fmt == "onnx":
        _stamp_onnx(path, meta)
        where = "ONNX doc_string, metadata_props and graph input/output doc_string"
    else:
        # an ExecuTorch program has no free-form metadata section; manifest.json carries the record
        return {"where": None, "reason": f"{fmt} files have no metadata field; see manifest.json"}
    return {"where": where, "name": meta["name"], "version": meta["version"], "author": meta["author"],
            "license": meta["license"]}


def _stamp_onnx(path: Path, meta: dict) -> None:
    import json

    import onnx
    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise RuntimeError(f"{path.name} keeps weights in external data; metadata is written into single-file models")
    model.doc_string = meta["description"]
    props = {"name": meta["name"], "version": meta["version"], "author": meta["author"], "license": meta["license"],
             **{k: str(v) for k, v in meta.get("user_defined", {}).items()}}
    for name, norm in meta.get("normalization", {}).items():
        props[f"normalization.{name}"] = json.dumps(norm)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    texts = {**meta["inputs"], **meta["outputs"]}
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name in texts:
            v.doc_string = texts[v.name]
    onnx.save_model(model, str(path))
