"""What to run: command-line targets (bundle folders, bare model files) -> artefacts, their source
checkpoint, the run options, and the user's input data. Shared by ``parity`` and ``bench``; it
opens no runtime.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from styleport import manifest as mf
from styleport.errors import BadInput
from styleport.runtime.harness.adapt import BOTTLENECK, IOPlan
from styleport.runtime.runners.base import TensorSpec
from styleport.runtime.runners.registry import canonical_name, format_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_SIZE = 256
ORDERS = ("rgb", "bgr")


@dataclass
class Artifact:
    path: Path
    format: str
    model: str | None = None          # transformer / predictor (None: guess from the I/O)
    precision: str | None = None      # None: read from the file
    inputs: list | None = None        # manifest entries
    outputs: list | None = None
    bundle: Path | None = None
    label: str = ""
    variant: str = ""
    checkpoint: Path | None = None    # the PyTorch reference, when known and present
    checkpoint_reason: str = ""
    convention: "Convention | None" = None   # bare third-party files: value range / colour order


@dataclass
class Convention:
    """How a third-party file's image tensors differ from ours (float RGB in [0,1]): ``range``
    [lo, hi] (e.g. [0, 255] for a pytorch/examples export) and ``order`` rgb or bgr. Applied to
    image inputs and image outputs alike; layout (NCHW/NHWC) is read from the file."""

    range: tuple | None = None
    order: str | None = None

    def to_dict(self) -> dict:
        return {"range": list(self.range) if self.range else None, "order": self.order}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Convention | None":
        if not d:
            return None
        return cls(tuple(d["range"]) if d.get("range") else None, d.get("order"))


def parse_range(text: str | None, flag: str) -> tuple | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise BadInput(f"{flag} must be LO,HI (e.g. 0,255), got {text!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise BadInput(f"{flag} must be LO,HI with LO < HI, got {text!r}")
    return (lo, hi)


def convention(range_text: str | None, order: str | None, side: str) -> Convention | None:
    r = parse_range(range_text, f"--{side}-range" if side else "--range")
    if order is not None and order.lower() not in ORDERS:
        raise BadInput(f"--{side + '-' if side else ''}order must be rgb or bgr, got {order!r}")
    if r is None and order is None:
        return None
    return Convention(r, order.lower() if order else None)


def apply_convention(specs: list[TensorSpec], conv: Convention | None) -> list[TensorSpec]:
    """Image tensors of ``specs`` with ``conv``'s range and colour order (others unchanged)."""
    from styleport.runtime.harness.adapt import image_layout
    if conv is None:
        return specs
    out = []
    for s in specs:
        if image_layout(s):
            s = TensorSpec(s.name, s.shape, s.dtype, s.layout, list(conv.range) if conv.range else s.range,
                           s.quantization, (conv.order or "rgb").upper() if conv.order else s.color)
        out.append(s)
    return out


def _guess_precision_from_name(name: str) -> str | None:
    n = name.lower()
    if any(t in n for t in ("int8", "quant", "uint8", "qdq")):
        return "int8"
    if any(t in n for t in ("fp16", "f16", "float16", "half")):
        return "fp16"
    if any(t in n for t in ("fp32", "f32", "float32")):
        return "fp32"
    return None


