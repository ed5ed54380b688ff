"""Reading and running an ML program: the ``main`` function of ``spec.mlProgram``, its constants
(immediate values or the package's ``weights/weight.bin`` blob, through coremltools' milproto value
loader), ``constexpr_*`` ops decompressed once at load, then every op in file order on each ``run``,
each result checked against the dtype and static dims the program declares.
"""

from __future__ import annotations

import numpy as np

from styleport.runtime.coreml.ops import (CONSTEXPR_OPS, IMPLEMENTED_OPS, MIL_DTYPES, OPS, Args, fail)
from styleport.runtime.runners.base import RuntimeFailed, RuntimeUnavailable


def _dtype_name(enum_value) -> str:
    from coremltools.proto import MIL_pb2
    return MIL_pb2.DataType.Name(enum_value)


class _Step:
    """One non-const op of the program, ready to run."""

    __slots__ = ("op_type", "fn", "inputs", "outputs", "out_types", "release")

    def __init__(self, op_type, fn, inputs, outputs, out_types):
        self.op_type, self.fn, self.inputs, self.outputs, self.out_types = op_type, fn, inputs, outputs, out_types
        self.release = ()


def _declared_type(op_type, nvt):
    """(numpy dtype, [int or None per dim]) of a NamedValueType; non-tensor types are not implemented."""
    kind = nvt.type.WhichOneof("type")
    if kind != "tensorType":
        fail(f"op {op_type!r} produces a {kind} value ({nvt.name}); only tensors are implemented")
    tt = nvt.type.tensorType
    name = _dtype_name(tt.dataType)
    if name not in MIL_DTYPES and name != "STRING":
        fail(f"op {op_type!r} output {nvt.name!r} has dtype {name}, which is not implemented")
    dims = [d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tt.dimensions]
    return (MIL_DTYPES.get(name, object), dims if tt.rank == len(dims) else None)


def _conform(op_type, name, value, declared):
    """Cast a result to its declared dtype and check its rank and static dims."""
    dtype, dims = declared
    if dtype is object:
        return value
    value = np.asarray(value)
    if value.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            value = value.astype(dtype)
    if dims is not None:
        if value.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, value.shape)):
            fail(f"op {op_type!r} computed {name!r} with shape {list(value.shape)}, but the program "
                  f"declares {['?' if d is None else d for d in dims]}")
    return value


