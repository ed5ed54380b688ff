"""ExecuTorch runner: the pip wheel's C++ runtime with the XNNPACK backend.

Import: the runtime is the wheel's pybindings extension (``executorch.extension.pybindings._C``),
imported directly after torch (it links libtorch). The public wrappers (``executorch.runtime``,
``portable_lib``) reach it through ``import executorch.exir._warnings``, which runs all of
``executorch.exir`` (the exporter: passes, dialects, torch._dynamo/_inductor): 4.5 s of import vs
1.0 s for torch + the extension on the 2-core AMD EPYC box (``python -X importtime``), paid once per
benchmark worker process. :func:`load_program` is the same call ``Runtime.load_program`` makes
(``_load_program`` with InternalConsistency verification); the public module is the fallback when
the private one is not there.

Threads: the XNNPACK delegate runs on ExecuTorch's process-wide threadpool. The wheel exposes its
size to Python as the pybindings' ``_unsafe_reset_threadpool(n)``
(experimental, "unsafe": it replaces the pool every method of the process shares, so it must not be
called while another method runs; the harness runs one model at a time). ``threads=None`` keeps the
runtime's default (one thread per performance core); ``describe()`` reports the pool size read back
with ``_threadpool_get_thread_count()``.

Inputs are positional in a program; names come from the constant methods styleport writes
(``input_names`` / ``output_names``, export/executorch_export.py), else ``input_0``... with shapes
and dtypes from the method's metadata (the harness then matches them by shape).

The pybindings take and return torch tensors (the wheel links libtorch), so this runner imports
torch through executorch; the arrays it returns are numpy, like every runner's.

``profile()``: per-operator times from an ETDump (the wheel's runtime is built with the event tracer;
XNNPACK reports every operator it runs) read with ``executorch.devtools.Inspector``.
"""

from __future__ import annotations

import collections
import importlib
import re
import tempfile
from pathlib import Path

import numpy as np

from styleport.runtime.runners.deps import first_line, need, version
from styleport.runtime.runners.base import Runner, RuntimeFailed, TensorSpec

# executorch ScalarType codes (MethodMeta TensorInfo.dtype()) -> numpy dtype names
DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
          11: "bool"}
CONTAINERS = ("Method::execute", "DELEGATE_CALL", "OPERATOR_CALL")


PYBINDINGS = "executorch.extension.pybindings._C"


def pybindings():
    """The runtime extension module (see the module notes); RuntimeUnavailable when not installed."""
    need("torch")  # the extension links libtorch: torch's libraries load first
    try:
        return importlib.import_module(PYBINDINGS)
    except ImportError:
        return need("executorch.extension.pybindings.portable_lib", "executorch")


class Program:
    """A loaded program: ``method(name)`` (cached), ``method_names``, ``write_etdump``."""

    def __init__(self, program):
        self._program = program
        self.method_names = {program.get_method_name(i) for i in range(program.num_methods())}
        self._methods = {}

    def method(self, name: str):
        """The pybindings method: call it with a list of tensors; ``method_meta()`` for its I/O."""
        if name not in self._methods:
            self._methods[name] = self._program.load_method(name)
        return self._methods[name]

    def write_etdump(self, etdump_path: str, debug_path: str) -> None:
        self._program.write_etdump_result_to_file(etdump_path, debug_path)


def load_program(path, etdump: bool = False, debug_buffer_size: int = 0) -> Program:
    """``.pte`` file -> Program (what ``executorch.runtime.Runtime.load_program(path)`` does)."""
    C = pybindings()
    return Program(C._load_program(str(path), enable_etdump=bool(etdump), debug_buffer_size=int(debug_buffer_size),
                                   program_verification=C.Verification.InternalConsistency, data_path=None))


def run_once(path, args: list):
    """Load ``path`` and run its forward method once on ``args`` (torch tensors): the outputs."""
    return load_program(path).method("forward")(list(args))


def set_threads(n: int) -> int:
    """Resize ExecuTorch's shared threadpool (see the module notes); returns the size read back."""
    C = pybindings()
    if C._threadpool_get_thread_count() != int(n):
        C._unsafe_reset_threadpool(int(n))
    return int(C._threadpool_get_thread_count())


def _quiet():
    from styleport.export.wrappers import quiet_torch_export
    return quiet_torch_export()


