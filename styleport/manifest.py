"""The bundle manifest: what an exported bundle holds, read by the runtime harness and by apps.

Shape of ``manifest.json`` (schema ``SCHEMA``)::

    {"schema": 1, "kind": "styleport-bundle", "created_by": "styleport X.Y.Z",
     "source": {"checkpoint": NAME, "sha256": HEX, "preset": P, "config": {...}},
     "preprocessing": {...}, "tools": {"torch": V, ...},
     "artifacts": [{"model": "transformer"|"predictor", "format": "onnx"|"tflite"|"coreml"|"executorch",
                    "precision": "fp32"|"fp16"|"int8", "path": "onnx/transformer.fp32.onnx",
                    "bytes": N, "sha256": HEX, "io": "tensor"|"image",
                    "inputs":  [{"name", "shape", "dtype", "layout", "range"[, "image"]}],
                    "outputs": [{"name", "shape", "dtype", "layout", "range"[, "image"]}],
                    "details": {...}}]}

``io`` (optional; absent means "tensor"): "image" when some inputs/outputs are platform images
(CoreML ``ImageType``, ``export --coreml-io image``). Such an entry is an 8-bit picture: dtype
"uint8", range [0, 255], shape/layout the program's view ([1,3,H,W] NCHW), and an ``image`` block:
``{"color_layout": "RGB"|"BGR"|"GRAYSCALE", "scale": S, "bias": [B, B, B]}`` on inputs (the network
sees ``pixel * S + B``) or ``{"color_layout": ..., "scale": S, "clip": [0, 255]}`` on outputs
(``pixel = clip(network output * S)``).

Shapes hold ints, or strings for free dimensions ("H", "W"). Paths are relative, use "/", never
contain "..", and are checked to stay inside the bundle. Every failure is a ``BadInput`` naming
the manifest and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from styleport.errors import BadInput

SCHEMA = 1
KIND = "styleport-bundle"
MANIFEST = "manifest.json"
MODELS = ("transformer", "predictor")
FORMATS = ("onnx", "tflite", "coreml", "executorch")
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NCHW", "NHWC", "any")
IO_KINDS = ("tensor", "image")
COLOR_LAYOUTS = ("RGB", "BGR", "GRAYSCALE")


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder (an .mlpackage): its files' relative paths and bytes, sorted."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        return h.hexdigest()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def size_path(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def safe_relpath(rel: object, where: str) -> PurePosixPath:
    if not isinstance(rel, str) or not rel:
        raise BadInput(f"{where}: path must be a non-empty string")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise BadInput(f"{where}: absolute path {rel!r} not allowed in a bundle")
    if ".." in p.parts or "\\" in rel:
        raise BadInput(f"{where}: path {rel!r} leaves the bundle")
    return p


def _check_io(entries, where):
    if not isinstance(entries, list) or not entries:
        raise BadInput(f"{where}: must be a non-empty list")
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        if not isinstance(e, dict):
            raise BadInput(f"{w}: must be an object")
        if not isinstance(e.get("name"), str) or not e["name"]:
            raise BadInput(f"{w}.name: must be a non-empty string")
        shape = e.get("shape")
        if not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d > 0) or (isinstance(d, str) and d)
                for d in shape):
            raise BadInput(f"{w}.shape: must be a list of positive ints or dimension names")
        if e.get("dtype") not in ("float32", "float16", "int8", "uint8"):
            raise BadInput(f"{w}.dtype: {e.get('dtype')!r} not supported")
        if e.get("layout") not in LAYOUTS:
            raise BadInput(f"{w}.layout: {e.get('layout')!r} not in {LAYOUTS}")
        rng = e.get("range")
        if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)):
            raise BadInput(f"{w}.range: must be [low, high] or null")
        if "image" in e:
            _check_image(e, w)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_image(e: dict, w: str) -> None:
    img = e["image"]
    if not isinstance(img, dict):
        raise BadInput(f"{w}.image: must be an object")
    if img.get("color_layout") not in COLOR_LAYOUTS:
        raise BadInput(f"{w}.image.color_layout: {img.get('color_layout')!r} not in {COLOR_LAYOUTS}")
    if not _number(img.get("scale")):
        raise BadInput(f"{w}.image.scale: must be a number")
    for key in ("bias", "clip"):
        if key in img and not (isinstance(img[key], list) and img[key] and all(_number(v) for v in img[key])):
            raise BadInput(f"{w}.image.{key}: must be a list of numbers")
    if e.get("dtype") != "uint8" or e.get("range") != [0, 255]:
        raise BadInput(f"{w}: an image entry holds 8-bit pixels (dtype uint8, range [0, 255]), got "
                       f"{e.get('dtype')!r} {e.get('range')!r}")


def validate(doc: object, where: str = MANIFEST) -> dict:
    """Check a parsed manifest; return it. Raises BadInput (never anything else) on any defect."""
    if not isinstance(doc, dict):
        raise BadInput(f"{where}: manifest must be a JSON object")
    if doc.get("kind") != KIND:
        raise BadInput(f"{where}: not a styleport bundle manifest (kind {doc.get('kind')!r})")
    if doc.get("schema") != SCHEMA:
        raise BadInput(f"{where}: unknown manifest schema {doc.get('schema')!r} (this styleport reads {SCHEMA})")
    arts = doc.get("artifacts")
    if not isinstance(arts, list) or not arts:
        raise BadInput(f"{where}: artifacts must be a non-empty list")
    seen = set()
    for i, a in enumerate(arts):
        w = f"{where}: artifacts[{i}]"
        if not isinstance(a, dict):
            raise BadInput(f"{w}: must be an object")
        if a.get("model") not in MODELS:
            raise BadInput(f"{w}.model: {a.get('model')!r} not in {MODELS}")
        if a.get("format") not in FORMATS:
            raise BadInput(f"{w}.format: {a.get('format')!r} not in {FORMATS}")
        if a.get("precision") not in PRECISIONS:
            raise BadInput(f"{w}.precision: {a.get('precision')!r} not in {PRECISIONS}")
        safe_relpath(a.get("path"), f"{w}.path")
        if not isinstance(a.get("bytes"), int) or isinstance(a.get("bytes"), bool) or a["bytes"] < 0:
            raise BadInput(f"{w}.bytes: must be a non-negative integer")
        sha = a.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BadInput(f"{w}.sha256: must be 64 lowercase hex digits")
        if a.get("io", "tensor") not in IO_KINDS:
            raise BadInput(f"{w}.io: {a.get('io')!r} not in {IO_KINDS}")
        _check_io(a.get("inputs"), f"{w}.inputs")
        _check_io(a.get("outputs"), f"{w}.outputs")
        key = (a["model"], a["format"], a["precision"], a.get("variant", ""))
        if key in seen:
            raise BadInput(f"{w}: duplicate artefact {'/'.join(key).strip('/')}")
        seen.add(key)
    return doc


def load(bundle: str | os.PathLike, verify: bool = True) -> dict:
    """Read and validate ``bundle/manifest.json``; with ``verify`` check each file's size and sha256."""
    bundle = Path(bundle)
    mpath = bundle / MANIFEST if bundle.is_dir() else bundle
    if not mpath.is_file():
        raise BadInput(f"not a bundle (no {MANIFEST}): {bundle}")
    try:
        doc = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BadInput(f"{mpath}: not valid JSON ({type(e).__name__})") from None
    validate(doc, str(mpath))
    root = mpath.parent.resolve()
    for a in doc["artifacts"]:
        full = (root / a["path"]).resolve()
        if root not in full.parents:
            raise BadInput(f"{mpath}: path {a['path']!r} leaves the bundle")
        if not full.exists():
            raise BadInput(f"{mpath}: artefact missing: {a['path']}")
        if verify:
            if size_path(full) != a["bytes"]:
                raise BadInput(f"{mpath}: {a['path']} is {size_path(full)} bytes, manifest says {a['bytes']}")
            if sha256_path(full) != a["sha256"]:
                raise BadInput(f"{mpath}: sha256 mismatch for {a['path']} (file changed or corrupted)")
    return doc


def artifact_path(bundle: str | os.PathLike, artifact: dict) -> Path:
    bundle = Path(bundle)
    root = bundle if bundle.is_dir() else bundle.parent
    return root / artifact["path"]
