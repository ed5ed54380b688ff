"""ONNX Runtime runner (CPU execution provider; intra-op threads settable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime._deps import first_line, need, version
from styleport.runtime.base import Runner, RuntimeFailed, TensorSpec

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

    def _open(self):
        ort = need("onnxruntime")
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

    def precision(self):
        return onnx_precision(self.path) if not self.options.get("model_bytes") else None

    def versions(self):
        return {"onnxruntime": version("onnxruntime")}

    def describe(self):
        return {"threads": self.threads, "providers": ["CPUExecutionProvider"],
                "optimization": self.options.get("optimization", "all")}


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


_ = np  # numpy arrays pass straight through
