"""Exact graph rewrites that let ONNX Runtime's integer kernels pay (applied to the fp32 graph
before static quantization; each is an identity in real arithmetic).

| rewrite   | pattern (as our exporter writes it)                   | becomes                                                  |
|-----------|-------------------------------------------------------|----------------------------------------------------------|
| s2d       | Pad(reflect, K//2) -> Conv KxK (K >= 5, stride 1)      | Pad -> SpaceToDepth(s) -> Conv ceil((K+s-1)/s)² with      |
|           | at full resolution                                     | Cin*s² in, Cout*s² out -> DepthToSpace(s)                |
| subpixel  | Resize(nearest x2) -> Pad(reflect 1) -> Conv 3x3       | Pad(edge 1) -> Conv 3x3, 4*Cout out -> DepthToSpace(2)   |
| cin       | InstanceNormalization(x, 1, 0) -> Mul(gamma) ->        | InstanceNormalization(x, gamma, beta) (batch 1 only)     |
|           | Add(beta), gamma/beta [1,C] computed at run time       |                                                          |

Why: ORT's QLinearConv is an im2col + int8 GEMM (VNNI) that runs 3-4x faster than fp32 on convs
with tens of channels, but a 9x9 conv with 3 output channels at 384² (the last layer of every
transformer here) does an im2col of 81*Cin bytes per pixel and wastes 13 of 16 GEMM columns: it
ran *slower* than fp32 (johnson: 259 vs 222 ms for that one conv, 1 thread). Space-to-depth
trades pixels for channels (32->3 9x9 at 384² becomes 512->48 3x3 at 96²: 14 ms int8). A nearest
x2 upsample followed by a 3x3 conv equals a 3x3 conv with 4x the output channels on the low
resolution input (sub-pixel convolution); reflection padding of the upsampled image equals edge
padding of the small one. The conditional-norm affine folds into InstanceNormalization's own
scale/bias inputs, which ORT reads at run time: two full-size passes fewer per norm.

Shapes must be static (the export size) and divisible by the block size; patterns that do not
match exactly are left alone. ``rewrite`` returns the model and a list of what it changed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {i.name: i for i in self.g.initializer}
        self.consts = {n.output[0]: n for n in self.g.node if n.op_type == "Constant"}
        inferred = onnx.shape_inference.infer_shapes(model)
        self.shapes = {}
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            dims = v.type.tensor_type.shape.dim
            self.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self._n = 0
        self._taken = ({n.name for n in self.g.node} | {t for n in self.g.node for t in list(n.input) + list(n.output)}
                       | set(self.inits))

    def const(self, name: str):
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if name in self.consts:
            return numpy_helper.to_array(self.consts[name].attribute[0].t)
        return None

    def consumers(self, tensor: str) -> list:
        return [n for n in self.g.node if tensor in n.input]

    def producer(self, tensor: str):
        return next((n for n in self.g.node if tensor in n.output), None)

    def fresh(self, base: str) -> str:
        while True:
            self._n += 1
            name = f"{base}__rw{self._n}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def add_init(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.g.initializer.append(numpy_helper.from_array(array, name))
        self.inits[name] = self.g.initializer[-1]
        return name

    def replace(self, old: list, new: list) -> None:
        """Put ``new`` where the last of ``old`` was (every input of ``new`` exists there), drop ``old``."""
        gone = {tuple(o.output) for o in old}  # outputs identify a node (protobuf wrappers are not stable)
        nodes = list(self.g.node)
        at = max(i for i, n in enumerate(nodes) if tuple(n.output) in gone)
        keep = [n for n in nodes if tuple(n.output) not in gone]
        at = sum(1 for n in nodes[:at] if tuple(n.output) not in gone)
        del self.g.node[:]
        self.g.node.extend(keep[:at] + new + keep[at:])

    def toposort(self) -> None:
        """Stable topological order (a rewrite may put a producer after a consumer)."""
        nodes = list(self.g.node)
        ready = {i.name for i in self.g.input} | set(self.inits) | {""}
        ready |= {t for n in nodes for t in n.input if t not in {o for m in nodes for o in m.output}}
        out, pending = [], nodes
        while pending:
            rest = []
            for n in pending:
                if all(t in ready for t in n.input):
                    out.append(n)
                    ready.update(n.output)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise ValueError("graph has a cycle")
            pending = rest
        del self.g.node[:]
        self.g.node.extend(out)

    def drop_unused_inits(self) -> None:
        used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        keep = [i for i in self.g.initializer if i.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _plain_conv(node) -> bool:
    """Stride 1, no padding of its own, no dilation, one group."""
    return (node.op_type == "Conv" and list(_attr(node, "strides", [1, 1])) == [1, 1]
            and not any(_attr(node, "pads", [0, 0, 0, 0])) and list(_attr(node, "dilations", [1, 1])) == [1, 1]
            and _attr(node, "group", 1) == 1 and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _pads(g: _Graph, node):
    """(mode, [top, left, bottom, right]) of a 4-D Pad on H/W only, else None."""
    if node is None or node.op_type != "Pad" or len(node.input) < 2:
        return None
    p = g.const(node.input[1])
    if p is None or p.size != 8 or any(p[[0, 1, 4, 5]]):
        return None
    if len(node.input) > 3 and node.input[3]:
        return None  # axes given: not our exporter's form
    mode = _attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    return mode, [int(p[2]), int(p[3]), int(p[6]), int(p[7])]


def s2d_weights(w: np.ndarray, b: np.ndarray | None, s: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Weights of the space-to-depth form of a stride-1 KxK conv (input already padded).

    Output block (i, j) holds output pixels (s*i + ah, s*j + aw); its channel is
    (ah*s + aw)*Cout + o (DepthToSpace DCR). Input channel (bh*s + bw)*Cin + c (SpaceToDepth).
    Tap (u, v) of the new kernel reads padded input row s*(i+u) + bh, i.e. old tap kh = s*u + bh - ah."""
    cout, cin, k, k2 = w.shape
    assert k == k2
    kb = (k + s - 2) // s + 1
    out = np.zeros((s * s * cout, s * s * cin, kb, kb), dtype=w.dtype)
    for ah in range(s):
        for aw in range(s):
            for bh in range(s):
                for bw in range(s):
                    for u in range(kb):
                        kh = s * u + bh - ah
                        if not 0 <= kh < k:
                            continue
                        for v in range(kb):
                            kw = s * v + bw - aw
                            if not 0 <= kw < k:
                                continue
                            out[(ah * s + aw) * cout:(ah * s + aw + 1) * cout,
                                (bh * s + bw) * cin:(bh * s + bw + 1) * cin, u, v] = w[:, :, kh, kw]
    bias = None if b is None else np.tile(b, s * s)
    return out, bias


