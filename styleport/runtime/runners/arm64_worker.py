"""The worker the arm64 runners start (runtime/runners/arm64.py): run by the aarch64 sysroot's
python3.11 under qemu-aarch64, or by any Python that has numpy and the runtime package (the
benchmark runs it on x86 too, for the same API on both sides). Standalone: it imports nothing of
styleport, which is not installed in the sysroot.

Protocol: one JSON request per line on stdin, one JSON reply per line on the original stdout
(anything a native library prints goes to stderr). Arrays travel as .npy files.

    {"op": "open", "runtime": "litert"|"onnxruntime", "model": PATH, "threads": N|null,
     "xnnpack": true, "fp16": false, "signature": null, "optimization": "all"}
        -> {"ok": true, "inputs": [details], "outputs": [details], "precision": ..., "versions": {...}}
    {"op": "run", "inputs": {name: PATH.npy}, "outdir": DIR}
        -> {"ok": true, "outputs": {name: PATH.npy}}
    {"op": "close"}

LiteRT runs through the Interpreter API (as the x86 ``litert`` runner does) unless ``fp16`` is set:
then through a CompiledModel on the CPU accelerator with XNNPACK's FORCE_FP16 flag (with its QS8
and QU8 defaults kept), the arithmetic of Android's fp16-allowed CPU inference.
"""

import json
import os
import sys

# XNNPACK delegate flags (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h)
XNN_QS8, XNN_QU8, XNN_FORCE_FP16 = 0x1, 0x2, 0x4


def _details(d, name):
    import numpy as np
    q = d.get("quantization") or (0.0, 0)
    sig = d.get("shape_signature")
    return {"name": name, "shape": [int(v) for v in d["shape"]],
            "shape_signature": None if sig is None else [int(v) for v in sig],
            "dtype": np.dtype(d["dtype"]).name, "quantization": [float(q[0]), int(q[1])]}


