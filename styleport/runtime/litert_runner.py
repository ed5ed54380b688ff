"""LiteRT (TFLite) runner: ``ai-edge-litert``, else ``tflite-runtime``, else ``tf.lite``.

XNNPACK is on by default; ``xnnpack=False`` uses the builtin kernels only
(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES). ``preserve_all_tensors=True`` keeps every
intermediate tensor readable (layer-wise parity; slower, and it disables XNNPACK's fusion).

Inputs are named by the model's signature when it has one (litert-torch names them after the
keyword arguments), else by tensor names (Google's Magenta files: "content_image",
"mobilenet_conv/Conv/BiasAdd").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime._deps import first_line, version
from styleport.runtime.base import Runner, RuntimeFailed, RuntimeUnavailable, TensorSpec


def load_interpreter_module():
    """(module with Interpreter, package name). Raises RuntimeUnavailable with an install hint."""
    errors = []
    for mod, pkg in (("ai_edge_litert.interpreter", "ai-edge-litert"),
                     ("tflite_runtime.interpreter", "tflite-runtime")):
        try:
            import importlib
            return importlib.import_module(mod), pkg
        except ImportError as e:
            errors.append(f"{pkg}: {e}")
    try:
        import tensorflow as tf  # noqa: F401 - last resort, deprecated interpreter
        return tf.lite, "tensorflow"
    except ImportError:
        pass
    raise RuntimeUnavailable("no TFLite interpreter can be imported (" + "; ".join(errors)
                             + "); install it: pip install ai-edge-litert")


def _spec(d: dict, name: str) -> TensorSpec:
    sig = d.get("shape_signature")
    shape = [int(v) for v in d["shape"]]
    if sig is not None and len(sig) == len(shape):
        shape = [int(s) if s > 0 else None for s in sig]
    q = d.get("quantization") or (0.0, 0)
    dtype = np.dtype(d["dtype"]).name
    quant = (float(q[0]), int(q[1])) if dtype in ("int8", "uint8", "int16") and q[0] else None
    return TensorSpec(name, shape, dtype, quantization=quant)


class LiteRTRunner(Runner):
    name = runtime = "litert"
    formats = ("tflite",)
    imports = ("ai_edge_litert.interpreter",)

    def _open(self):
        mod, self.package = load_interpreter_module()
        kw = {"model_path": str(self.path)}
        if self.threads:
            kw["num_threads"] = int(self.threads)
        self.xnnpack = bool(self.options.get("xnnpack", True))
        if not self.xnnpack:
            resolver = getattr(mod, "OpResolverType", None)
            if resolver is None:
                raise RuntimeUnavailable(f"{self.package} cannot switch XNNPACK off (no OpResolverType)")
            kw["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if self.options.get("preserve_all_tensors"):
            kw["experimental_preserve_all_tensors"] = True
        try:
            it = mod.Interpreter(**kw)
            it.allocate_tensors()
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"LiteRT cannot load {Path(str(self.path)).name}: {first_line(e)}") from None
        self.it = it
        sigs = it.get_signature_list() if hasattr(it, "get_signature_list") else {}
        key = self.options.get("signature") or ("serving_default" if "serving_default" in sigs
                                                else (next(iter(sigs)) if len(sigs) == 1 else None))
        details = {d["index"]: d for d in it.get_input_details() + it.get_output_details()}
        if key is not None:
            sr = it.get_signature_runner(key)
            ins = [(n, details.get(v["index"], v)) for n, v in sr.get_input_details().items()]
            outs = [(n, details.get(v["index"], v)) for n, v in sr.get_output_details().items()]
        else:
            ins = [(d["name"], d) for d in it.get_input_details()]
            outs = [(d["name"], d) for d in it.get_output_details()]
        self.signature = key
        self._in = [(n, d["index"]) for n, d in ins]
        self._out = [(n, d["index"]) for n, d in outs]
        self._inputs = [_spec(d, n) for n, d in ins]
        self._outputs = [_spec(d, n) for n, d in outs]
        self._index = dict(self._in)
        self._shapes = {n: tuple(int(v) for v in d["shape"]) for n, d in ins}

    def _close(self):
        self.it = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def _resize(self, feeds):
        changed = False
        for name, arr in feeds.items():
            if tuple(arr.shape) != self._shapes[name]:
                self.it.resize_tensor_input(self._index[name], list(arr.shape), strict=True)
                self._shapes[name] = tuple(arr.shape)
                changed = True
        if changed:
            self.it.allocate_tensors()

    def run(self, feeds):
        it = self.it
        try:
            for name, arr in feeds.items():
                if tuple(arr.shape) != self._shapes[name]:
                    self._resize(feeds)
                    break
            for name, idx in self._in:
                it.set_tensor(idx, feeds[name])
            it.invoke()
            return {name: it.get_tensor(idx) for name, idx in self._out}
        except KeyError as e:
            raise RuntimeFailed(f"LiteRT: no feed for input {e}") from None
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"LiteRT failed to run {Path(str(self.path)).name}: {first_line(e)}") from None

    def precision(self):
        try:
            types = {np.dtype(d["dtype"]).name for d in self.it.get_tensor_details()}
        except Exception:  # noqa: BLE001
            return None
        if types & {"int8", "uint8"}:
            return "int8"
        if "float16" in types:
            return "fp16"
        return "fp32"

    def versions(self):
        return {self.package: version(self.package)}

    def describe(self):
        return {"threads": self.threads, "xnnpack": self.xnnpack, "interpreter": self.package,
                "signature": self.signature}
