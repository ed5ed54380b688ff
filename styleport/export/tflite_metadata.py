"""TFLite model metadata (the ``TFLITE_METADATA`` entry LiteRT's tools read), written and read back.

The format is TensorFlow Lite Support's metadata schema (``metadata_schema.fbs``, file identifier
``M001``): a ``ModelMetadata`` flatbuffer stored in one of the model's buffers and named in the
model's ``metadata`` field as ``TFLITE_METADATA``. The LiteRT support library's MetadataExtractor,
its Android codegen and Android Studio's ML model binding read it from there; the interpreter ignores it.

Why not a library: the maintained writer for this schema is ``tflite-support``'s MetadataPopulator,
whose last release (0.4.4, July 2023) pins ``protobuf<4``, which ONNX (>= 4.25) and coremltools
cannot share; LiteRT (ai-edge-litert 2.x), litert-torch and ai-edge-quantizer ship the *model*
schema (``schema_py_generated``, ``tools.flatbuffer_utils``) but no metadata writer. So the metadata
table is built here with the ``flatbuffers`` runtime (Builder / Table) for the subset of the schema
we write, field ids as in ``metadata_schema.fbs``:

    ModelMetadata     0 name, 1 description, 2 version, 3 subgraph_metadata, 4 author, 5 license,
                      6 associated_files, 7 min_parser_version
    SubGraphMetadata  0 name, 1 description, 2 input_tensor_metadata, 3 output_tensor_metadata
    TensorMetadata    0 name, 1 description, 2 dimension_names, 3 content, 4 process_units, 5 stats
    Content           0 content_properties_type (union: 1 Feature, 2 Image), 1 content_properties
    ImageProperties   0 color_space (1 RGB), 1 default_size
    ImageSize         0 width, 1 height
    ProcessUnit       0 options_type (union: 1 NormalizationOptions), 1 options
    NormalizationOptions 0 mean [float], 1 std [float]
    Stats             0 max [float], 1 min [float]

and the model around it is re-serialised with LiteRT's own ``flatbuffer_utils`` (the object API of
the TFLite schema), as tflite-support's populator does. Tensor metadata follow the subgraph's input
and output order (matched to the signature's names), as the schema requires. ``min_parser_version``
is 1.0.0: every field written here exists since the schema's first version.
The written files were checked once with tflite-support 0.4.4's MetadataDisplayer in a separate
environment (README, "Metadata in every file").
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from flatbuffers import encode, number_types, packer
from flatbuffers.table import Table

FILE_ID = b"M001"
ENTRY = "TFLITE_METADATA"
MIN_PARSER_VERSION = "1.0.0"
_FEATURE, _IMAGE = 1, 2          # ContentProperties union
_NORMALIZATION = 1               # ProcessUnitOptions union
_RGB = 1                         # ColorSpaceType
_COLOR = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_IMAGES = ("content_image", "style_image", "stylized_image")


# --- writing ------------------------------------------------------------------------------------

def _floats(b: flatbuffers.Builder, vals) -> int:
    b.StartVector(4, len(vals), 4)
    for v in reversed(list(vals)):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, offs) -> int:
    b.StartVector(4, len(offs), 4)
    for o in reversed(list(offs)):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _table(b: flatbuffers.Builder, slots: int, fields) -> int:
    """fields: (slot, kind, value) with kind off / u8 / i8 / u32; None values are left out."""
    b.StartObject(slots)
    for slot, kind, v in fields:
        if v is None:
            continue
        {"off": b.PrependUOffsetTRelativeSlot, "u8": b.PrependUint8Slot, "i8": b.PrependInt8Slot,
         "u32": b.PrependUint32Slot}[kind](slot, v, 0)
    return b.EndObject()


def _tensor(b, name: str, text: str, norm: dict | None, stats: tuple | None, size: tuple | None) -> int:
    name_o, text_o = b.CreateString(name), b.CreateString(text)
    if name in _IMAGES:
        size_o = _table(b, 2, [(0, "u32", size[1]), (1, "u32", size[0])]) if size else None
        props = _table(b, 2, [(0, "i8", _RGB), (1, "off", size_o)])
        content = _table(b, 3, [(0, "u8", _IMAGE), (1, "off", props)])
    else:
        props = _table(b, 0, [])
        content = _table(b, 3, [(0, "u8", _FEATURE), (1, "off", props)])
    units = None
    if norm:
        mean, std = _floats(b, norm["mean"]), _floats(b, norm["std"])
        opts = _table(b, 2, [(0, "off", mean), (1, "off", std)])
        units = _offsets(b, [_table(b, 2, [(0, "u8", _NORMALIZATION), (1, "off", opts)])])
    stats_o = None
    if stats:
        hi, lo = _floats(b, [stats[1]]), _floats(b, [stats[0]])
        stats_o = _table(b, 2, [(0, "off", hi), (1, "off", lo)])
    return _table(b, 7, [(0, "off", name_o), (1, "off", text_o), (3, "off", content), (4, "off", units),
                         (5, "off", stats_o)])


def encode_metadata(meta: dict, inputs: list[dict], outputs: list[dict]) -> bytes:
    """A ModelMetadata flatbuffer. ``inputs``/``outputs``: dicts with name, description, and optional
    normalization {mean, std}, stats (min, max) and size (H, W), in the subgraph's tensor order."""
    b = flatbuffers.Builder(1024)
    ins = [_tensor(b, t["name"], t["description"], t.get("normalization"), t.get("stats"), t.get("size"))
           for t in inputs]
    outs = [_tensor(b, t["name"], t["description"], t.get("normalization"), t.get("stats"), t.get("size"))
            for t in outputs]
    ins_v, outs_v = _offsets(b, ins), _offsets(b, outs)
    sg_name, sg_text = b.CreateString(meta["name"]), b.CreateString(meta["description"])
    sub = _table(b, 7, [(0, "off", sg_name), (1, "off", sg_text), (2, "off", ins_v), (3, "off", outs_v)])
    subs = _offsets(b, [sub])
    strs = {k: b.CreateString(meta[k]) for k in ("name", "description", "version", "author", "license")}
    ver = b.CreateString(MIN_PARSER_VERSION)
    root = _table(b, 8, [(0, "off", strs["name"]), (1, "off", strs["description"]), (2, "off", strs["version"]),
                         (3, "off", subs), (4, "off", strs["author"]), (5, "off", strs["license"]),
                         (7, "off", ver)])
    b.Finish(root, file_identifier=FILE_ID)
    return bytes(b.Output())


