"""Export-facing modules: the networks with the I/O names, layouts and op forms each format wants.

| format | layout | forms (see models/layers.py)                 | extra                              |
|--------|--------|----------------------------------------------|------------------------------------|
| onnx   | NCHW   | F.pad reflect, F.instance_norm (native ops)  |                                    |
| coreml | NCHW   | F.pad reflect, F.instance_norm (native ops)  |                                    |
| tflite | NHWC   | slices+concat pad (no flip), mean/var norm,  | channels-last tail: no TRANSPOSE;  |
|        |        | first/last conv: columns per step (phases)   | nearest upsample rewritten in the  |
|        |        |                                              | file (export/tflite_rewrite.py)    |
| executorch | NCHW | slices+concat pad, mean/var norm,          | one XNNPACK delegate               |
|        |        | identity-deconv nearest upsample,            |                                    |
|        |        | first/last conv: columns per step (phases)   |                                    |

The TFLite forms are chosen so that XNNPACK takes every op of the fp32 graph, in one delegate
partition: the flip of the older ``cat`` pad form lowers to REVERSE_V2 (builtin kernel, 8 of them
in a 9x9-padded net, 7 partitions on magenta-mobile), litert-torch's RESIZE_NEAREST_NEIGHBOR is not
an XNNPACK op either. The 3-channel last conv fills 3 of XNNPACK's 16 GEMM lanes; computing 4
output columns as 12 channels (layers.conv_phases_nhwc) makes it ~2.7x faster; the first conv of
magenta-mobile (8 channels) likewise with 2 columns.

I/O names (the bundle contract): ``content_image``, ``style_image``, ``style_bottleneck`` /
``style_weights``, ``stylized_image``; the predictor's output is ``style_bottleneck``.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from styleport.models.arbitrary import BOTTLENECK
from styleport.models.layers import set_forms
from styleport.models.transformer import TransformerNet

FORMS = {"onnx": ("native", "native"), "coreml": ("native", "native"), "tflite": ("slices", "meanvar"),
         "executorch": ("slices", "meanvar")}
# first and last conv of a transformer only (see export_module). ExecuTorch too: its XNNPACK delegate
# has the same 16-lane GEMM tiles (ExecuTorch vs LiteRT fp32: benchmarks/results/exported_vs_eager.json)
END_CONV_FORM = {"tflite": "phases", "executorch": "phases"}
UPSAMPLE = {"executorch": "deconv"}  # nearest-upsample form where not F.interpolate (models/layers.py)
LAYOUT = {"onnx": "NCHW", "coreml": "NCHW", "tflite": "NHWC", "executorch": "NCHW"}


def networks(model: nn.Module) -> list[str]:
    """Which networks a model exports: arbitrary presets export predictor and transformer."""
    return ["predictor", "transformer"] if getattr(model, "kind", "") == "arbitrary" else ["transformer"]


class _Transformer(nn.Module):
    def __init__(self, model, nhwc: bool):
        super().__init__()
        self.kind = model.kind
        self.nhwc = nhwc
        self.net = model.transformer.net if self.kind == "arbitrary" else model.net
        self.head = model.transformer.head if self.kind == "arbitrary" else None
        self.table = model.style_table if self.kind == "multi" else None
        self.net.channels_last_output = nhwc

    def _params(self, style):
        if self.kind == "arbitrary":
            return self.head(style.reshape(-1, BOTTLENECK))
        if self.kind == "multi":
            return style @ self.table
        return None

    def _run(self, content, style=None):
        x = content.permute(0, 3, 1, 2) if self.nhwc else content
        return self.net(x, self._params(style) if style is not None else None)


class SingleStyle(_Transformer):
    def forward(self, content_image):
        return self._run(content_image)


class MultiStyle(_Transformer):
    def forward(self, content_image, style_weights):
        return self._run(content_image, style_weights)


class ArbitraryTransfer(_Transformer):
    def forward(self, content_image, style_bottleneck):
        return self._run(content_image, style_bottleneck)


class Predictor(nn.Module):
    def __init__(self, model, nhwc: bool):
        super().__init__()
        self.predictor = model.predictor
        self.nhwc = nhwc

    def forward(self, style_image):
        if self.nhwc:
            b = self.predictor(style_image.permute(0, 3, 1, 2))
            return b.reshape(-1, 1, 1, BOTTLENECK)
        return self.predictor(style_image)


def export_module(model: nn.Module, network: str, fmt: str) -> nn.Module:
    """A deep copy of ``model``'s ``network`` wrapped for ``fmt`` (forms switched, eval mode)."""
    model = copy.deepcopy(model).eval()
    pad, norm = FORMS[fmt]
    set_forms(model, pad=pad, norm=norm, upsample=UPSAMPLE.get(fmt))
    if fmt in END_CONV_FORM:
        # the network's ends only: there the layout pass keeps the phases' reshape in NHWC; inside
        # the net, litert-torch wraps a phases conv's NCHW round trip in TRANSPOSE ops
        for m in model.modules():
            if isinstance(m, TransformerNet):
                m.conv1.form = m.deconv3.form = END_CONV_FORM[fmt]
    nhwc = LAYOUT[fmt] == "NHWC"
    if network == "predictor":
        return Predictor(model, nhwc).eval()
    cls = {"single": SingleStyle, "multi": MultiStyle, "arbitrary": ArbitraryTransfer}[model.kind]
    return cls(model, nhwc).eval()


