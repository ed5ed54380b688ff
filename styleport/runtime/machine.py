"""What machine a benchmark ran on (no runtime package is imported to learn its version)."""

from __future__ import annotations

import os
import platform

from styleport.runtime._deps import version

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


def machine_info() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {
        "cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "cores_usable": affinity,
        "os": platform.platform(), "python": platform.python_version(),
        "versions": {p: v for p in PACKAGES if (v := version(p))},
    }
