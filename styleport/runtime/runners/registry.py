"""Which runner opens which format. Runners are imported lazily, so a missing runtime package only
matters when a model of its format is run.

    RUNTIMES   name -> (module, class, formats)
    register_runner("coreml-mil", "styleport.runtime.coreml.runner:CoreMLMilRunner", ("coreml",))

A module may also define its runner without naming the class here: any Runner subclass of the
module whose ``runtime`` attribute is the registered name is found. A runtime whose module is not
part of the build is reported as skipped, with the reason. Other runners can be added at run time
with :func:`register_runner` (e.g. from a plugin's import).
"""

from __future__ import annotations

import importlib

from styleport.errors import BadInput
from styleport.runtime.runners.base import Runner, RuntimeSkipped

RUNTIMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnxruntime": ("styleport.runtime.runners.ort", "OrtRunner", ("onnx",)),
    "litert": ("styleport.runtime.runners.litert", "LiteRTRunner", ("tflite",)),
    "coreml": ("styleport.runtime.runners.coreml_macos", "CoreMLRunner", ("coreml",)),
    "coreml-mil": ("styleport.runtime.coreml.runner", "CoreMLMilRunner", ("coreml",)),
    "torch": ("styleport.runtime.runners.pytorch", "TorchRunner", ("pytorch",)),
    "executorch": ("styleport.runtime.runners.executorch", "ExecuTorchRunner", ("executorch",)),
    # fp16 device arithmetic emulated (issue #16; --emulate); never a default runtime
    "emulate-fp16": ("styleport.runtime.numerics.emulate", "EmulatedRunner", ("onnx", "tflite", "coreml")),
    "emulate-fp16-acc16": ("styleport.runtime.numerics.emulate", "EmulatedRunnerAcc16", ("onnx", "tflite", "coreml")),
    # the real aarch64 kernels under QEMU user mode (issue 22; `styleport device setup arm64`); never
    # a default runtime, never timed
    "litert-arm64": ("styleport.runtime.runners.arm64", "LiteRTArm64Runner", ("tflite",)),
    "onnxruntime-arm64": ("styleport.runtime.runners.arm64", "OrtArm64Runner", ("onnx",)),
    # ONNX Runtime Web (WASM) in headless Chromium (issue 23); never a default runtime
    "onnxruntime-web": ("styleport.runtime.runners.web", "WebRunner", ("onnx",)),
}

# Runtimes whose wall time means nothing (emulated): bench reports why instead of a latency.
UNTIMED: dict[str, str] = {
    "litert-arm64": "no latency: emulated under QEMU (aarch64 kernels on an x86 host), time says nothing "
                    "about a phone; use parity for its numerics",
    "onnxruntime-arm64": "no latency: emulated under QEMU (aarch64 kernels on an x86 host), time says nothing "
                         "about a phone; use parity for its numerics",
}

# Runtimes tried for a format when --runtimes is not given, in order.
DEFAULTS: dict[str, list[str]] = {
    "onnx": ["onnxruntime"],
    "tflite": ["litert"],
    "coreml": ["coreml", "coreml-mil"],
    "pytorch": ["torch"],
    "executorch": ["executorch"],
}

# Runtimes that can only run on some platforms (sys.platform prefixes); elsewhere they report "skipped".
PLATFORMS: dict[str, tuple[str, ...]] = {"coreml": ("darwin",)}

ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "tflite": "litert", "ai-edge-litert": "litert",
           "pytorch": "torch", "mil": "coreml-mil", "et": "executorch", "ort-web": "onnxruntime-web",
           "web": "onnxruntime-web", "wasm": "onnxruntime-web",
           "ort-arm64": "onnxruntime-arm64", "litert-aarch64": "litert-arm64",
           "onnxruntime-aarch64": "onnxruntime-arm64", "tflite-arm64": "litert-arm64"}

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".mlpackage": "coreml", ".mlmodel": "coreml",
                    ".pte": "executorch"}


def register_runner(name: str, target: str | type, formats: tuple[str, ...], default: bool = True) -> None:
    """Add or replace a runtime. ``target`` is a Runner subclass or "module:Class"."""
    if isinstance(target, str):
        module, _, cls = target.partition(":")
    else:
        module, cls = target.__module__, target.__qualname__
        _CLASSES[name] = target
    RUNTIMES[name] = (module, cls, tuple(formats))
    if default:
        for f in formats:
            DEFAULTS.setdefault(f, [])
            if name not in DEFAULTS[f]:
                DEFAULTS[f].append(name)


_CLASSES: dict[str, type] = {}


def canonical_name(name: str) -> str:
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in RUNTIMES:
        raise BadInput(f"unknown runtime {name!r} (choose from {', '.join(RUNTIMES)})")
    return name


def runner_class(name: str) -> type[Runner]:
    name = canonical_name(name)
    if name in _CLASSES:
        return _CLASSES[name]
    module, cls, _ = RUNTIMES[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise RuntimeSkipped(f"runtime {name!r} is not part of this build (module {module} missing)") from None
        raise
    klass = getattr(mod, cls, None)
    if klass is None:  # any Runner subclass of the module that says it is this runtime
        klass = next((v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Runner)
                      and v is not Runner and getattr(v, "runtime", None) == name), None)
    if klass is None:
        raise RuntimeSkipped(f"runtime {name!r}: {module} defines no {cls}")
    _CLASSES[name] = klass
    return klass


def make_runner(name: str, path, threads: int | None = None, **options) -> Runner:
    return runner_class(name)(path, threads=threads, **options)


def runtimes_for(fmt: str, wanted: list[str] | None = None) -> list[str]:
    """Runtimes to use for a format: the defaults, or those of ``wanted`` that open it."""
    if wanted is None:
        return list(DEFAULTS.get(fmt, []))
    return [w for w in wanted if fmt in RUNTIMES[w][2]]


def usable_here(name: str) -> bool:
    """False for a runtime that cannot run on this platform at all (CoreML prediction off macOS)."""
    import sys
    plats = PLATFORMS.get(name)
    return plats is None or sys.platform.startswith(plats)


def format_of(path) -> str | None:
    from pathlib import Path
    return FORMAT_OF_SUFFIX.get(Path(path).suffix.lower())