def _io_order(model) -> tuple[list[str], list[str]]:
    """The signature names of subgraph 0's inputs and outputs, in the subgraph's order."""
    sg = model.subgraphs[0]
    names = {}
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex not in (0, None):
            continue
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            names[int(tm.tensorIndex)] = tm.name.decode() if isinstance(tm.name, bytes) else tm.name

    def name(i):
        if int(i) in names:
            return names[int(i)]
        n = sg.tensors[int(i)].name
        return n.decode() if isinstance(n, bytes) else n
    return [name(i) for i in sg.inputs], [name(i) for i in sg.outputs]


def _tensor_info(model, index: int) -> dict:
    shape = list(model.subgraphs[0].tensors[int(index)].shape)
    return {"size": (int(shape[1]), int(shape[2]))} if len(shape) == 4 and shape[3] == 3 else {}


def write(path: Path, meta: dict, input_names: list[str], output_names: list[str]) -> None:
    """Put ``meta`` (styleport.export.metadata.describe) into the .tflite at ``path`` as its
    TFLITE_METADATA entry (replacing one already there); the rest of the model is unchanged."""
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils as fu

    path = Path(path)
    model = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    ins, outs = _io_order(model)
    if sorted(ins) != sorted(input_names) or sorted(outs) != sorted(output_names):
        raise RuntimeError(f"TFLite signature {ins} -> {outs} differs from the manifest's "
                           f"{input_names} -> {output_names}")
    sg = model.subgraphs[0]

    def entries(names, tensors, texts):
        out = []
        for n, t in zip(names, tensors):
            e = {"name": n, "description": texts.get(n, n), **_tensor_info(model, t)}
            if n in meta.get("normalization", {}):
                e["normalization"] = meta["normalization"][n]
            if n in _IMAGES:
                e["stats"] = (0.0, 1.0)
            out.append(e)
        return out

    blob = encode_metadata(meta, entries(ins, sg.inputs, meta["inputs"]), entries(outs, sg.outputs, meta["outputs"]))
    keep = [m for m in (model.metadata or []) if _text(m.name) != ENTRY]
    buf = S.BufferT()
    buf.data = np.frombuffer(blob, dtype=np.uint8).copy()
    model.buffers.append(buf)
    entry = S.MetadataT()
    entry.name = ENTRY
    entry.buffer = len(model.buffers) - 1
    model.metadata = keep + [entry]
    path.write_bytes(bytes(fu.convert_object_to_bytearray(model)))


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- reading ------------------------------------------------------------------------------------

