"""ONNX Runtime runner (CPU execution provider; intra-op threads settable).

``profile()`` uses ONNX Runtime's own session profiler (``SessionOptions.enable_profiling``) on a
second session with the same options: per-node kernel times of the *optimized* graph (so a fused
DQ -> Conv -> Q group shows as one QLinearConv, a fused Conv + Relu as one Conv), one warm-up run
excluded, summed by op type (base.op_profile). The per-node times are wall times of each kernel
(parallel inside with ``threads`` > 1); what is left of a run (scheduling, the API call, output
copies) shows as ``coverage`` < 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime.runners.deps import first_line, need, version
from styleport.runtime.runners.base import Runner, RuntimeFailed, TensorSpec, op_profile

ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(bool)": "bool"}


def _spec(arg) -> TensorSpec:
    shape = [d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) and d else None)
             for d in (arg.shape or [])]
    return TensorSpec(arg.name, shape, ORT_DTYPES.get(arg.type, arg.type))


class OrtRunner(Runner):
    """Options: ``optimization`` ("all" default, "basic", "extended", "disable"), ``model_bytes``
    (run a serialized model instead of the file, used by the layer-wise tool)."""

    name = runtime = "onnxruntime"
    formats = ("onnx",)
    imports = ("onnxruntime",)

    def _session_options(self, ort):
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        level = self.options.get("optimization", "all")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        so.log_severity_level = 3
        return so

    def _open(self):
        ort = need("onnxruntime")
        so = self._session_options(ort)
        src = self.options.get("model_bytes") or str(self.path)
        try:
            self.sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise RuntimeFailed(f"onnxruntime cannot load {Path(str(self.path)).name}: {first_line(e)}") from None
        self._inputs = [_spec(a) for a in self.sess.get_inputs()]
        self._outputs = [_spec(a) for a in self.sess.get_outputs()]
        self._out_names = [s.name for s in self._outputs]

    def _close(self):
        self.sess = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        try:
            outs = self.sess.run(self._out_names, feeds)
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"onnxruntime failed to run {Path(str(self.path)).name}: {first_line(e)}") from None
        return dict(zip(self._out_names, outs))

    def profile(self, feeds, runs: int = 10):
        import json
        import os
        import tempfile
        ort = need("onnxruntime")
        runs = max(1, int(runs))
        so = self._session_options(ort)
        so.enable_profiling = True
        src = self.options.get("model_bytes") or str(self.path)
        with tempfile.TemporaryDirectory(prefix="styleport-ortprof-") as td:
            so.profile_file_prefix = os.path.join(td, "ort")
            try:
                sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
                for _ in range(runs + 1):  # the first run (allocations, weight prepacking) is left out
                    sess.run(self._out_names, feeds)
                path = sess.end_profiling()
                with open(path) as f:
                    events = json.load(f)
            except Exception as e:  # noqa: BLE001
                raise RuntimeFailed(f"onnxruntime profiling of {Path(str(self.path)).name} failed: {first_line(e)}") from None
        return summarize_ort_profile(events, runs, self.threads)

    def precision(self):
        return onnx_precision(self.path) if not self.options.get("model_bytes") else None

    def versions(self):
        return {"onnxruntime": version("onnxruntime")}

    def describe(self):
        return {"threads": self.threads, "providers": ["CPUExecutionProvider"],
                "optimization": self.options.get("optimization", "all")}


def summarize_ort_profile(events: list, runs: int, threads=None) -> dict:
    """base.op_profile dict from ORT profiler events: the last ``runs`` "model_run" events and the
    "<node>_kernel_time" events inside each of them."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[-runs:]
    if not model_runs:
        raise RuntimeFailed("onnxruntime profile holds no model_run event")
    kernels = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")),
                     key=lambda e: e["ts"])
    per_node: dict[tuple[str, str], float] = {}
    per_run = []
    for run in model_runs:
        t0, t1 = run["ts"], run["ts"] + run["dur"]
        inside = [e for e in kernels if t0 <= e["ts"] <= t1]
        per_run.append(sum(e["dur"] for e in inside) / run["dur"] if run["dur"] else 0.0)
        for e in inside:
            key = (e["name"][: -len("_kernel_time")], (e.get("args") or {}).get("op_name", "?"))
            per_node[key] = per_node.get(key, 0.0) + e["dur"] / 1000.0
    n = len(model_runs)
    total = sum(e["dur"] for e in model_runs) / 1000.0 / n
    nodes = [(name, op, ms / n) for (name, op), ms in per_node.items()]
    notes = ["ONNX Runtime session profiler (SessionOptions.enable_profiling), CPU execution provider: kernel "
             "times of the optimized graph (fused QDQ groups show as QLinear* ops); first run excluded",
             f"{threads or 'default'} intra-op threads; per-node times are wall times of each kernel; "
             "a second session with the benchmark's options, profiled after the latency loop"]
    out = op_profile("onnxruntime", n, total, nodes, notes)
    out["coverage"] = round(float(np.median(per_run)), 4)  # median over runs: one preempted run does not decide
    return out


def onnx_precision(path) -> str | None:
    """int8 when quantized weights or QDQ/QLinear ops are present, fp16 when float16 weights are,
    else fp32. None when the onnx package is missing."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001
        return None
    T = onnx.TensorProto
    types = {i.data_type for i in m.graph.initializer}
    ops = {n.op_type for n in m.graph.node}
    if types & {T.INT8, T.UINT8} or ops & {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                                            "ConvInteger", "MatMulInteger"}:
        return "int8"
    if T.FLOAT16 in types:
        return "fp16"
    return "fp32"