class MilProgram:
    """The ``main`` function of a saved ML program, with its constants loaded as numpy arrays."""

    def __init__(self, spec, weights_dir: str | None, function: str = "main"):
        try:
            from coremltools.converters.mil.frontend.milproto.load import TranscriptionContext, _load_value
        except Exception as e:   # pragma: no cover - depends on the coremltools build
            raise RuntimeUnavailable(f"coremltools cannot read ML program values here: {e}") from None
        self._load_value = _load_value
        self._ctx = TranscriptionContext(weights_dir or "")
        if spec.WhichOneof("Type") != "mlProgram":
            fail(f"the model is a {spec.WhichOneof('Type')}, not an ML program (convert_to='mlprogram')")
        prog = spec.mlProgram
        if function not in prog.functions:
            fail(f"the program has no function {function!r} (it has {', '.join(prog.functions)})")
        func = prog.functions[function]
        self.opset = func.opset
        if func.opset not in func.block_specializations:
            fail(f"function {function!r} has no block for its opset {func.opset}")
        block = func.block_specializations[func.opset]
        self.inputs = []   # (name, numpy dtype, dims)
        for nvt in func.inputs:
            if nvt.type.WhichOneof("type") != "tensorType":
                fail(f"input {nvt.name!r} is a {nvt.type.WhichOneof('type')} (state/list inputs are "
                      "not implemented)")
            dtype, dims = _declared_type("input", nvt)
            self.inputs.append((nvt.name, dtype, dims))
        self.output_names = list(block.outputs)
        self.consts: dict[str, np.ndarray] = {}
        self.steps: list[_Step] = []
        self.op_counts: dict[str, int] = {}
        self.out_types: dict[str, tuple] = {}
        self.int8_weights = False
        input_names = {n for n, _, _ in self.inputs}
        mil_dtypes = {}
        for op in block.operations:
            self.op_counts[op.type] = self.op_counts.get(op.type, 0) + 1
            if op.blocks:
                fail(f"op {op.type!r} has nested blocks (control flow is not implemented)")
            declared = [_declared_type(op.type, o) for o in op.outputs]
            for o, d in zip(op.outputs, declared):
                self.out_types[o.name] = d
                if o.type.WhichOneof("type") == "tensorType":
                    mil_dtypes[o.name] = _dtype_name(o.type.tensorType.dataType)
            if op.type == "const":
                if "val" not in op.attributes:
                    fail(f"const {[o.name for o in op.outputs]} has no value")
                self.consts[op.outputs[0].name] = self._value(op.attributes["val"], op.type,
                                                              op.outputs[0].name, declared[0])
                continue
            fn = CONSTEXPR_OPS.get(op.type) or OPS.get(op.type)
            if fn is None:
                fail(f"op {op.type!r} (output {op.outputs[0].name!r}) is not implemented by the reference "
                      f"interpreter; implemented: {', '.join(sorted(IMPLEMENTED_OPS))}")
            args = {}
            for key, val in op.attributes.items():
                if key != "name":
                    args[key] = [("value", self._value(val, op.type, key))]
            for key, arg in op.inputs.items():
                bound = []
                for b in arg.arguments:
                    if b.WhichOneof("binding") == "name":
                        if b.name not in self.out_types and b.name not in input_names:
                            fail(f"op {op.type!r} reads {b.name!r}, which is not defined before it")
                        bound.append(("name", b.name))
                    else:
                        bound.append(("value", self._value(b.value, op.type, key)))
                args[key] = bound
            step = _Step(op.type, fn, args, [o.name for o in op.outputs], declared)
            if op.type in ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"):
                key = "quantized_data" if op.type == "constexpr_affine_dequantize" else "data"
                if key in op.attributes:
                    kind = _dtype_name(op.attributes[key].type.tensorType.dataType)
                elif key in op.inputs and op.inputs[key].arguments:
                    b = op.inputs[key].arguments[0]
                    kind = (mil_dtypes.get(b.name) if b.WhichOneof("binding") == "name"
                            else _dtype_name(b.value.type.tensorType.dataType))
                else:
                    kind = None
                if kind in ("INT8", "UINT8"):
                    self.int8_weights = True
            if op.type in CONSTEXPR_OPS:
                if any(kind == "name" and ref not in self.consts for v in args.values() for kind, ref in v):
                    fail(f"{op.type} {step.outputs[0]!r} reads a non-constant input")
                self.consts.update(self._execute(step, self.consts))
            else:
                self.steps.append(step)
        for name in self.output_names:
            if name not in self.out_types and name not in input_names:
                fail(f"program output {name!r} is never computed")
        self._plan_release()

    def _value(self, value_spec, op_type, name, declared=None):
        try:
            v = self._load_value(self._ctx, value_spec)
        except Exception as e:
            fail(f"cannot read a value of op {op_type!r} ({name}): {e}")
        if isinstance(v, str):
            return v
        v = np.asarray(v)
        if declared is not None:
            v = _conform(op_type, name, v, declared)
        return v

    def _plan_release(self):
        """Free each intermediate after its last reader (keeps peak memory near one layer's worth)."""
        last = {}
        for i, step in enumerate(self.steps):
            for vals in step.inputs.values():
                for kind, ref in vals:
                    if kind == "name" and ref not in self.consts:
                        last[ref] = i
        keep = set(self.output_names)
        release = {}
        for name, i in last.items():
            if name not in keep:
                release.setdefault(i, []).append(name)
        for i, step in enumerate(self.steps):
            step.release = tuple(release.get(i, ()))

    @staticmethod
    def _execute(step: _Step, env: dict) -> dict:
        values = {k: [env[ref] if kind == "name" else ref for kind, ref in v] for k, v in step.inputs.items()}
        try:
            with np.errstate(over="ignore"):
                result = step.fn(Args(step.op_type, values))
        except RuntimeFailed:
            raise
        except Exception as e:
            fail(f"op {step.op_type!r} ({step.outputs[0]}) failed: {type(e).__name__}: {e}")
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(step.outputs):
            fail(f"op {step.op_type!r} gave {len(results)} outputs, the program declares {len(step.outputs)}")
        return {name: _conform(step.op_type, name, r, d)
                for name, r, d in zip(step.outputs, results, step.out_types)}

    def run(self, feeds: dict, keep_all: bool = False) -> dict:
        env = dict(self.consts)
        env.update(feeds)
        for step in self.steps:
            env.update(self._execute(step, env))
            if not keep_all:
                for name in step.release:
                    env.pop(name, None)
        if keep_all:
            return {k: v for k, v in env.items() if k not in self.consts}
        return {name: env[name] for name in self.output_names}


