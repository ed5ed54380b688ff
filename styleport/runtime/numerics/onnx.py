"""fp16 emulation of an ONNX artefact (see runtime/numerics/emulate.py for the modes).

The graph is rewritten once:
- every float initializer and Constant is rounded to fp16 (an fp16 artefact's are already) and
  held as float32; an fp16 artefact's internal Casts to float16 become Casts to float32, so the
  rewritten graph is float32 throughout;
- a Cast pair (to float16, back to float32) follows every graph input and every float output of
  every node, so each stored tensor is rounded to fp16 exactly once, as the op computed it;
- the value *before* each Cast pair is a graph output too (for the headroom table).

``fp16``: the rewritten graph runs in ONNX Runtime (CPU EP) with graph optimisations off, so no
Cast pair is fused away; each op computes in fp32 (ORT's CPU kernels accumulate in fp32).
Measured: ORT 1.32's own run of an fp16 artefact does *not* do this — its InsertCastTransformer
casts the fp16 weights to fp32 and, with optimisations on, drops the casts between nodes, so the
whole graph computes and stores in fp32 (8 Casts left in a 16-conv johnson graph).

``fp16-acc16``: ORT has no x86 kernel that accumulates in fp16, so the same rewritten graph runs in
``onnx.reference.ReferenceEvaluator`` (numpy) with Conv, Gemm, MatMul and InstanceNormalization
replaced by runtime/numerics/fp16.py's kernels (fp16 FMA accumulation; the norm as its rounded
decomposition) and every other op left to the reference implementation (fp32 inside, rounded by
the Cast pair after it).
"""

from __future__ import annotations

import numpy as np

from styleport.runtime.numerics.fp16 import conv2d, instance_norm, matmul, round16

PRE = "__pre16"
_FLOAT, _HALF = 1, 10


def _round_tensor(t):
    from onnx import numpy_helper
    a = numpy_helper.to_array(t)
    if a.dtype.kind == "f":
        new = numpy_helper.from_array(round16(a).astype(np.float32), t.name)
        t.CopyFrom(new)


def _labels(g) -> dict:
    """node name -> its weight's name for conv/matmul nodes (``net.conv1.conv2d.weight`` -> ``conv1``),
    so the headroom table can say which layer a row is."""
    inits = {t.name for t in g.initializer}
    out = {}
    for node in g.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1:
            w = node.input[1]
            if w in inits and "." in w:
                name = w[len("net."):] if w.startswith("net.") else w
                for tail in (".conv2d.weight", ".weight"):
                    if name.endswith(tail):
                        name = name[:-len(tail)]
                out[node.name] = name
    return out


def emulation_graph(model):
    """(rewritten ModelProto, [(tensor name, op type, node name)] in graph order)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for t in g.initializer:
        _round_tensor(t)
    for node in g.node:
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT16:
                    a.i = TensorProto.FLOAT
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
                    _round_tensor(a.t)
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if tt.elem_type == TensorProto.FLOAT16:
            tt.elem_type = TensorProto.FLOAT
    del g.value_info[:]
    m = shape_inference.infer_shapes(m)
    g = m.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    for t in g.initializer:
        types[t.name] = t.data_type
    outputs = {o.name for o in g.output}
    label = _labels(g)
    order, new_nodes = [], []

    def pair(name, op, node_name):
        """Rename the producer's output to name+PRE and add Cast pairs computing ``name``."""
        pre, half = name + PRE, name + "__h16"
        new_nodes.append(helper.make_node("Cast", [pre], [half], to=TensorProto.FLOAT16, name=f"{name}__to16"))
        new_nodes.append(helper.make_node("Cast", [half], [name], to=TensorProto.FLOAT, name=f"{name}__to32"))
        order.append((name, op, node_name))
        return pre

    g_inputs = [i for i in g.input if types.get(i.name) == TensorProto.FLOAT]
    renamed_inputs = {}
    for i in g_inputs:  # the feed is stored in fp16 too
        renamed_inputs[i.name] = i.name + "__in"
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in renamed_inputs:
                node.input[k] = name + "__in16"
    for i in g_inputs:
        new_nodes.append(helper.make_node("Cast", [i.name], [i.name + "__inh"], to=TensorProto.FLOAT16))
        new_nodes.append(helper.make_node("Cast", [i.name + "__inh"], [i.name + "__in16"], to=TensorProto.FLOAT))
    for node in g.node:
        outs = list(node.output)
        new_nodes.append(node)
        for k, name in enumerate(outs):
            if name and types.get(name) == TensorProto.FLOAT and node.op_type != "Constant":
                node.output[k] = pair(name, node.op_type, label.get(node.name, node.name or name))
    del g.node[:]
    g.node.extend(new_nodes)
    for name, _, _ in order:
        if name + PRE not in outputs:
            g.output.append(onnx.ValueInfoProto(name=name + PRE))
    return m, order


# --- acc16 kernels for the reference evaluator ---------------------------------------------------

