"""Tiny models and a hand-made bundle for the runtime tests (test fixtures; no styleport exporter involved, so a
runtime test does not depend on the exporters under test).

``tiny_bundle(folder)`` writes a checkpoint (magenta-mobile at width 0.25) and a bundle with its
predictor and transformer as ONNX (dynamo exporter) and TFLite (litert-torch, NHWC I/O) at 64 px,
plus an fp16 ONNX transformer, and a manifest per styleport/manifest.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from styleport import manifest as mf


class _NHWC:
    pass


def _wrap_nhwc(module, kind: str):
    import torch

    class T(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, content_image, style_bottleneck):
            y = self.m(content_image.permute(0, 3, 1, 2), style_bottleneck.permute(0, 3, 1, 2))
            return y.permute(0, 2, 3, 1)

    class P(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, style_image):
            return self.m(style_image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    return (T if kind == "transformer" else P)(module).eval()


@contextlib.contextmanager
def _quiet():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield


def export_onnx(module, args: tuple, names: list[str], out_names: list[str], path: Path) -> Path:
    import torch
    with _quiet():
        torch.onnx.export(module, args, str(path), input_names=names, output_names=out_names, dynamo=True,
                          verbose=False)
    data = Path(str(path) + ".data")
    if data.exists():  # keep one file: re-save with the weights inside
        import onnx
        m = onnx.load(str(path))
        onnx.save(m, str(path))
        data.unlink()
    return path


def export_tflite(module, kwargs: dict, path: Path) -> Path:
    import litert_torch
    with _quiet():
        litert_torch.convert(module, sample_kwargs=kwargs).export(str(path))
    return path


def io_entry(name, shape, layout, rng=(0, 1)):
    return {"name": name, "shape": list(shape), "dtype": "float32", "layout": layout, "range": list(rng) if rng else None}


def tiny_bundle(folder: str | os.PathLike, size: int = 64, style_size: int = 64, width: float = 0.25,
                tflite: bool = True, fp16: bool = True, seed: int = 0) -> Path:
    """Build (once) folder/ckpt and folder/bundle; returns the bundle path (``built_once``)."""
    folder = Path(folder)
    built_once(folder, lambda d: _build_tiny_bundle(d, d / "bundle", size, style_size, width, tflite, fp16, seed))
    return folder / "bundle"


def built_once(folder: str | os.PathLike, build, done: str = "bundle/" + mf.MANIFEST) -> Path:
    """``build(folder)`` once among the processes that share ``folder`` (pytest-xdist workers given
    conftest's ``shared_tmp``): the first holds a lock on folder/.lock while it builds, the others
    wait for it and reuse what it built. ``done``: the file that exists once a build has finished
    (a bundle's manifest: the exporters write it last)."""
    import fcntl

    folder = Path(folder)
    if (folder / done).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes
        if not (folder / done).is_file():
            build(folder)
    return folder


def _build_tiny_bundle(folder: Path, bundle: Path, size, style_size, width, tflite, fp16, seed) -> Path:
    import shutil

    import torch

    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    shutil.rmtree(folder / "bundle.tmp", ignore_errors=True)   # a build that was interrupted
    torch.manual_seed(seed)
    cfg = default_config("magenta-mobile", width=width)
    model = build(cfg).eval()
    # give the CIN head some spread so outputs are not flat
    with torch.no_grad():
        for p in model.transformer.head.parameters():
            p.mul_(3.0)
    ckpt = save_checkpoint(model, cfg, folder / "ckpt")
    tmp = folder / "bundle.tmp"
    (tmp / "onnx").mkdir(parents=True, exist_ok=True)
    c = torch.rand(1, 3, size, size)
    s = torch.rand(1, 3, style_size, style_size)
    b = torch.rand(1, 100, 1, 1)
    arts = []

    def add(model_name, fmt, prec, rel, inputs, outputs):
        p = tmp / rel
        arts.append({"model": model_name, "format": fmt, "precision": prec, "path": rel,
                     "bytes": mf.size_path(p), "sha256": mf.sha256_path(p), "inputs": inputs, "outputs": outputs})

    t_in = [io_entry("content_image", [1, 3, size, size], "NCHW"), io_entry("style_bottleneck", [1, 100, 1, 1], "NCHW", None)]
    t_out = [io_entry("stylized_image", [1, 3, size, size], "NCHW")]
    p_in = [io_entry("style_image", [1, 3, style_size, style_size], "NCHW")]
    p_out = [io_entry("style_bottleneck", [1, 100, 1, 1], "NCHW", None)]
    export_onnx(model.transformer, (c, b), ["content_image", "style_bottleneck"], ["stylized_image"],
                tmp / "onnx/transformer.fp32.onnx")
    add("transformer", "onnx", "fp32", "onnx/transformer.fp32.onnx", t_in, t_out)
    export_onnx(model.predictor, (s,), ["style_image"], ["style_bottleneck"], tmp / "onnx/predictor.fp32.onnx")
    add("predictor", "onnx", "fp32", "onnx/predictor.fp32.onnx", p_in, p_out)
    if fp16:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
        m16 = convert_float_to_float16(onnx.load(str(tmp / "onnx/transformer.fp32.onnx")), keep_io_types=True)
        onnx.save(m16, str(tmp / "onnx/transformer.fp16.onnx"))
        add("transformer", "onnx", "fp16", "onnx/transformer.fp16.onnx", t_in, t_out)
    if tflite:
        (tmp / "tflite").mkdir(exist_ok=True)
        nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous()  # noqa: E731
        export_tflite(_wrap_nhwc(model.transformer, "transformer"),
                      {"content_image": nhwc(c), "style_bottleneck": nhwc(b)}, tmp / "tflite/transformer.fp32.tflite")
        add("transformer", "tflite", "fp32", "tflite/transformer.fp32.tflite",
            [io_entry("content_image", [1, size, size, 3], "NHWC"),
             io_entry("style_bottleneck", [1, 1, 1, 100], "NHWC", None)],
            [io_entry("stylized_image", [1, size, size, 3], "NHWC")])
        export_tflite(_wrap_nhwc(model.predictor, "predictor"), {"style_image": nhwc(s)},
                      tmp / "tflite/predictor.fp32.tflite")
        add("predictor", "tflite", "fp32", "tflite/predictor.fp32.tflite",
            [io_entry("style_image", [1, style_size, style_size, 3], "NHWC")],
            [io_entry("style_bottleneck", [1, 1, 1, 100], "NHWC", None)])
    doc = {"schema": mf.SCHEMA, "kind": mf.KIND, "created_by": "tests/tiny.py",
           "source": {"checkpoint": str(ckpt.resolve()), "sha256": mf.sha256_path(ckpt / "model.safetensors"),
                      "preset": cfg["preset"], "config": cfg},
           "preprocessing": {"range": [0, 1]}, "tools": {}, "artifacts": arts}
    mf.validate(doc)
    (tmp / mf.MANIFEST).write_text(json.dumps(doc, indent=2))
    os.replace(tmp, bundle)
    return bundle


def nan_onnx(path: str | os.PathLike, size: int = 16) -> Path:
    """An image model (content_image -> stylized_image) whose output is all NaN: Log(-1 - x)."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("content_image", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("stylized_image", TensorProto.FLOAT, [1, 3, size, size])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    g = helper.make_graph([helper.make_node("Add", ["content_image", "one"], ["p"]),
                           helper.make_node("Neg", ["p"], ["n"]),
                           helper.make_node("Log", ["n"], ["stylized_image"])], "nan", [x], [y], [one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, str(path))
    return Path(path)


def opset9_onnx(path: str | os.PathLike, size: int = 16, scale: float = 0.5, bias: float = 0.25,
                nhwc: bool = False) -> Path:
    """An old-opset (9) image model: y = sigmoid(conv1x1(x)) or, with scale/bias, x*scale+bias."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    shape = [1, size, size, 3] if nhwc else [1, 3, size, size]
    x = helper.make_tensor_value_info("content_image", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("stylized_image", TensorProto.FLOAT, shape)
    cshape = [1, 1, 1, 3] if nhwc else [1, 3, 1, 1]
    s = numpy_helper.from_array(np.full(cshape, scale, np.float32), "s")
    b = numpy_helper.from_array(np.full(cshape, bias, np.float32), "b")
    g = helper.make_graph([helper.make_node("Mul", ["content_image", "s"], ["m"]),
                           helper.make_node("Add", ["m", "b"], ["stylized_image"])], "old", [x], [y], [s, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 4
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return Path(path)
