"""What machine a benchmark ran on (no runtime package is imported to learn its version)."""

from __future__ import annotations

import os
import platform

from styleport.runtime.runners.deps import version

PACKAGES = ("styleport", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow",
            "coremltools", "torch", "scikit-image")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            import subprocess
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = ("sse4_2", "avx", "fma", "f16c", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp",
              "fphp", "asimdhp", "i8mm", "bf16", "sve")


def cpu_info() -> dict:
    """Vendor, family/model/stepping and the SIMD flags that decide fp32/int8/fp16 kernels, from
    /proc/cpuinfo (Linux; elsewhere only what platform tells). A benchmark figure is only comparable
    with one from the same family/model and flags."""
    info = {"model_name": cpu_model(), "vendor": None, "family": None, "model": None, "stepping": None,
            "mhz": None, "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    first = text.split("\n\n", 1)[0]
    fields = {}
    for line in first.splitlines():
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    info["vendor"] = fields.get("vendor_id") or fields.get("cpu implementer")
    for key, name in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping")):
        v = fields.get(key)
        if v is not None:
            try:
                info[name] = int(v, 0)
            except ValueError:
                info[name] = v
    if fields.get("cpu mhz"):
        try:
            info["mhz"] = round(float(fields["cpu mhz"]))
        except ValueError:
            pass
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    info["flags"] = [f for f in SIMD_FLAGS if f in flags]
    return info


def machine_info() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {
        "cpu": cpu_model(), "cpu_info": cpu_info(), "arch": platform.machine(), "cores": os.cpu_count(),
        "cores_usable": affinity,
        "os": platform.platform(), "python": platform.python_version(),
        "versions": {p: v for p in PACKAGES if (v := version(p))},
    }