def _acc16_ops(record):
    """OpRun classes for the reference evaluator; ``record(node_output, step, value)`` sees the
    inner steps of the decomposed InstanceNormalization."""
    from onnx.reference.op_run import OpRun

    class Conv(OpRun):
        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None, pads=None,
                 strides=None):
            if X.ndim != 4:
                raise NotImplementedError("fp16-acc16 emulation: only 2-D Conv is implemented")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else (auto_pad or "NOTSET")
            strides = list(strides or [1, 1])
            dil = list(dilations or [1, 1])
            k = W.shape[2:]
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                p = []
                for n, kk, s, d in zip(X.shape[2:], k, strides, dil):
                    total = max(0, (-(-n // s) - 1) * s + (kk - 1) * d + 1 - n)
                    small, big = total // 2, total - total // 2
                    p.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
            elif auto_pad == "VALID":
                p = [(0, 0), (0, 0)]
            else:
                pp = list(pads or [0, 0, 0, 0])
                p = [(pp[0], pp[2]), (pp[1], pp[3])]
            return (conv2d(X, W, B, strides, p, dil, int(group or 1), acc16=True),)

    class Gemm(OpRun):
        def _run(self, A, B, C=None, alpha=None, beta=None, transA=None, transB=None):
            a = A.T if transA else A
            b = B.T if transB else B
            if (alpha or 1.0) != 1.0 or (beta if beta is not None else 1.0) != 1.0:
                raise NotImplementedError("fp16-acc16 emulation: Gemm with alpha/beta != 1")
            return (matmul(a, b, C, acc16=True),)

    class MatMul(OpRun):
        def _run(self, A, B):
            return (matmul(A, B, acc16=True),)

    class InstanceNormalization(OpRun):
        def _run(self, x, s, bias, epsilon=None):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            eps = 1e-5 if epsilon is None else epsilon
            out = self.onnx_node.output[0]
            return (instance_norm(x, eps, tuple(range(2, x.ndim)), s.reshape(shape), bias.reshape(shape),
                                  steps=True, record=lambda step, v: record(out, step, v)),)

    return [Conv, Gemm, MatMul, InstanceNormalization]


def fp32_graph(model):
    """The artefact computed in fp32 (its weights as stored), every float node output exposed:
    the reference the emulated tensors are compared with."""
    import onnx
    from onnx import TensorProto, shape_inference
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m = shape_inference.infer_shapes(m)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(m.graph.value_info) + list(m.graph.output)}
    have = {o.name for o in m.graph.output}
    label = _labels(m.graph)
    order = []
    for node in m.graph.node:
        for o in node.output:
            if o and types.get(o) in (TensorProto.FLOAT, TensorProto.FLOAT16) and node.op_type != "Constant":
                order.append((o, node.op_type, label.get(node.name, node.name or o)))
                if o not in have:
                    m.graph.output.append(onnx.ValueInfoProto(name=o))
    return m, order


class OnnxEmulator:
    """Run an ONNX artefact in emulated fp16 (or, mode ``fp32``, as stored with fp32 arithmetic);
    ``run`` returns (outputs, [(name, op, node, value before rounding)]) in graph order."""

    def __init__(self, path_or_model, mode: str, threads: int | None = None):
        import onnx
        model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
        self.mode = mode
        self.output_names = [o.name for o in model.graph.output]
        self.pre = "" if mode == "fp32" else PRE
        self.model, self.order = fp32_graph(model) if mode == "fp32" else emulation_graph(model)
        if mode in ("fp16", "fp32"):
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.log_severity_level = 3
            if threads:
                so.intra_op_num_threads = int(threads)
            self.sess = ort.InferenceSession(self.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            self.ref = None
        else:
            from onnx.reference import ReferenceEvaluator
            self.sess = None
            self._inner: dict = {}
            self.ref = ReferenceEvaluator(self.model, new_ops=_acc16_ops(self._record))

    def _record(self, out, step, value):
        name = out[:-len(PRE)] if out.endswith(PRE) else out
        self._inner.setdefault(name, []).append((f"{name}/{step}", f"InstanceNormalization.{step}",
                                                 np.array(value, np.float32)))

    def run(self, feeds: dict) -> tuple[dict, list]:
        feeds = {k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
                 for k, v in feeds.items()}
        names = list(dict.fromkeys(self.output_names + [n + self.pre for n, _, _ in self.order]))
        if self.sess is not None:
            vals = self.sess.run(names, feeds)
        else:
            self._inner = {}
            vals = self.ref.run(names, feeds)
        res = dict(zip(names, vals))
        outs = {n: res[n] for n in self.output_names}
        layers = []
        for n, op, node in self.order:
            for iname, iop, v in (self._inner.get(n, []) if self.sess is None else []):
                layers.append((iname, iop, node, v))
            layers.append((n, op, node, np.asarray(res[n + self.pre], np.float32)))
        return outs, layers