def io_spec(model: nn.Module, network: str, fmt: str, size: tuple[int, int], style_size: int,
            dynamic: bool = False) -> tuple[list, list, tuple]:
    """(inputs, outputs, sample_args) for the manifest and for tracing."""
    nhwc = LAYOUT[fmt] == "NHWC"
    layout = LAYOUT[fmt]

    def img(name, h, w, rng=(0.0, 1.0)):
        shape = [1, h, w, 3] if nhwc else [1, 3, h, w]
        return {"name": name, "shape": shape, "dtype": "float32", "layout": layout, "range": list(rng)}

    def bottleneck():
        shape = [1, 1, 1, BOTTLENECK] if nhwc else [1, BOTTLENECK, 1, 1]
        return {"name": "style_bottleneck", "shape": shape, "dtype": "float32", "layout": layout, "range": None}

    g = torch.Generator().manual_seed(0)
    if network == "predictor":
        ins, outs = [img("style_image", style_size, style_size)], [bottleneck()]
    else:
        h, w = size
        dh, dw = ("H", "W") if dynamic else (h, w)
        ins = [img("content_image", dh, dw)]
        if model.kind == "arbitrary":
            ins.append(bottleneck())
        elif model.kind == "multi":
            ins.append({"name": "style_weights", "shape": [1, model.num_styles], "dtype": "float32",
                        "layout": "any", "range": [0.0, 1.0]})
        outs = [img("stylized_image", dh, dw)]
    sample = []
    for spec in ins:
        shape = [d if isinstance(d, int) else (size[0] if d == "H" else size[1]) for d in spec["shape"]]
        if spec["name"] == "style_weights":
            sample.append(torch.full(shape, 1.0 / shape[1]))
        elif spec["name"] == "style_bottleneck":
            sample.append(torch.randn(shape, generator=g))
        else:
            sample.append(torch.rand(shape, generator=g))
    return ins, outs, tuple(sample)


@contextlib.contextmanager
def quiet_torch_export():
    """The converters print progress bars, logs and warnings meant for their own developers, from
    Python and from C++ (straight to file descriptors 1 and 2). Send all of it to a temp file; the
    text is kept in ``CAPTURED`` so a failure's log can include it."""
    import logging
    import os
    import sys
    import tempfile
    import warnings
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")) as devnull:
                try:
                    yield
                finally:
                    devnull.close()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logging.disable(logging.NOTSET)
            sink.seek(0)
            CAPTURED[:] = [sink.read()[-20000:].decode("utf-8", "replace")]


CAPTURED: list = [""]