class ExecuTorchRunner(Runner):
    """Options: ``etdump`` (load with the event tracer on; used by profile/layer-wise),
    ``debug_buffer_size`` (bytes for intermediate outputs with ``etdump``), ``read_names`` (False:
    do not run the name methods; positional names ``input_0``...)."""

    name = runtime = "executorch"
    formats = ("executorch",)
    imports = ("torch", PYBINDINGS)

    def _open(self):
        with _quiet():
            C = pybindings()
            self.torch = need("torch")
        path = Path(str(self.path))
        try:
            with _quiet():
                self.pool = set_threads(self.threads) if self.threads else None
                self.program = load_program(path, etdump=bool(self.options.get("etdump")),
                                            debug_buffer_size=int(self.options.get("debug_buffer_size", 0)))
                self.method = self.program.method("forward")
                meta = self.method.method_meta()
        except Exception as e:  # noqa: BLE001 - the pybindings raise RuntimeError/ValueError/...
            raise RuntimeFailed(f"executorch cannot load {path.name}: {first_line(e)}") from None
        # (a program traced with a debug buffer aborts on string outputs: the tracer skips the names)
        read = self.options.get("read_names", True)
        names = (self._constant("input_names"), self._constant("output_names")) if read else (None, None)
        layout = ((self._constant("layout") if read else None) or ["any"])[0]
        self._inputs = [self._spec(meta.input_tensor_meta(i), names[0], i, "input", layout)
                        for i in range(meta.num_inputs())]
        self._outputs = [self._spec(meta.output_tensor_meta(i), names[1], i, "output", layout)
                         for i in range(meta.num_outputs())]
        self._names = [s.name for s in self._inputs]
        if self.pool is None:
            self.pool = int(C._threadpool_get_thread_count())

    def _constant(self, name: str):
        if name not in self.program.method_names:
            return None
        try:
            vals = self.program.method(name)([])
        except Exception:  # noqa: BLE001 - a malformed name table is only a missing hint
            return None
        return [str(v) for v in vals] if all(isinstance(v, str) for v in vals) else None

    @staticmethod
    def _spec(info, names, i, kind, layout) -> TensorSpec:
        name = names[i] if names and i < len(names) else f"{kind}_{i}"
        shape = [int(d) for d in info.sizes()]
        lay = layout if layout in ("NCHW", "NHWC") and len(shape) == 4 else "any"
        return TensorSpec(name, shape, DTYPES.get(int(info.dtype()), str(info.dtype())), lay)

    def _close(self):
        self.method = self.program = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def _args(self, feeds):
        torch = self.torch
        try:
            return [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self._names]
        except KeyError as e:
            raise RuntimeFailed(f"executorch: no feed for input {e}") from None

    def run(self, feeds):
        args = self._args(feeds)
        try:
            outs = self.method(args)
        except Exception as e:  # noqa: BLE001
            raise RuntimeFailed(f"executorch failed to run {Path(str(self.path)).name}: {first_line(e)}") from None
        return {s.name: o.numpy() for s, o in zip(self._outputs, outs)}

    def precision(self):
        try:
            from styleport import pte
            doc = pte.read(self.path)
        except Exception:  # noqa: BLE001
            return None
        return pte.precision(doc)

    def versions(self):
        return {"executorch": version("executorch")}

    def describe(self):
        return {"threads": self.threads, "threadpool": self.pool, "backend": "XnnpackBackend",
                "threads_set_by": "_unsafe_reset_threadpool of the pybindings (process-wide pool)"}

    # ---- ETDump: per-op times and intermediate outputs --------------------------------------------

    def _traced(self, feeds, runs: int, debug: bool):
        """Run a fresh copy of the program with the event tracer; return the Inspector."""
        args = self._args(feeds)
        tracer = ExecuTorchRunner(self.path, threads=self.threads, etdump=True, read_names=False,
                                  debug_buffer_size=int(2e8) if debug else 0)
        with tracer:
            try:
                for _ in range(runs):
                    tracer.method(args)
            except Exception as e:  # noqa: BLE001
                raise RuntimeFailed(f"executorch failed to run {Path(str(self.path)).name}: {first_line(e)}") from None
            with tempfile.TemporaryDirectory(prefix="styleport-etdump-") as tmp:
                etdp, dbg = Path(tmp) / "run.etdp", Path(tmp) / "debug.bin"
                tracer.program.write_etdump(str(etdp), str(dbg))
                with _quiet():
                    from executorch.devtools import Inspector
                    return Inspector(etdump_path=str(etdp), debug_buffer_path=str(dbg) if debug else None)

    def profile(self, feeds: dict, runs: int = 10) -> dict | None:
        """Per-operator times of ``runs`` runs (the first is dropped as warm-up when runs > 1)."""
        runs = max(1, int(runs))
        insp = self._traced(feeds, runs + (1 if runs > 1 else 0), debug=False)
        block = _forward_block(insp)
        if block is None:
            return None
        skip = 1 if runs > 1 else 0

        def ms(ev):
            raw = list(ev.perf_data.raw) if ev.perf_data is not None else []
            raw = raw[skip:] or raw
            return float(np.median(raw)) if raw else 0.0
        total = next((ms(e) for e in block.events if e.name == "Method::execute"), None)
        nodes = []
        for ev in block.events:
            if ev.name in CONTAINERS:
                continue
            op = op_type(ev.name)
            nodes.append({"name": ev.name, "op": op, "ms": ms(ev),
                          "where": "XNNPACK" if ev.is_delegated_op else "portable"})
        by = collections.OrderedDict()
        for n in nodes:
            d = by.setdefault(n["op"], {"op": n["op"], "ms": 0.0, "count": 0})
            d["ms"] += n["ms"]
            d["count"] += 1
        op_sum = sum(n["ms"] for n in nodes)
        total = total if total is not None else op_sum
        rows = sorted(by.values(), key=lambda d: -d["ms"])
        other = max(0.0, total - op_sum)
        if other > 0:
            rows.append({"op": "(outside operators: delegate entry, layout copies, runtime)", "ms": other, "count": 1})
        for d in rows:
            d["ms"] = round(d["ms"], 4)
            d["pct"] = round(100.0 * d["ms"] / total, 2) if total else None
        slow = sorted(nodes, key=lambda n: -n["ms"])[:10]
        return {"runtime": self.runtime, "total_ms": round(total, 4), "runs": runs, "by_op_type": rows,
                "slowest_nodes": [{"name": n["name"], "op": n["op"], "ms": round(n["ms"], 4)} for n in slow],
                "notes": ["ETDump of the pip runtime read with executorch.devtools.Inspector; median over runs "
                          "after one warm-up run",
                          "XNNPACK reports each operator it runs (names as XNNPACK's, e.g. 'Convolution (NHWC, F32) "
                          "IGEMM'); portable kernels appear as native_call_*",
                          f"threadpool {self.pool} threads"]}

    def intermediates(self, feeds: dict) -> list:
        """[(name, op, array)] in execution order: outputs of every portable kernel and of every
        XNNPACK delegate call. XNNPACK does not hand out the tensors inside a delegate, so a program
        lowered whole shows only its delegates' outputs."""
        insp = self._traced(feeds, 1, debug=True)
        block = _forward_block(insp)
        out = []
        for ev in (block.events if block is not None else []):
            if ev.name in ("Method::execute", "OPERATOR_CALL") or ev.is_delegated_op:
                continue
            data = [t for t in (ev.debug_data or []) if hasattr(t, "numpy")]
            n = int(ev.num_outputs or 0) if ev.name == "DELEGATE_CALL" else len(data)
            for k, t in enumerate(data[len(data) - n:] if n else []):
                out.append((f"{ev.name}#{len(out)}" if ev.name == "DELEGATE_CALL" else ev.name,
                            op_type(ev.name), np.array(t.detach().numpy() if hasattr(t, "detach") else t)))
        return out


def _forward_block(insp):
    """The ETDump block of the forward runs: the constant methods (input_names, ...) executed at load
    get "Execute" blocks of their own, with nothing in them but Method::execute."""
    blocks = [b for b in insp.event_blocks if b.name == "Execute"]
    return max(blocks, key=lambda b: len(b.events)) if blocks else None


def op_type(event_name: str) -> str:
    """'Convolution (NHWC, F32) IGEMM #3' -> 'Convolution (NHWC, F32) IGEMM';
    'native_call_upsample_nearest2d.vec_out' -> 'upsample_nearest2d.vec (portable)'."""
    if event_name.startswith("native_call_"):
        name = event_name.removeprefix("native_call_")
        return re.sub(r"(_out|\.out)$", "", name) + " (portable)"
    return re.sub(r"\s*#\d+$", "", event_name)