def subpixel_weights(w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """conv3x3(reflect_pad1(upsample_nearest2(x))) == depth_to_space2(conv3x3'(edge_pad1(x))).

    Output row 2i+a reads x rows: a=0 -> (i-1: w0), (i: w1+w2); a=1 -> (i: w0+w1), (i+1: w2)."""
    cout, cin, k, _ = w.shape
    assert k == 3
    A = [np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], w.dtype), np.array([[0, 0, 0], [1, 1, 0], [0, 0, 1]], w.dtype)]
    out = np.zeros((4 * cout, cin, 3, 3), dtype=w.dtype)
    for a in range(2):
        for c in range(2):
            out[(a * 2 + c) * cout:(a * 2 + c + 1) * cout] = np.einsum("uk,ockl,vl->ocuv", A[a], w, A[c])
    bias = None if b is None else np.tile(b, 4)
    return out, bias


def _s2d(g: _Graph, block, min_kernel: int = 5) -> list[str]:
    done = []
    for conv in [n for n in g.g.node if n.op_type == "Conv"]:
        if not _plain_conv(conv):
            continue
        w = g.const(conv.input[1])
        if w is None or w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] < min_kernel:
            continue
        pad = g.producer(conv.input[0])
        pp = _pads(g, pad)
        k = w.shape[2]
        if pp is None or pp[0] != "reflect" or pp[1] != [k // 2] * 4 or len(g.consumers(pad.output[0])) != 1:
            continue
        shape = g.shapes.get(pad.input[0])
        if not shape or len(shape) != 4 or None in shape[2:]:
            continue
        h, wd = shape[2], shape[3]
        s = block(w.shape[1], w.shape[0], k) if callable(block) else block
        if not s or s < 2 or h % s or wd % s or k % 2 == 0:
            continue
        b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        w2, b2 = s2d_weights(w, b, s)
        kb = w2.shape[2]
        need = s * (kb - 1)  # rows of padding the block conv reads beyond H (H + 2P when it fits)
        extra = need - 2 * (k // 2)
        nodes = []
        x = pad.output[0]
        if extra < 0:
            continue  # never for odd K >= 3 with s >= 2 (kept simple: no crop form)
        if extra > 0:
            xp = g.fresh("s2d_pad")
            nodes.append(helper.make_node("Pad", [x, g.add_init("s2d_pads", np.array([0, 0, 0, 0, 0, 0, extra, extra],
                                                                                    np.int64))],
                                          [xp], mode="constant", name=g.fresh("s2d_pad")))
            x = xp
        xs = g.fresh("s2d")
        nodes.append(helper.make_node("SpaceToDepth", [x], [xs], blocksize=s, name=g.fresh("s2d")))
        ins = [xs, g.add_init(conv.input[1] + "_s2d", w2)] + ([g.add_init("s2d_bias", b2)] if b2 is not None else [])
        yc = g.fresh("s2d_conv")
        nodes.append(helper.make_node("Conv", ins, [yc], kernel_shape=[kb, kb], name=conv.name + "_s2d"))
        nodes.append(helper.make_node("DepthToSpace", [yc], [conv.output[0]], blocksize=s, mode="DCR",
                                      name=g.fresh("d2s")))
        g.replace([conv], nodes)
        done.append(f"s2d: {conv.name} {w.shape[1]}->{w.shape[0]} {k}x{k} at {h}x{wd} -> "
                    f"{w2.shape[1]}->{w2.shape[0]} {kb}x{kb} at {h // s}x{wd // s}")
    return done


def _subpixel(g: _Graph) -> list[str]:
    done = []
    for conv in [n for n in g.g.node if n.op_type == "Conv"]:
        if not _plain_conv(conv):
            continue
        w = g.const(conv.input[1])
        if w is None or w.ndim != 4 or w.shape[2:] != (3, 3):
            continue
        pad = g.producer(conv.input[0])
        pp = _pads(g, pad)
        if pp is None or pp != ("reflect", [1, 1, 1, 1]) or len(g.consumers(pad.output[0])) != 1:
            continue
        rs = g.producer(pad.input[0])
        if rs is None or rs.op_type != "Resize" or len(g.consumers(rs.output[0])) != 1:
            continue
        mode = _attr(rs, "mode", b"nearest")
        ctm = _attr(rs, "coordinate_transformation_mode", b"half_pixel")
        nm = _attr(rs, "nearest_mode", b"round_prefer_floor")
        scales = g.const(rs.input[2]) if len(rs.input) > 2 and rs.input[2] else None
        if (mode not in (b"nearest", "nearest") or ctm not in (b"asymmetric", "asymmetric")
                or nm not in (b"floor", "floor") or scales is None or list(scales) != [1, 1, 2, 2]
                or (len(rs.input) > 3 and rs.input[3])):
            continue
        b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        w2, b2 = subpixel_weights(w, b)
        xp = g.fresh("subpixel_pad")
        yc = g.fresh("subpixel_conv")
        ins = [xp, g.add_init(conv.input[1] + "_subpixel", w2)] + (
            [g.add_init("subpixel_bias", b2)] if b2 is not None else [])
        nodes = [helper.make_node("Pad", [rs.input[0], g.add_init("edge_pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
                                  [xp], mode="edge", name=g.fresh("edge_pad")),
                 helper.make_node("Conv", ins, [yc], kernel_shape=[3, 3], name=conv.name + "_subpixel"),
                 helper.make_node("DepthToSpace", [yc], [conv.output[0]], blocksize=2, mode="DCR",
                                  name=g.fresh("d2s"))]
        g.replace([rs, pad, conv], nodes)
        done.append(f"subpixel: {rs.name} + {conv.name} {w.shape[1]}->{w.shape[0]} -> {w.shape[1]}->{4 * w.shape[0]} "
                    "at the low resolution")
    return done


def _cin(g: _Graph) -> list[str]:
    done = []
    batch = [g.shapes.get(i.name, [None])[0] for i in g.g.input]
    if any(b != 1 for b in batch):
        return done  # per-sample gamma/beta fold into the norm only at batch 1
    for norm in [n for n in g.g.node if n.op_type == "InstanceNormalization"]:
        scale, bias = g.const(norm.input[1]), g.const(norm.input[2])
        if scale is None or bias is None or not np.all(scale == 1) or not np.all(bias == 0):
            continue
        users = g.consumers(norm.output[0])
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        adds = g.consumers(mul.output[0])
        if len(adds) != 1 or adds[0].op_type != "Add":
            continue
        add = adds[0]
        gamma = next(i for i in mul.input if i != norm.output[0])
        beta = next(i for i in add.input if i != mul.output[0])
        c = g.shapes.get(norm.output[0], [None, None])[1]
        if c is None or any(g.shapes.get(t) not in ([1, c, 1, 1],) for t in (gamma, beta)):
            continue
        shape = g.add_init("cin_shape", np.array([c], np.int64))
        gs, bs = g.fresh("cin_gamma"), g.fresh("cin_beta")
        nodes = [helper.make_node("Reshape", [gamma, shape], [gs], name=g.fresh("cin_reshape")),
                 helper.make_node("Reshape", [beta, shape], [bs], name=g.fresh("cin_reshape")),
                 helper.make_node("InstanceNormalization", [norm.input[0], gs, bs], [add.output[0]],
                                  epsilon=_attr(norm, "epsilon", 1e-5), name=norm.name)]
        g.replace([norm, mul, add], nodes)
        done.append(f"cin: {norm.name} + {mul.name} + {add.name} -> one InstanceNormalization")
    return done


def _relu_first(g: _Graph) -> list[str]:
    """DepthToSpace -> Relu  ==  Relu -> DepthToSpace (a permutation commutes with an elementwise op):
    with Relu next to the conv, the int8 conv output gets the [0, max] range, not [min, max]."""
    done = []
    for d2s in [n for n in g.g.node if n.op_type == "DepthToSpace"]:
        users = g.consumers(d2s.output[0])
        if len(users) != 1 or users[0].op_type != "Relu" or d2s.output[0] in {o.name for o in g.g.output}:
            continue
        relu = users[0]
        mid = g.fresh("relu_first")
        nodes = [helper.make_node("Relu", [d2s.input[0]], [mid], name=relu.name),
                 helper.make_node("DepthToSpace", [mid], [relu.output[0]], blocksize=_attr(d2s, "blocksize"),
                                  mode="DCR", name=d2s.name)]
        g.replace([d2s, relu], nodes)
        done.append(f"relu first: {relu.name} moved ahead of {d2s.name}")
    return done


def default_block(cin: int, cout: int, k: int) -> int:
    """Block size of the space-to-depth form: 4 (the 9x9 convs at 384² become 3x3 convs at 96²)."""
    return 4


def rewrite(model: onnx.ModelProto, s2d=True, subpixel=True, cin=True, block=default_block) -> tuple[onnx.ModelProto, list[str]]:
    """Apply the rewrites in place of a copy of ``model``; return (model, notes)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    notes = []
    for on, fn in ((cin, _cin), (subpixel, _subpixel), (s2d, lambda g: _s2d(g, block)), (True, _relu_first)):
        if on:
            g = _Graph(m)
            notes += fn(g)
            g.drop_unused_inits()
    onnx.checker.check_model(m)
    return m, notes


# ---- calibrated: per-channel range equalization in front of instance norm -----------------------

def norm_feeders(model: onnx.ModelProto) -> list[tuple[str, str, str | None]]:
    """(conv node name, norm input tensor, DepthToSpace node name or None) for every
    Conv [-> DepthToSpace] -> InstanceNormalization chain whose conv output feeds only the norm."""
    g = _Graph(model)
    out = []
    for norm in [n for n in g.g.node if n.op_type == "InstanceNormalization"]:
        x = norm.input[0]
        p = g.producer(x)
        d2s = None
        if p is not None and p.op_type == "DepthToSpace" and _attr(p, "mode", b"DCR") in (b"DCR", "DCR"):
            d2s = p
            if len(g.consumers(p.input[0])) != 1:
                continue
            p = g.producer(p.input[0])
        if p is None or p.op_type != "Conv" or g.const(p.input[1]) is None or _attr(p, "group", 1) != 1:
            continue
        if len(g.consumers(x)) != 1:
            continue
        out.append((p.name, x, d2s.name if d2s is not None else None))
    return out


def channel_ranges(model: onnx.ModelProto, tensors: list[str], feeds: list[dict]) -> dict:
    """{tensor: (min [C], max [C], smallest per-image variance [C])} over ``feeds`` (ONNX Runtime,
    graph outputs added)."""
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    stats: dict = {}
    for f in feeds:
        outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, f)))
        for t in tensors:
            a = outs[t].astype(np.float64)
            new = (a.min(axis=(0, 2, 3)), a.max(axis=(0, 2, 3)), a.var(axis=(2, 3)).min(axis=0))
            old = stats.get(t)
            stats[t] = new if old is None else (np.minimum(old[0], new[0]), np.maximum(old[1], new[1]),
                                                np.minimum(old[2], new[2]))
    return stats


EPS_CHANGE = 1e-2  # largest relative change of a norm's sqrt(var + eps) that equalization may cause


def equalize_norm_inputs(model: onnx.ModelProto, feeds: list[dict]) -> tuple[onnx.ModelProto, list[str]]:
    """Scale and shift each output channel of a conv that feeds an instance norm so that every
    channel spans [-1, 1] on the calibration feeds: IN(a*x + d) == IN(x) for a > 0 (the norm removes
    any per-channel shift and scale; only its epsilon sees the new scale: var + eps/a² instead of
    var + eps). One per-tensor int8 scale at the conv output then fits every channel, instead of
    drowning the low-range ones (the reason instance norm input was kept float so far).

    The shift is exact; the scale is exact but for the norm's epsilon (eps/a² in place of eps).
    Each channel's scale is clamped so that sqrt(var + eps) changes by at most EPS_CHANGE for
    the lowest-variance calibration image (channels whose variance is near eps, where eps
    shapes the output, keep a scale near 1)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    chains = norm_feeders(m)
    if not chains:
        return m, []
    ranges = channel_ranges(m, [t for _, t, _ in chains], feeds)
    g = _Graph(m)
    notes = []
    for conv_name, tensor, d2s in chains:
        conv = next(n for n in g.g.node if n.name == conv_name)
        w = g.const(conv.input[1]).astype(np.float32)
        b = g.const(conv.input[2]).astype(np.float32) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0], np.float32)
        lo, hi, var = ranges[tensor]
        c = lo.shape[0]
        half = (hi - lo) / 2.0
        a = np.where(half > 0, 1.0 / np.maximum(half, 1e-30), 1.0)
        eps = next((float(_attr(n, "epsilon", 1e-5)) for n in g.g.node
                    if n.op_type == "InstanceNormalization" and n.input[0] == tensor), 1e-5)
        # |sqrt((var + eps/a²) / (var + eps)) - 1| <= EPS_CHANGE  <=>  a within [a_lo, a_hi]
        lo_r, hi_r = (1 - EPS_CHANGE) ** 2, (1 + EPS_CHANGE) ** 2
        a_hi = np.where(var + eps - lo_r * (var + eps) < eps,
                        np.sqrt(eps / np.maximum(eps - (1 - lo_r) * (var + eps), 1e-300)), np.inf)
        a_lo = np.sqrt(eps / ((hi_r - 1) * (var + eps) + eps))
        a = np.clip(a, a_lo, a_hi).astype(np.float32)
        mid = ((hi + lo) / 2.0).astype(np.float32)
        reps = w.shape[0] // c  # DepthToSpace DCR: conv channel j feeds norm channel j % C
        a_j, mid_j = np.tile(a, reps), np.tile(mid, reps)
        w2 = w * a_j[:, None, None, None]
        b2 = (b - mid_j) * a_j
        wn = g.add_init(conv.input[1] + "_eq", w2.astype(np.float32))
        bn = g.add_init((conv.input[2] if len(conv.input) > 2 and conv.input[2] else conv.input[1]) + "_eqb",
                        b2.astype(np.float32))
        while len(conv.input) < 3:
            conv.input.append("")
        conv.input[1], conv.input[2] = wn, bn
        clamped = int(np.sum(np.abs(a * half - 1) > 1e-3))
        notes.append(f"equalize: {conv_name} -> {tensor}: channel half-ranges {half.min():.3g}..{half.max():.3g} "
                     f"scaled to 1" + (f" ({clamped} of {c} clamped: variance near the norm's epsilon)" if clamped else ""))
    g.drop_unused_inits()
    onnx.checker.check_model(m)
    return m, notes


# ---- after quantization: data-movement ops on the 8-bit tensors -------------------------------

MOVERS = ("Pad", "DepthToSpace", "SpaceToDepth")  # ORT's QDQ fusions leave these in float (1.32)


def integer_movers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """DequantizeLinear -> (Pad reflect/edge | DepthToSpace | SpaceToDepth) -> QuantizeLinear becomes
    the op on the 8-bit tensor itself. These ops only move values, so with equal scale and zero
    point on both sides (minmax calibration: a permutation or a reflection keeps min and max) the
    pass is exact; where the calibrator gave the output other parameters (percentile, entropy), the
    output keeps the input's, as ORT does for the Reshape/Transpose it drops Q/DQ around. ORT's
    graph optimizer (1.32) leaves these three in float, so without this pass each costs a
    full-size float round trip; its CPU kernels take uint8."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = _Graph(m)
    notes = []
    outputs = {o.name for o in g.g.output}

    def params(node):
        return [g.const(node.input[i]) if len(node.input) > i and node.input[i] else None for i in (1, 2)]

    def compatible(dq, q) -> tuple[bool, bool]:
        """(can move, parameters equal)."""
        (s1, z1), (s2, z2) = params(dq), params(q)
        if any(x is None for x in (s1, z1, s2, z2)) or z1.dtype != z2.dtype or s1.size != 1 or s2.size != 1:
            return False, False
        return True, bool(np.array_equal(s1, s2) and np.array_equal(z1, z2))

    changed = True
    while changed:
        changed = False
        for node in list(g.g.node):
            if node.op_type not in MOVERS:
                continue
            if node.op_type == "Pad":
                pp = _pads(g, node)
                if pp is None or pp[0] not in ("reflect", "edge"):
                    continue
            dq = g.producer(node.input[0])
            users = g.consumers(node.output[0])
            if (dq is None or dq.op_type != "DequantizeLinear" or not users or node.output[0] in outputs
                    or any(u.op_type != "QuantizeLinear" for u in users)):
                continue
            checks = [compatible(dq, u) for u in users]
            if not all(ok for ok, _ in checks):
                continue
            readers = [n for u in users for n in g.consumers(u.output[0])]
            if not all(eq for _, eq in checks) and any(r.op_type != "DequantizeLinear" for r in readers):
                continue
            q_out = users[0].output[0]
            new = helper.make_node(node.op_type, [dq.input[0]] + list(node.input[1:]), [q_out], name=node.name)
            new.attribute.extend(node.attribute)
            for r in readers:
                for j, t in enumerate(r.input):
                    if t in {u.output[0] for u in users}:
                        r.input[j] = q_out
                if r.op_type == "DequantizeLinear":  # the 8-bit values now carry the input's scale
                    r.input[1], r.input[2] = dq.input[1], dq.input[2]
            g.replace([node] + users, [new])
            if not g.consumers(dq.output[0]) and dq.output[0] not in outputs:
                g.replace([dq], [])
            shared = "" if all(eq for _, eq in checks) else " (output takes the input's scale)"
            notes.append(f"integer {node.op_type}: {node.name}{shared}")
            changed = True
            break
    g.toposort()
    g.drop_unused_inits()
    onnx.checker.check_model(m)
    return m, notes


def _s2d_index(s: int, k: int) -> np.ndarray:
    """Row of the zero-padded KxK kernel (s-1 zeros before) each (ah, bh, u) tap of the block kernel reads."""
    kb = (k + s - 2) // s + 1
    ah, bh, u = np.meshgrid(np.arange(s), np.arange(s), np.arange(kb), indexing="ij")
    return (s * u + bh - ah + (s - 1)).reshape(-1).astype(np.int64)


def compact_s2d_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The space-to-depth kernel repeats each weight s² times (plus zeros): 28x the bytes of a 9x9
    kernel at s=4. Store the original KxK int8 kernel instead and rebuild the block kernel with
    Pad/Gather/Reshape/Transpose on int8 constants, which ORT folds once at session start (before
    its QDQ fusion, so the conv still becomes QLinearConv). Exact: the per-channel int8 block
    kernel is a gather of the per-channel int8 original (each block channel holds every tap of
    one original output channel, so their scales agree); checked before replacing."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = _Graph(m)
    notes = []
    for conv in [n for n in g.g.node if n.op_type == "Conv" and n.name.endswith("_s2d")]:
        dq = g.producer(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in g.inits:
            continue
        if len(g.consumers(dq.input[0])) != 1 or len(g.consumers(dq.output[0])) != 1:
            continue
        wq = g.const(dq.input[0])
        s2d = g.producer(conv.input[0])
        s2d = g.producer(s2d.input[0]) if s2d is not None and s2d.op_type == "DequantizeLinear" else s2d
        if s2d is None or s2d.op_type != "SpaceToDepth":
            continue
        s = int(_attr(s2d, "blocksize"))
        d2s = g.consumers(conv.output[0])
        co4, ci4, kb, _ = wq.shape
        cout, cin = co4 // (s * s), ci4 // (s * s)
        k = s * (kb - 1) + 1  # the largest kernel with this block kernel; the check below makes it exact
        if not d2s:
            continue
        # original kernel from the (ah, aw) = (0, 0) block rows: kh = s*u + bh
        w0 = np.zeros((cout, cin, k, k), wq.dtype)
        for kh in range(k):
            for kw in range(k):
                u, bh = divmod(kh, s)
                v, bw = divmod(kw, s)
                w0[:, :, kh, kw] = wq[:cout, (bh * s + bw) * cin:(bh * s + bw + 1) * cin, u, v]
        idx = _s2d_index(s, k)
        pad = s * kb - k
        wpad = np.pad(w0, ((0, 0), (0, 0), (s - 1, pad), (s - 1, pad)))
        rebuilt = wpad[:, :, idx][:, :, :, idx].reshape(cout, cin, s, s, kb, s, s, kb)
        rebuilt = rebuilt.transpose(2, 5, 0, 3, 6, 1, 4, 7).reshape(wq.shape)
        if not np.array_equal(rebuilt, wq):
            continue  # not the form s2d_weights wrote: leave it
        base = dq.input[0]
        names = [g.fresh(base + "_k") for _ in range(6)]
        nodes = [
            helper.make_node("Pad", [g.add_init(base + "_orig", w0),
                                     g.add_init("s2d_wpads", np.array([0, 0, s - 1, s - 1, 0, 0, pad, pad], np.int64))],
                             [names[0]], mode="constant", name=g.fresh("s2d_wpad")),
            helper.make_node("Gather", [names[0], g.add_init("s2d_idx", idx)], [names[1]], axis=2, name=g.fresh("s2d_wg")),
            helper.make_node("Gather", [names[1], g.add_init("s2d_idx", idx)], [names[2]], axis=3, name=g.fresh("s2d_wg")),
            helper.make_node("Reshape", [names[2], g.add_init("s2d_w8", np.array([cout, cin, s, s, kb, s, s, kb], np.int64))],
                             [names[3]], name=g.fresh("s2d_wr")),
            helper.make_node("Transpose", [names[3]], [names[4]], perm=[2, 5, 0, 3, 6, 1, 4, 7], name=g.fresh("s2d_wt")),
            helper.make_node("Reshape", [names[4], g.add_init("s2d_w4", np.array(wq.shape, np.int64))],
                             [names[5]], name=g.fresh("s2d_wr")),
        ]
        new_dq = onnx.NodeProto()
        new_dq.CopyFrom(dq)
        new_dq.input[0] = names[5]
        g.replace([dq], nodes + [new_dq])
        notes.append(f"compact s2d weights: {conv.name} {wq.size} -> {w0.size} int8 values")
    g.toposort()
    g.drop_unused_inits()
    onnx.checker.check_model(m)
    return m, notes
