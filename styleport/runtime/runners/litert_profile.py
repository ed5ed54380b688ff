"""Where a LiteRT model spends its time: delegate coverage and per-op times, from LiteRT itself.

Two sources, each reporting what it can see:

* **Delegate coverage** (any ``ai_edge_litert.interpreter.Interpreter``): after XNNPACK is applied
  the interpreter keeps every original node and appends one DELEGATE node per partition; a node
  belongs to the partition whose outputs it feeds (walked back from each DELEGATE node's outputs
  to its inputs). Nodes in no partition ran in TFLite's builtin kernels (the "fallback" ops).
* **Per-op times**: LiteRT's own profiler, which the Python package does not expose. It is
  reached through LiteRT's C API in ``libLiteRt.so`` (the library the ``ai-edge-litert`` wheel
  ships) with ctypes: a CompiledModel on the CPU accelerator (XNNPACK) with the runtime option
  ``enable_profiling``, the same thread count, the caller's inputs. The profiler records XNNPACK's
  internal per-operator times (names like ``Convolution (NHWC, F32) IGEMM``) and the builtin ops'
  invoke times (TFLite names like ``REVERSE_V2``), plus one ``Invoke`` event per run, which is the
  ``total_ms`` reported. This is the data ``benchmark_model --enable_op_profiling`` prints.
  The C API's structs and option strings were read from LiteRT 2.2-2.3 sources; other versions
  are not called (a mismatch could crash the process): the profile then has coverage and no times.

What it cannot tell: XNNPACK op names are XNNPACK's (one TFLite op can become several, e.g. a
CONCATENATION of a pad runs as Copy ops; fused activations vanish), so per-op times are grouped
by XNNPACK's names, not mapped back to TFLite nodes. The profiled CompiledModel and the
Interpreter the benchmark times apply the same XNNPACK delegate but are two objects; the profile
reports its own run time next to the per-op sum, never the benchmark's.
"""

from __future__ import annotations

import collections
import ctypes as C
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from styleport.runtime.runners.deps import version

VERIFIED_VERSIONS = ("2.2.", "2.3.")
# LiteRtProfilerEventType (litert/c/litert_profiler_event.h)
EV_DEFAULT, EV_OPERATOR, EV_DELEGATE_OP, EV_DELEGATE_PROFILED_OP = 1, 2, 4, 8
LOCK_WRITE, LOCK_READ = 1, 0
HW_CPU = 1
BUILTIN_SUFFIX = " (builtin kernel)"


# ---------------------------------------------------------------------------- delegate coverage

def delegation(interpreter) -> dict:
    """Partitions and fallback ops of an allocated Interpreter (see module doc)."""
    ops = interpreter._get_ops_details()
    names = [o["op_name"] for o in ops]
    delegates = [i for i, n in enumerate(names) if n == "DELEGATE"]
    n_orig = len(ops) - len(delegates)
    producer = {int(t): i for i in range(n_orig) for t in ops[i]["outputs"]}
    owner: dict[int, int] = {}
    for d in delegates:
        stop = {int(t) for t in ops[d]["inputs"]}
        stack = [int(t) for t in ops[d]["outputs"]]
        while stack:
            t = stack.pop()
            if t in stop or t not in producer:
                continue
            node = producer[t]
            if node in owner:
                continue
            owner[node] = d
            stack += [int(x) for x in ops[node]["inputs"] if x >= 0]
    fallback = [i for i in range(n_orig) if i not in owner]
    return {
        "name": "XNNPACK" if delegates else None,
        "partitions": len(delegates),
        "ops": n_orig,
        "delegated": len(owner),
        "fallback": dict(collections.Counter(names[i] for i in fallback)),
        "fallback_nodes": [{"index": i, "op": names[i]} for i in fallback],
        "op_types": dict(collections.Counter(names[:n_orig])),
    }


# ---------------------------------------------------------------------------- LiteRT C API profiler

class _Mem(C.Structure):
    _fields_ = [("total", C.c_size_t), ("in_use", C.c_size_t), ("private", C.c_size_t)]