def _off(t: Table, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _str(t: Table, slot: int) -> str | None:
    o = _off(t, slot)
    return t.String(o + t.Pos).decode() if o else None


def _sub(t: Table, slot: int) -> Table | None:
    o = _off(t, slot)
    return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None


def _tables(t: Table, slot: int) -> list[Table]:
    o = _off(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _float_list(t: Table, slot: int) -> list[float]:
    o = _off(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [float(encode.Get(packer.float32, t.Bytes, start + 4 * i)) for i in range(n)]


def _scalar(t: Table, slot: int, flags, default=0):
    o = _off(t, slot)
    return t.Get(flags, o + t.Pos) if o else default


def decode_metadata(blob: bytes) -> dict:
    """A ModelMetadata flatbuffer -> dict (the fields :func:`encode_metadata` writes)."""
    buf = bytearray(blob)
    if len(buf) < 8 or bytes(buf[4:8]) != FILE_ID:
        raise ValueError(f"not a TFLite metadata flatbuffer (file identifier {bytes(buf[4:8])!r}, want {FILE_ID!r})")
    root = Table(buf, encode.Get(packer.uoffset, buf, 0))

    def tensor(t: Table) -> dict:
        d = {"name": _str(t, 0), "description": _str(t, 1), "content": None, "normalization": None, "stats": None}
        c = _sub(t, 3)
        if c is not None:
            kind = _scalar(c, 0, number_types.Uint8Flags)
            props = _sub(c, 1)
            if kind == _IMAGE and props is not None:
                size = _sub(props, 1)
                d["content"] = {"image": {"color_space": _COLOR.get(_scalar(props, 0, number_types.Int8Flags), "?"),
                                          "default_size": None if size is None else
                                          [_scalar(size, 0, number_types.Uint32Flags),
                                           _scalar(size, 1, number_types.Uint32Flags)]}}
            elif kind == _FEATURE:
                d["content"] = {"feature": {}}
        for u in _tables(t, 4):
            if _scalar(u, 0, number_types.Uint8Flags) == _NORMALIZATION:
                o = _sub(u, 1)
                d["normalization"] = {"mean": _float_list(o, 0), "std": _float_list(o, 1)}
        s = _sub(t, 5)
        if s is not None:
            d["stats"] = {"max": _float_list(s, 0), "min": _float_list(s, 1)}
        return d

    subs = _tables(root, 3)
    return {"name": _str(root, 0), "description": _str(root, 1), "version": _str(root, 2),
            "author": _str(root, 4), "license": _str(root, 5), "min_parser_version": _str(root, 7),
            "inputs": [tensor(t) for t in _tables(subs[0], 2)] if subs else [],
            "outputs": [tensor(t) for t in _tables(subs[0], 3)] if subs else []}


def read(path: Path) -> dict | None:
    """The TFLITE_METADATA of a .tflite file, decoded; None when it has none."""
    from ai_edge_litert import schema_py_generated as S
    data = bytearray(Path(path).read_bytes())
    m = S.Model.GetRootAs(data, 0)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if _text(md.Name()) == ENTRY:
            buf = m.Buffers(md.Buffer())
            if buf.Offset():   # stored outside the flatbuffer (large models)
                blob = bytes(data[buf.Offset():buf.Offset() + buf.Size()])
            else:
                blob = buf.DataAsNumpy().tobytes()
            return decode_metadata(blob)
    return None