def bare_artifact(path: Path, conv: Convention | None = None) -> Artifact:
    fmt = format_of(path)
    if fmt is None:
        from styleport.runtime.runners.registry import FORMAT_OF_SUFFIX
        raise BadInput(f"not a model file or bundle: {path} (expected a bundle folder with {mf.MANIFEST}, "
                       f"or {', '.join(FORMAT_OF_SUFFIX)})")
    if not path.exists():
        raise BadInput(f"model not found: {path}")
    if path.is_dir() and fmt != "coreml":
        raise BadInput(f"expected a file, got a folder: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInput(f"model file is empty: {path}")
    return Artifact(path=path, format=fmt, precision=_guess_precision_from_name(path.name), label=path.name,
                    checkpoint_reason="bare model file: no PyTorch reference (compare two files with "
                                      "`styleport parity --reference A --candidate B`)", convention=conv)


def find_checkpoint(bundle: Path, doc: dict, override: str | None) -> tuple[Path | None, str]:
    """The source checkpoint a bundle names (or ``override``), if it exists."""
    if override:
        p = Path(override)
        if not (p / "config.json").is_file():
            raise BadInput(f"checkpoint not found (a folder with config.json and model.safetensors): {p}")
        return p, ""
    src = doc.get("source") or {}
    src = src if isinstance(src, dict) else {}
    names = [n for n in (src.get("checkpoint_path"), src.get("checkpoint")) if isinstance(n, str) and n]
    if not names:
        return None, "the manifest names no source checkpoint"
    name = names[-1]
    cands = []
    for n in names:
        cands += [Path(n)] if Path(n).is_absolute() else [Path(n), bundle / n, bundle.parent / n]
    for c in cands:
        if (c / "config.json").is_file():
            return c, ""
    return None, (f"source checkpoint {name!r} not found (moved? pass --checkpoint CKPT); parity "
                  "against PyTorch skipped")


def checkpoint_matches(ckpt: Path, doc: dict) -> bool | None:
    sha = (doc.get("source") or {}).get("sha256")
    if not sha:
        return None
    try:
        if mf.sha256_path(ckpt) == sha:
            return True
        w = ckpt / "model.safetensors"
        return w.is_file() and mf.sha256_path(w) == sha
    except OSError:
        return None


def collect(targets: list[str], checkpoint: str | None = None, verify: bool = True,
            conv: Convention | None = None) -> list[Artifact]:
    """Bundle folders -> their manifest's artefacts (with the source checkpoint when found); model
    files -> bare artefacts (``conv`` applies to those: a bundle's manifest says its own I/O)."""
    arts: list[Artifact] = []
    for t in targets:
        p = Path(t)
        if p.is_dir() and (p / mf.MANIFEST).is_file():
            doc = mf.load(p, verify=verify)
            ckpt, reason = find_checkpoint(p, doc, checkpoint)
            if ckpt is not None and checkpoint_matches(ckpt, doc) is False:
                print(f"styleport: warning: checkpoint {ckpt} does not match the manifest's sha256",
                      file=sys.stderr)
            for a in doc["artifacts"]:
                arts.append(Artifact(path=mf.artifact_path(p, a), format=a["format"], model=a["model"],
                                     precision=a["precision"], inputs=a["inputs"], outputs=a["outputs"],
                                     bundle=p, label=f"{p.name}/{a['path']}", variant=a.get("variant", ""),
                                     checkpoint=ckpt, checkpoint_reason=reason))
        elif p.is_dir() and format_of(p) != "coreml":
            raise BadInput(f"not a bundle (no {mf.MANIFEST}): {p}")
        else:
            arts.append(bare_artifact(p, conv))
    if not arts:
        raise BadInput("nothing to run: give a bundle folder or model files")
    return arts


def manifest_specs(entries: list[dict]) -> list[TensorSpec]:
    return [TensorSpec(e["name"], list(e["shape"]), e.get("dtype", "float32"), e.get("layout", "any"),
                       e.get("range")) for e in entries]


# ---- inputs -------------------------------------------------------------------------------------

def load_inputs(items: list[str] | None) -> dict:
    """``--inputs`` values -> canonical arrays keyed by role or input name.
    ``NAME=FILE`` or bare files: images (content first, then style) or .npy arrays (100 values: the
    style bottleneck)."""
    out: dict = {}
    images = ["content_image", "style_image"]
    for item in items or []:
        name, sep, file = item.partition("=")
        if not sep:
            name, file = "", item
        path = Path(file)
        if not path.is_file():
            raise BadInput(f"input file not found: {path}")
        if path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False).astype(np.float32)
            except (ValueError, OSError) as e:
                raise BadInput(f"cannot read {path}: {e}") from None
            if not name:
                if arr.size != 100:
                    raise BadInput(f"{path}: say which input it feeds (NAME={path.name})")
                name = BOTTLENECK
            if name == BOTTLENECK:
                arr = arr.reshape(1, -1)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            from styleport.images import load_image
            img = load_image(path)
            arr = (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
            if not name:
                left = [r for r in images if r not in out]
                if not left:
                    raise BadInput(f"{path}: more than two images; name them (content_image=..., style_image=...)")
                name = left[0]
        else:
            raise BadInput(f"--inputs takes images ({', '.join(IMAGE_SUFFIXES)}) or .npy arrays: {path}")
        out[name] = arr
    return out


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        raise BadInput(f"--size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > 8192:
        raise BadInput(f"--size must be N or HxW with sides in [8, 8192], got {text!r}")
    return parts[0], parts[1]


def artifact_size(a: Artifact, size) -> tuple[int, int]:
    """The input size an artefact runs at: its fixed shape, else --size, else 256 (style 256)."""
    if a.inputs:
        plan = IOPlan(manifest_specs(a.inputs), manifest_specs(a.outputs or []), size or (DEFAULT_SIZE,) * 2)
        s = plan.input_size()
        if s:
            return tuple(s)
    return tuple(size or (DEFAULT_SIZE, DEFAULT_SIZE))


# ---- options ------------------------------------------------------------------------------------

@dataclass
class Options:
    runtimes: list | None = None
    threads: int | None = None
    xnnpack: bool = True
    size: tuple | None = None
    seed: int = 0
    given: dict = field(default_factory=dict)
    rules: list | None = None         # tolerance rules in force (the user's, plus any a mode adds)
    user_rules: list | None = None    # the user's own rules: each selector must match something
    arm_cpu: str | None = None        # litert-arm64 / onnxruntime-arm64: QEMU CPU model (issue 22)
    arm_fp16: bool = False            # litert-arm64: XNNPACK forced fp16

    def selector_rules(self) -> list | None:
        return self.user_rules if self.user_rules is not None else self.rules


def runner_options(runtime: str, opts: Options) -> dict:
    if runtime == "litert":
        return {"xnnpack": opts.xnnpack}
    if runtime == "litert-arm64":
        return {"xnnpack": opts.xnnpack, "arm_cpu": opts.arm_cpu, "arm_fp16": opts.arm_fp16}
    if runtime == "onnxruntime-arm64":
        return {"arm_cpu": opts.arm_cpu}
    return {}


def resolve_runtimes(names) -> list[str] | None:
    if not names:
        return None
    out = []
    for n in names:
        for part in str(n).split(","):
            if part.strip():
                out.append(canonical_name(part))
    return out