class _Event(C.Structure):  # ProfiledEventData
    _fields_ = [("tag", C.c_char_p), ("event_type", C.c_int), ("start_us", C.c_uint64),
                ("elapsed_us", C.c_uint64), ("begin_mem", _Mem), ("end_mem", _Mem),
                ("metadata1", C.c_uint64), ("metadata2", C.c_uint64), ("source", C.c_int)]


def profiler_unavailable() -> str | None:
    """Why per-op times cannot be taken here, or None when they can."""
    v = version("ai-edge-litert")
    if not v:
        return "ai-edge-litert is not installed"
    if not v.startswith(VERIFIED_VERSIONS):
        return f"ai-edge-litert {v}: the C API profiler path is verified on 2.2-2.3 only"
    if _lib_path() is None:
        return "libLiteRt.so not found in the ai-edge-litert package"
    return None


def _lib_path() -> str | None:
    try:
        import ai_edge_litert
    except ImportError:
        return None
    p = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
    return p if os.path.exists(p) else None


_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        lib = C.CDLL(_lib_path())
        P, S, I = C.c_void_p, C.c_size_t, C.c_int
        pp = C.POINTER(C.c_void_p)
        sigs = {
            "LiteRtCreateEnvironment": (I, P, pp),
            "LiteRtCreateModelFromFile": (P, C.c_char_p, pp),
            "LiteRtCreateOptions": (pp,),
            "LiteRtSetOptionsHardwareAccelerators": (P, I),
            "LiteRtCreateOpaqueOptions": (C.c_char_p, P, P, pp),
            "LiteRtAddOpaqueOptions": (P, P),
            "LiteRtCreateCompiledModel": (P, P, P, pp),
            "LiteRtCompiledModelIsFullyAccelerated": (P, C.POINTER(C.c_bool)),
            "LiteRtGetNumModelSignatures": (P, C.POINTER(S)),
            "LiteRtGetModelSignature": (P, S, pp),
            "LiteRtGetSignatureKey": (P, C.POINTER(C.c_char_p)),
            "LiteRtGetNumSignatureInputs": (P, C.POINTER(S)),
            "LiteRtGetNumSignatureOutputs": (P, C.POINTER(S)),
            "LiteRtGetSignatureInputName": (P, S, C.POINTER(C.c_char_p)),
            "LiteRtGetSignatureOutputName": (P, S, C.POINTER(C.c_char_p)),
            "LiteRtGetSignatureInputTensorByIndex": (P, S, pp),
            "LiteRtGetSignatureOutputTensorByIndex": (P, S, pp),
            "LiteRtGetRankedTensorType": (P, P),
            "LiteRtGetCompiledModelInputBufferRequirements": (P, S, S, pp),
            "LiteRtGetCompiledModelOutputBufferRequirements": (P, S, S, pp),
            "LiteRtCreateManagedTensorBufferFromRequirements": (P, P, P, pp),
            "LiteRtGetTensorBufferSize": (P, C.POINTER(S)),
            "LiteRtLockTensorBuffer": (P, pp, I),
            "LiteRtUnlockTensorBuffer": (P,),
            "LiteRtRunCompiledModel": (P, S, S, P, S, P),
            "LiteRtCompiledModelGetProfiler": (P, pp),
            "LiteRtStartProfiler": (P,),
            "LiteRtStopProfiler": (P,),
            "LiteRtResetProfiler": (P,),
            "LiteRtGetNumProfilerEvents": (P, C.POINTER(I)),
            "LiteRtGetProfilerEvents": (P, I, P),
        }
        for name, args in sigs.items():
            f = getattr(lib, name)
            f.argtypes, f.restype = list(args), C.c_int
        for name in ("LiteRtDestroyTensorBuffer", "LiteRtDestroyCompiledModel", "LiteRtDestroyModel",
                     "LiteRtDestroyOptions", "LiteRtDestroyEnvironment"):
            f = getattr(lib, name)
            f.argtypes, f.restype = [P], None
        _LIB = lib
    return _LIB


class CApiError(RuntimeError):
    pass


# a payload destructor that does nothing: the option strings are Python buffers kept alive by
# the session object until the options are destroyed
_NOOP = C.CFUNCTYPE(None, C.c_void_p)(lambda p: None)


