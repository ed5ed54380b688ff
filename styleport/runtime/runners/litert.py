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

from styleport.runtime.runners.deps import first_line, version
from styleport.runtime.runners.base import Runner, RuntimeFailed, RuntimeUnavailable, TensorSpec


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

    def profile(self, feeds: dict, runs: int = 10) -> dict | None:
        """Delegate coverage of this interpreter (partitions, ops XNNPACK took, ops left to the
        builtin kernels) and per-op times from LiteRT's own profiler (runtime/runners/litert_profile.py)."""
        from styleport.runtime.runners import litert_profile as LP
        notes, coverage, run = [], None, None
        if self.package != "ai-edge-litert":
            notes.append(f"{self.package}: delegate coverage and per-op times need ai-edge-litert")
        else:
            coverage = LP.delegation(self.it)
            if self.xnnpack:
                notes.append(f"delegate coverage from this interpreter: {coverage['delegated']} of {coverage['ops']} "
                             f"ops in XNNPACK, {coverage['partitions']} partition(s); fallback (builtin kernels): "
                             + (", ".join(f"{k} x{v}" for k, v in coverage["fallback"].items()) or "none"))
            else:
                notes.append("XNNPACK off (--no-xnnpack): every op runs in TFLite's builtin kernels")
        why = LP.profiler_unavailable() if coverage is not None else "no per-op source"
        if why is None:
            session = None
            try:
                session = LP.CompiledModelSession(str(self.path), self.threads, self.xnnpack, self.signature)
                session.set_inputs(feeds, order=[n for n, _ in self._in])
                run = session.profile(runs)
                run.fully_accelerated = session.fully_accelerated() if self.xnnpack else None
            except Exception as e:  # noqa: BLE001 - the profile says why it has no times
                why, run = f"LiteRT profiler failed: {first_line(e)}", None
            finally:
                if session is not None:
                    session.close()
        wall = None
        if run is None:
            notes.append(f"no per-op times: {why}")
            import time
            t = []
            for _ in range(runs):
                t0 = time.perf_counter()
                self.run(feeds)
                t.append((time.perf_counter() - t0) * 1e3)
            wall = sum(t) / len(t)
            notes.append(f"total_ms: mean wall clock of {runs} runs of this interpreter")
        else:
            notes.append(f"per-op times: LiteRT's profiler (C API CompiledModel, CPU/XNNPACK, {self.threads or 1} "
                         f"thread(s), these feeds), mean ms per run over {runs} runs; delegated ops carry XNNPACK's "
                         "own operator names, ops left to the builtin kernels their TFLite names + ' (builtin kernel)'")
            notes.append("total_ms: LiteRT's 'Invoke' event of a profiled run (profiling adds a little time); "
                         "ops_ms: the per-op times added up; the rest (coverage < 1) is the interpreter's own "
                         "per-invoke cost, about 0.2 ms")
        names = {}
        if coverage is not None:
            ops = self.it._get_ops_details()
            td = {d["index"]: d["name"] for d in self.it.get_tensor_details()}
            names = {o["index"]: f"node {o['index']} -> {td.get(o['outputs'][0], '?')}" for o in ops if len(o["outputs"])}
        return LP.build_profile(coverage, run, runs, wall, notes, node_names=names)