class LiteRT:
    def __init__(self, req):
        import numpy as np
        from ai_edge_litert import interpreter as mod
        self.np = np
        kw = {"model_path": req["model"]}
        if req.get("threads"):
            kw["num_threads"] = int(req["threads"])
        if not req.get("xnnpack", True):
            kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = mod.Interpreter(**kw)
        it.allocate_tensors()
        self.it = it
        sigs = it.get_signature_list()
        key = req.get("signature") or ("serving_default" if "serving_default" in sigs
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
        self.inputs = [_details(d, n) for n, d in ins]
        self.outputs = [_details(d, n) for n, d in outs]
        self.shapes = {n: tuple(d["shape"]) for n, d in zip((n for n, _ in ins), self.inputs)}
        types = {np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
        self.precision = "int8" if types & {"int8", "uint8"} else ("fp16" if "float16" in types else "fp32")
        self.cm = None
        self.fp16 = bool(req.get("fp16"))
        if self.fp16:
            self._open_compiled(req)

    def _open_compiled(self, req):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options
        cpu = CpuOptions(num_threads=int(req.get("threads") or 1),
                         xnnpack_flags=XNN_QS8 | XNN_QU8 | XNN_FORCE_FP16)
        self.cm = CompiledModel.from_file(req["model"], options=Options(
            hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu))
        sigs = self.cm.get_signature_list()
        self.cm_key = self.signature if self.signature in sigs else next(iter(sigs))
        self.cm_index = self.cm.get_signature_index(self.cm_key)
        self.cm_inputs = list(sigs[self.cm_key]["inputs"])
        self.cm_outputs = list(sigs[self.cm_key]["outputs"])
        names = [n for n, _ in self._in]
        if sorted(self.cm_inputs) != sorted(names):  # no signature: tensor names on both sides
            raise RuntimeError(f"CompiledModel inputs {self.cm_inputs} do not match the interpreter's {names}")
        self.cm_shapes = dict(self.shapes)

    def _run_compiled(self, feeds):
        np, cm = self.np, self.cm
        for i, name in enumerate(self.cm_inputs):
            shape = tuple(feeds[name].shape)
            if shape != self.cm_shapes[name]:
                cm.resize_input_tensor(i, list(shape), self.cm_index, strict=False)
                self.cm_shapes[name] = shape
        ib = cm.create_input_buffers(self.cm_index)
        ob = cm.create_output_buffers(self.cm_index)
        for b, name in zip(ib, self.cm_inputs):
            b.write(np.ascontiguousarray(feeds[name]))
        cm.run_by_index(self.cm_index, ib, ob)
        det = cm.get_output_tensor_details(self.cm_key)
        out = {}
        for b, name in zip(ob, self.cm_outputs):
            d = det[name]
            shape = [int(v) for v in d["shape"]]
            out[name] = np.asarray(b.read(int(np.prod(shape)), np.dtype(d["dtype"]))).reshape(shape)
        return out

    def run(self, feeds):
        if self.cm is not None:
            return self._run_compiled(feeds)
        it = self.it
        if any(tuple(a.shape) != self.shapes[n] for n, a in feeds.items()):
            idx = dict(self._in)
            for name, arr in feeds.items():
                it.resize_tensor_input(idx[name], list(arr.shape), strict=True)
                self.shapes[name] = tuple(arr.shape)
            it.allocate_tensors()
        for name, idx in self._in:
            it.set_tensor(idx, feeds[name])
        it.invoke()
        return {name: it.get_tensor(idx) for name, idx in self._out}

    def versions(self):
        from importlib.metadata import version
        return {"ai-edge-litert": version("ai-edge-litert")}

    def settings(self):
        return {"api": "CompiledModel (CPU, XNNPACK FORCE_FP16)" if self.fp16 else "Interpreter",
                "signature": self.signature}


class Ort:
    ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                  "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
                  "tensor(int64)": "int64", "tensor(bool)": "bool"}

    def __init__(self, req):
        import onnxruntime as ort
        so = ort.SessionOptions()
        if req.get("threads"):
            so.intra_op_num_threads = int(req["threads"])
            so.inter_op_num_threads = 1
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[req.get("optimization") or "all"]
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(req["model"], so, providers=["CPUExecutionProvider"])
        self.inputs = [self._d(a) for a in self.sess.get_inputs()]
        self.outputs = [self._d(a) for a in self.sess.get_outputs()]
        self.names = [d["name"] for d in self.outputs]
        self.precision = None   # read from the file on the host (onnx package)

    def _d(self, a):
        shape = [d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) and d else None)
                 for d in (a.shape or [])]
        return {"name": a.name, "shape": shape, "dtype": self.ORT_DTYPES.get(a.type, a.type)}

    def run(self, feeds):
        return dict(zip(self.names, self.sess.run(self.names, feeds)))

    def versions(self):
        import onnxruntime
        return {"onnxruntime": onnxruntime.__version__}

    def settings(self):
        return {"providers": ["CPUExecutionProvider"]}


def main():
    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import platform

    import numpy as np
    model = None
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "close":
                break
            if op == "open":
                model = (LiteRT if req["runtime"] == "litert" else Ort)(req)
                vers = model.versions()
                vers.update({"numpy": np.__version__, "python": platform.python_version()})
                reply = {"inputs": model.inputs, "outputs": model.outputs, "precision": model.precision,
                         "versions": vers, "machine": platform.machine(), "settings": model.settings()}
            elif op == "run":
                feeds = {n: np.load(p) for n, p in req["inputs"].items()}
                outs = model.run(feeds)
                reply = {"outputs": {}}
                for i, (name, arr) in enumerate(outs.items()):
                    path = os.path.join(req["outdir"], f"out{i}.npy")
                    np.save(path, np.asarray(arr))
                    reply["outputs"][name] = path
            else:
                raise ValueError(f"unknown op {op!r}")
            reply["ok"] = True
        except Exception as e:  # noqa: BLE001 - the host reports it as a runtime failure
            msg = str(e).strip().splitlines()
            reply = {"ok": False, "error": f"{type(e).__name__}: {msg[0] if msg else ''}"[:500]}
        reply_to.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
