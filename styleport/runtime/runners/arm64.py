"""The real aarch64 kernels of LiteRT and ONNX Runtime, run under QEMU user mode (issue 22):
runtimes ``litert-arm64`` and ``onnxruntime-arm64``.

Each runner starts one guest process, ``qemu-aarch64 -L SYSROOT -cpu CPU python3.11
arm64_worker.py``, in the sysroot ``styleport device setup arm64`` builds (device/arm64.py), and
talks to it one JSON line per request; arrays go through .npy files in a temp folder. The guest
runs PyPI's aarch64 wheels of the same versions as this host's, so what differs from the x86
``litert`` / ``onnxruntime`` rows is the kernels (NEON, dot-product, fp16 arithmetic), not the
library version.

Options (from the CLI's --arm-cpu / --arm-fp16 via harness/targets.runner_options):
  arm_cpu   cortex-a76 (default, a phone big core), neoverse-n1, or max (= max,sme=off); an
            SME-enabled CPU is refused (XNNPACK's SME kernels are wrong under QEMU 7.2)
  arm_fp16  litert-arm64 only: XNNPACK with FORCE_FP16, the arithmetic of Android's fp16-allowed
            CPU inference (fp32 tensors computed in fp16)
  xnnpack   litert-arm64: False = builtin kernels only, as for ``litert``

Emulated time means nothing: these runtimes are never timed (bench says so instead of a latency).
They are never default runtimes: ask for them with --runtimes.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from styleport.runtime.runners.base import Runner, RuntimeFailed, TensorSpec

WORKER = Path(__file__).with_name("arm64_worker.py")
NO_TIMING = ("no latency: this runtime runs the aarch64 kernels emulated under QEMU, whose time says "
             "nothing about a phone; use it for parity (numerics) only")
TIMEOUT_S = float(os.environ.get("STYLEPORT_ARM64_TIMEOUT", "1800"))


class Worker:
    """One arm64_worker.py process (under QEMU, or any command that runs it) and its request loop."""

    def __init__(self, cmd: list[str], env: dict, label: str, timeout: float = TIMEOUT_S):
        self.label = label
        self.timeout = timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="styleport-arm64-"))
        self.err = open(self.tmp / "stderr.txt", "w+")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                         env=env, text=True, bufsize=1)
        except OSError as e:
            self.close()
            raise RuntimeFailed(f"{label}: cannot start {cmd[0]}: {e}") from None
        self.runs = 0

    def _stderr_tail(self) -> str:
        try:
            self.err.flush()
            lines = [ln for ln in (self.tmp / "stderr.txt").read_text(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith("INFO:")]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def request(self, req: dict) -> dict:
        if self.proc.poll() is not None:
            raise RuntimeFailed(f"{self.label}: the guest process ended (exit {self.proc.returncode}): "
                                f"{self._stderr_tail()}")
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.proc.wait(timeout=30)
            raise RuntimeFailed(f"{self.label}: the guest process ended (exit {self.proc.returncode}): "
                                f"{self._stderr_tail()}") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else None
        if not line:
            if not ready:
                self.proc.kill()
                raise RuntimeFailed(f"{self.label}: no answer from the guest within {self.timeout:.0f} s "
                                    f"(STYLEPORT_ARM64_TIMEOUT)")
            self.proc.wait(timeout=30)
            signal = f"signal {-self.proc.returncode}" if (self.proc.returncode or 0) < 0 else \
                f"exit {self.proc.returncode}"
            raise RuntimeFailed(f"{self.label}: the guest process ended ({signal}): {self._stderr_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeFailed(f"{self.label}: {reply.get('error')}")
        return reply

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        d = self.tmp / f"run{self.runs}"
        d.mkdir()
        paths = {}
        for i, (name, arr) in enumerate(feeds.items()):
            p = d / f"in{i}.npy"
            np.save(p, np.ascontiguousarray(arr))
            paths[name] = str(p)
        reply = self.request({"op": "run", "inputs": paths, "outdir": str(d)})
        out = {name: np.load(p) for name, p in reply["outputs"].items()}
        shutil.rmtree(d, ignore_errors=True)
        return out

    def close(self):
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
                proc.wait()
        for f in (getattr(proc, "stdin", None), getattr(proc, "stdout", None), self.err):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def guest_worker(cpu: str, label: str, root: Path | None = None) -> tuple[Worker, dict]:
    """A Worker under qemu-aarch64 in the built sysroot; (worker, sysroot stamp)."""
    from styleport.device import arm64 as D
    s = D.find(root)
    qemu = D.qemu_binary()
    return Worker(s.command(qemu, cpu, str(WORKER)), s.env(), label), s.info()


def host_worker(label: str) -> Worker:
    """The same worker run by this host's Python (x86 kernels through the same API)."""
    import sys
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return Worker([sys.executable, "-u", str(WORKER)], env, label)