@dataclass
class ProfiledRun:
    total_ms: list            # LiteRT's "Invoke" event of each profiled run
    wall_ms: list             # Python wall clock of each profiled run
    ops: list                 # (kind, tag, node index, mean ms per run, calls) per profiled node
    outputs: dict = field(default_factory=dict)
    fully_accelerated: bool | None = None


class CompiledModelSession:
    """A LiteRT CompiledModel opened through the C API with profiling on (see module doc)."""

    def __init__(self, path: str, threads: int | None = None, xnnpack: bool = True, signature: str | None = None):
        self.lib = _lib()
        self._keep = []
        self._buffers = []
        self.env = self.model = self.opts = self.cm = None
        try:
            self._open(str(path), int(threads or 1), xnnpack, signature)
        except Exception:
            self.close()
            raise

    def _chk(self, status, what):
        if status != 0:
            raise CApiError(f"LiteRT C API {what} failed (status {status})")

    def _opaque(self, ident: bytes, text: str):
        buf = C.create_string_buffer(text.encode())
        self._keep.append(buf)
        o = C.c_void_p()
        self._chk(self.lib.LiteRtCreateOpaqueOptions(ident, C.cast(buf, C.c_void_p),
                                                     C.cast(_NOOP, C.c_void_p), C.byref(o)), "opaque options")
        self._chk(self.lib.LiteRtAddOpaqueOptions(self.opts, o), "add options")

    def _open(self, path, threads, xnnpack, signature):
        L = self.lib
        self.env, self.model, self.opts, self.cm = (C.c_void_p() for _ in range(4))
        self._chk(L.LiteRtCreateEnvironment(0, None, C.byref(self.env)), "environment")
        self._chk(L.LiteRtCreateModelFromFile(self.env, path.encode(), C.byref(self.model)), "model load")
        self._chk(L.LiteRtCreateOptions(C.byref(self.opts)), "options")
        self._chk(L.LiteRtSetOptionsHardwareAccelerators(self.opts, HW_CPU), "accelerator")
        self._opaque(b"runtime_options_string", "enable_profiling = true\n")
        cpu = f"num_threads = {threads}\n" + ("" if xnnpack else 'kernel_mode = "builtin"\n')
        self._opaque(b"xnnpack", cpu)
        self._chk(L.LiteRtCreateCompiledModel(self.env, self.model, self.opts, C.byref(self.cm)), "compile")
        n = C.c_size_t()
        self._chk(L.LiteRtGetNumModelSignatures(self.model, C.byref(n)), "signatures")
        self.sig_index, self.sig = 0, None
        for i in range(n.value):
            s, key = C.c_void_p(), C.c_char_p()
            self._chk(L.LiteRtGetModelSignature(self.model, i, C.byref(s)), "signature")
            self._chk(L.LiteRtGetSignatureKey(s, C.byref(key)), "signature key")
            if self.sig is None or (signature and key.value and key.value.decode() == signature):
                self.sig_index, self.sig = i, s
        if self.sig is None:
            raise CApiError("LiteRT C API: the model has no signature")
        self.inputs = self._make_buffers("Input")
        self.outputs = self._make_buffers("Output")
        self._in = (C.c_void_p * len(self.inputs))(*[b for _, b, _ in self.inputs])
        self._out = (C.c_void_p * len(self.outputs))(*[b for _, b, _ in self.outputs])
        prof = C.c_void_p()
        self._chk(L.LiteRtCompiledModelGetProfiler(self.cm, C.byref(prof)), "profiler")
        if not prof.value:
            raise CApiError("LiteRT C API: profiling was not enabled (no profiler)")
        self.profiler = prof

    def _make_buffers(self, kind: str) -> list:
        L = self.lib
        n = C.c_size_t()
        self._chk(getattr(L, f"LiteRtGetNumSignature{kind}s")(self.sig, C.byref(n)), f"{kind} count")
        out = []
        for i in range(n.value):
            name, t = C.c_char_p(), C.c_void_p()
            self._chk(getattr(L, f"LiteRtGetSignature{kind}Name")(self.sig, i, C.byref(name)), f"{kind} name")
            self._chk(getattr(L, f"LiteRtGetSignature{kind}TensorByIndex")(self.sig, i, C.byref(t)), f"{kind} tensor")
            ranked = C.create_string_buffer(256)  # LiteRtRankedTensorType is 72 bytes in 2.2-2.3
            self._keep.append(ranked)
            self._chk(L.LiteRtGetRankedTensorType(t, ranked), f"{kind} type")
            req, buf = C.c_void_p(), C.c_void_p()
            self._chk(getattr(L, f"LiteRtGetCompiledModel{kind}BufferRequirements")(self.cm, self.sig_index, i,
                                                                                  C.byref(req)), "requirements")
            self._chk(L.LiteRtCreateManagedTensorBufferFromRequirements(self.env, ranked, req, C.byref(buf)), "buffer")
            self._buffers.append(buf)
            size = C.c_size_t()
            self._chk(L.LiteRtGetTensorBufferSize(buf, C.byref(size)), "buffer size")
            out.append(((name.value or b"").decode(), buf, size.value))
        return out

    def fully_accelerated(self) -> bool:
        v = C.c_bool()
        self._chk(self.lib.LiteRtCompiledModelIsFullyAccelerated(self.cm, C.byref(v)), "is_fully_accelerated")
        return bool(v.value)

    def set_inputs(self, feeds: dict, order: list | None = None):
        names = [n for n, _, _ in self.inputs]
        arrays = ([feeds[n] for n in names] if all(n in feeds for n in names)
                  else [feeds[n] for n in (order or list(feeds))])
        if len(arrays) != len(self.inputs):
            raise CApiError(f"LiteRT C API: {len(arrays)} feeds for {len(self.inputs)} inputs")
        for (name, buf, size), a in zip(self.inputs, arrays):
            a = np.ascontiguousarray(a)
            if a.nbytes != size:
                raise CApiError(f"LiteRT C API: input {name} holds {size} bytes, feed has {a.nbytes}")
            ptr = C.c_void_p()
            self._chk(self.lib.LiteRtLockTensorBuffer(buf, C.byref(ptr), LOCK_WRITE), "lock")
            C.memmove(ptr, a.ctypes.data, a.nbytes)
            self._chk(self.lib.LiteRtUnlockTensorBuffer(buf), "unlock")

    def read_outputs(self, dtypes: dict | None = None) -> dict:
        out = {}
        for name, buf, size in self.outputs:
            ptr = C.c_void_p()
            self._chk(self.lib.LiteRtLockTensorBuffer(buf, C.byref(ptr), LOCK_READ), "lock")
            raw = C.string_at(ptr, size)
            self._chk(self.lib.LiteRtUnlockTensorBuffer(buf), "unlock")
            out[name] = np.frombuffer(raw, dtype=(dtypes or {}).get(name, np.float32)).copy()
        return out

    def run(self):
        self._chk(self.lib.LiteRtRunCompiledModel(self.cm, self.sig_index, len(self.inputs), self._in,
                                                  len(self.outputs), self._out), "run")

    def profile(self, runs: int, warmup: int = 1) -> ProfiledRun:
        L = self.lib
        for _ in range(max(1, warmup)):
            self.run()
        self._chk(L.LiteRtResetProfiler(self.profiler), "reset profiler")
        self._chk(L.LiteRtStartProfiler(self.profiler), "start profiler")
        wall = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run()
            wall.append((time.perf_counter() - t0) * 1e3)
        self._chk(L.LiteRtStopProfiler(self.profiler), "stop profiler")
        n = C.c_int()
        self._chk(L.LiteRtGetNumProfilerEvents(self.profiler, C.byref(n)), "event count")
        events = (_Event * max(1, n.value))()
        if n.value:
            self._chk(L.LiteRtGetProfilerEvents(self.profiler, n.value, C.cast(events, C.c_void_p)), "events")
        total, per_node = [], collections.defaultdict(lambda: [0, 0])
        for e in events[:n.value]:
            tag = (e.tag or b"").decode("utf-8", "replace")
            if e.event_type == EV_DEFAULT and tag == "Invoke":
                total.append(e.elapsed_us / 1e3)
            elif e.event_type in (EV_OPERATOR, EV_DELEGATE_OP, EV_DELEGATE_PROFILED_OP):
                kind = "builtin" if e.event_type == EV_OPERATOR else "delegate"
                acc = per_node[(kind, tag, int(e.metadata1))]
                acc[0] += e.elapsed_us
                acc[1] += 1
        ops = [(k, tag, idx, us / 1e3 / runs, calls) for (k, tag, idx), (us, calls) in per_node.items()]
        # a delegate kernel timed as one node (when the delegate has no per-op profiling) would count
        # twice next to its internal ops: keep the internal ones
        if any(k == "delegate" for k, *_ in ops):
            ops = [o for o in ops if not (o[0] == "builtin" and o[1] in ("TfLiteXNNPackDelegate", "DELEGATE"))]
        return ProfiledRun(total_ms=total[-runs:], wall_ms=wall, ops=ops)

    def close(self):
        L = self.lib
        for b in self._buffers:
            L.LiteRtDestroyTensorBuffer(b)
        self._buffers = []
        for attr, fn in (("cm", "LiteRtDestroyCompiledModel"), ("model", "LiteRtDestroyModel"),
                         ("opts", "LiteRtDestroyOptions"), ("env", "LiteRtDestroyEnvironment")):
            h = getattr(self, attr, None)
            if h is not None and h.value:
                getattr(L, fn)(h)
            setattr(self, attr, None)
        self._keep = []


