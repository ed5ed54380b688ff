"""fp16 emulation of a CoreML ML program (.mlpackage), on coreml-mil's reference interpreter.

coreml-mil already stores every value in the dtype the program declares, so an fp16 program
(``compute_precision=FLOAT16``) has fp16 tensors with fp32 arithmetic inside each op. This emulator
makes that the ``fp16`` mode for *any* program, fp32 ones included (what the GPU / Neural Engine do
with them is the question here), and records each op's value before rounding:

- constants and feeds are rounded to fp16; every float op's output is rounded to fp16 (an fp32
  program keeps float32 arrays holding fp16 values, so its declared dtypes still check);
- ``fp16``: each op as coreml-mil computes it (fp32 inside; ``instance_norm`` is one op);
- ``fp16-acc16``: conv, linear and matmul accumulate in fp16 (runtime/numerics/fp16.py) and
  ``instance_norm`` runs as its decomposition with every step rounded (Apple documents neither
  the GPU's nor the Neural Engine's inner steps: this is the strict assumption);
- ``fp32``: the program with fp32 arithmetic and no rounding of its own (fp16 programs keep their
  declared fp16 values): the per-tensor reference.

What it covers: ML programs (the project's CoreML exports). The older neuralNetwork ``.mlmodel``
spec is not emulated here (coreml-mil runs ML programs).
"""

from __future__ import annotations

import numpy as np

from styleport.runtime.coreml.ops import Args, ints, scalar, spatial_pads
from styleport.runtime.coreml.runner import CoreMLMilRunner
from styleport.runtime.numerics.fp16 import conv2d, instance_norm, matmul, round16


class CoreMLEmulator:
    def __init__(self, path, mode: str):
        self.mode = mode
        self.runner = CoreMLMilRunner(path)
        self.runner.open()
        self.program = self.runner.program

    def _r(self, v):
        return round16(v) if self.mode != "fp32" else v

    def _acc16(self, step, vals):
        a = Args(step.op_type, vals)
        if step.op_type == "conv":
            x, w = np.asarray(a.x, np.float32), np.asarray(a.weight, np.float32)
            if x.ndim != 4:
                return None
            strides = ints(a.opt("strides", [1, 1]))
            dil = ints(a.opt("dilations", [1, 1]))
            pads = spatial_pads("conv", a.opt("pad_type", "valid"), x.shape[2:], w.shape[2:], strides, dil,
                                 a.opt("pad"))
            return conv2d(x, w, a.opt("bias"), strides, pads, dil, int(scalar(a.opt("groups", 1))), acc16=True)
        if step.op_type == "linear":
            w = np.asarray(a.weight, np.float32)
            return matmul(np.asarray(a.x, np.float32), w.T, a.opt("bias"), acc16=True)
        if step.op_type == "matmul":
            x, y = np.asarray(a.x, np.float32), np.asarray(a.y, np.float32)
            if bool(scalar(a.opt("transpose_x", False))):
                x = np.swapaxes(x, -1, -2)
            if bool(scalar(a.opt("transpose_y", False))):
                y = np.swapaxes(y, -1, -2)
            return matmul(x, y, acc16=True)
        return None

    def run(self, feeds: dict) -> tuple[dict, list]:
        prog = self.program
        feeds = self.runner._feeds(feeds)
        env = {k: (self._r(v).astype(v.dtype) if np.asarray(v).dtype.kind == "f" else v)
               for k, v in prog.consts.items()}
        env.update({k: (self._r(v).astype(v.dtype) if v.dtype.kind == "f" else v) for k, v in feeds.items()})
        layers = []
        for step in prog.steps:
            vals = {k: [env[ref] if kind == "name" else ref for kind, ref in v] for k, v in step.inputs.items()}
            name = step.outputs[0]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                res = None
                if self.mode == "fp16-acc16":
                    res = self._acc16(step, vals)
                    if step.op_type == "instance_norm":
                        a = Args(step.op_type, vals)
                        x = np.asarray(a.x, np.float32)
                        shape = (1, -1) + (1,) * (x.ndim - 2)
                        g, b = a.opt("gamma"), a.opt("beta")
                        res = instance_norm(
                            x, float(scalar(a.opt("epsilon", 1e-5))), tuple(range(2, x.ndim)),
                            None if g is None else np.asarray(g, np.float32).reshape(shape),
                            None if b is None else np.asarray(b, np.float32).reshape(shape), steps=True,
                            record=lambda s, v: layers.append((f"{name}/{s}", f"instance_norm.{s}", name,
                                                               np.array(v, np.float32))))
                if res is None:
                    res = step.fn(Args(step.op_type, vals))
            results = res if isinstance(res, tuple) else (res,)
            for out, r, (dtype, _) in zip(step.outputs, results, step.out_types):
                r = np.asarray(r)
                if r.dtype.kind == "f" and np.dtype(dtype).kind == "f":
                    layers.append((out, step.op_type, out, r.astype(np.float32)))
                    r = self._r(r)
                env[out] = r.astype(dtype) if np.dtype(dtype).kind == r.dtype.kind or r.dtype.kind == "f" else r
        return {n: env[n] for n in prog.output_names}, layers