def _litert_spec(d: dict) -> TensorSpec:
    shape = list(d["shape"])
    sig = d.get("shape_signature")
    if sig is not None and len(sig) == len(shape):
        shape = [int(s) if s > 0 else None for s in sig]
    q = d.get("quantization") or [0.0, 0]
    quant = (float(q[0]), int(q[1])) if d["dtype"] in ("int8", "uint8", "int16") and q[0] else None
    return TensorSpec(d["name"], shape, d["dtype"], quantization=quant)


class _Arm64Runner(Runner):
    guest_runtime = ""     # the worker's runtime name

    def _request(self) -> dict:
        return {}

    def _open(self):
        from styleport.device.arm64 import DEFAULT_CPU, qemu_cpu
        self.cpu_name = (self.options.get("arm_cpu") or DEFAULT_CPU).strip().lower()
        self.cpu = qemu_cpu(self.cpu_name)
        self.worker, self.stamp = guest_worker(self.cpu, self.runtime)
        try:
            req = {"op": "open", "runtime": self.guest_runtime, "model": str(Path(self.path).resolve()),
                   "threads": self.threads, **self._request()}
            t0 = time.perf_counter()
            self.info = self.worker.request(req)
            self.open_s = time.perf_counter() - t0
        except Exception:
            self.worker.close()
            raise
        if self.info.get("machine") != "aarch64":
            self.worker.close()
            raise RuntimeFailed(f"{self.runtime}: the guest reports machine {self.info.get('machine')!r}, "
                                "not aarch64")
        self._inputs = [self._spec(d) for d in self.info["inputs"]]
        self._outputs = [self._spec(d) for d in self.info["outputs"]]

    def _spec(self, d: dict) -> TensorSpec:
        raise NotImplementedError

    def _close(self):
        self.worker.close()

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        return self.worker.run(feeds)

    def versions(self):
        v = {f"{k} (aarch64)": val for k, val in self.info.get("versions", {}).items() if k != "python"}
        v["qemu"] = self.stamp.get("qemu", "unknown")
        return v

    def describe(self):
        return {"threads": self.threads, "arm_cpu": self.cpu_name, "qemu_cpu": self.cpu,
                "emulator": f"qemu-aarch64 {self.stamp.get('qemu', '?')} (user mode)",
                "sysroot": f"Debian {self.stamp.get('debian', '?')}, python {self.info['versions'].get('python')}",
                "timing": NO_TIMING, **(self.info.get("settings") or {})}


class LiteRTArm64Runner(_Arm64Runner):
    name = runtime = "litert-arm64"
    formats = ("tflite",)
    guest_runtime = "litert"

    def _request(self):
        self.xnnpack = bool(self.options.get("xnnpack", True))
        self.fp16 = bool(self.options.get("arm_fp16", False))
        if self.fp16 and not self.xnnpack:
            from styleport.errors import BadInput
            raise BadInput("--arm-fp16 runs XNNPACK in fp16: it cannot go with --no-xnnpack")
        return {"xnnpack": self.xnnpack, "fp16": self.fp16, "signature": self.options.get("signature")}

    def _spec(self, d):
        return _litert_spec(d)

    def precision(self):
        return self.info.get("precision")

    def describe(self):
        return {**super().describe(), "xnnpack": self.xnnpack, "arm_fp16": self.fp16}


class OrtArm64Runner(_Arm64Runner):
    name = runtime = "onnxruntime-arm64"
    formats = ("onnx",)
    guest_runtime = "onnxruntime"

    def _request(self):
        return {"optimization": self.options.get("optimization", "all")}

    def _spec(self, d):
        return TensorSpec(d["name"], list(d["shape"]), d["dtype"])

    def precision(self):
        from styleport.runtime.runners.ort import onnx_precision
        return onnx_precision(self.path)

    def describe(self):
        return {**super().describe(), "providers": ["CPUExecutionProvider"],
                "optimization": self.options.get("optimization", "all")}