# ---------------------------------------------------------------------------- the profile dict

def build_profile(coverage: dict | None, run: ProfiledRun | None, runs: int, fallback_total_ms: float | None,
                  notes: list, top: int = 10, node_names: dict | None = None) -> dict:
    """The runner-neutral profile dict (runtime/runners/base.py: Runner.profile; the same keys as the ONNX
    Runtime side: runtime, runs, total_ms, ops_ms, coverage, by_op_type [{op, count, ms, pct of
    total_ms}], slowest_nodes [{name, op, ms}], notes) plus LiteRT's own: ``delegate`` (partitions,
    ops, delegated, fallback, fallback_nodes), ``fully_accelerated``, ``wall_ms``."""
    prof = {"runtime": "litert", "runs": int(runs), "total_ms": None, "ops_ms": None, "coverage": None,
            "by_op_type": [], "slowest_nodes": [], "notes": list(notes)}
    if coverage is not None:
        prof["delegate"] = {k: coverage[k] for k in ("name", "partitions", "ops", "delegated", "fallback",
                                                    "fallback_nodes")}
    if run is None or not run.ops:
        prof["total_ms"] = None if fallback_total_ms is None else round(fallback_total_ms, 4)
        if coverage is not None:
            fell = set(coverage["fallback"])
            prof["by_op_type"] = [{"op": op + (BUILTIN_SUFFIX if op in fell else ""), "count": n, "ms": None,
                                   "pct": None} for op, n in sorted(coverage["op_types"].items(), key=lambda kv: -kv[1])]
        return prof
    node_names = node_names or {}
    total = statistics.mean(run.total_ms) if run.total_ms else statistics.mean(run.wall_ms)
    ops_ms = sum(ms for _, _, _, ms, _ in run.ops)
    by_type = collections.defaultdict(lambda: [0, 0.0])
    for kind, tag, _, ms, _ in run.ops:
        e = by_type[tag + (BUILTIN_SUFFIX if kind == "builtin" else "")]
        e[0] += 1
        e[1] += ms

    def pct(ms):
        return round(100.0 * ms / total, 2) if total > 0 else None
    prof.update(total_ms=round(total, 4), ops_ms=round(ops_ms, 4),
                coverage=round(ops_ms / total, 4) if total > 0 else None, wall_ms=round(statistics.mean(run.wall_ms), 4))
    prof["by_op_type"] = [{"op": op, "count": n, "ms": round(ms, 4), "pct": pct(ms)}
                          for op, (n, ms) in sorted(by_type.items(), key=lambda kv: -kv[1][1])]
    slow = sorted(run.ops, key=lambda o: -o[3])[:top]
    prof["slowest_nodes"] = [{"name": (node_names.get(idx, f"node {idx}") if kind == "builtin" else f"XNNPACK op {idx}"),
                              "op": tag + (BUILTIN_SUFFIX if kind == "builtin" else ""), "ms": round(ms, 4)}
                             for kind, tag, idx, ms, _ in slow]
    if run.fully_accelerated is not None:
        prof["fully_accelerated"] = run.fully_accelerated
    return prof
