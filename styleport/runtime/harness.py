"""The harness: what to run (targets -> artefacts), the PyTorch reference, parity checks of a bundle
or of two files, and the benchmark (one fresh worker process per artefact x runtime).

Loaders build, runners run, comparators compare: this module only wires them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from styleport import manifest as mf
from styleport.errors import BadInput
from styleport.runtime import metrics as M
from styleport.runtime.adapt import BOTTLENECK, IOPlan, match_outputs, merge_manifest
from styleport.runtime.base import RuntimeSkipped, RuntimeUnavailable, StyleportError, TensorSpec
from styleport.runtime.registry import canonical_name, format_of, make_runner, runtimes_for

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_SIZE = 256


# ---- what to run --------------------------------------------------------------------------------

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

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.model or "model", self.format, self.precision or "?", self.variant) if p)


def _guess_precision_from_name(name: str) -> str | None:
    n = name.lower()
    if any(t in n for t in ("int8", "quant", "uint8", "qdq")):
        return "int8"
    if any(t in n for t in ("fp16", "f16", "float16", "half")):
        return "fp16"
    if any(t in n for t in ("fp32", "f32", "float32")):
        return "fp32"
    return None


def bare_artifact(path: Path) -> Artifact:
    fmt = format_of(path)
    if fmt is None:
        raise BadInput(f"not a model file or bundle: {path} (expected a bundle folder with {mf.MANIFEST}, "
                       ".onnx, .tflite or .mlpackage)")
    if not path.exists():
        raise BadInput(f"model not found: {path}")
    if path.is_dir() and fmt != "coreml":
        raise BadInput(f"expected a file, got a folder: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInput(f"model file is empty: {path}")
    return Artifact(path=path, format=fmt, precision=_guess_precision_from_name(path.name), label=path.name,
                    checkpoint_reason="bare model file: no PyTorch reference (compare two files with "
                                      "`styleport parity --reference A --candidate B`)")


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


def collect(targets: list[str], checkpoint: str | None = None, verify: bool = True) -> list[Artifact]:
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
            arts.append(bare_artifact(p))
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


# ---- the PyTorch reference ----------------------------------------------------------------------

class Reference:
    """Runs the checkpoint's predictor / transformer on canonical feeds (cached per part and feeds)."""

    def __init__(self, checkpoint: Path, threads: int | None = None):
        self.checkpoint = Path(checkpoint)
        self.threads = threads
        self._runners: dict = {}
        self.label = f"torch:{self.checkpoint.name}"

    def runner(self, part: str):
        if part not in self._runners:
            r = make_runner("torch", self.checkpoint, threads=self.threads, part=part)
            r.open()
            self._runners[part] = r
        return self._runners[part]

    def has(self, part: str) -> bool:
        try:
            self.runner(part)
            return True
        except StyleportError:
            return False

    def inputs(self, part: str) -> list[str]:
        return [s.name for s in self.runner(part).input_specs()]

    def run(self, part: str, canonical: dict) -> dict:
        r = self.runner(part)
        img = next((v for k, v in canonical.items() if k in ("content_image", "style_image")), None)
        size = tuple(img.shape[2:]) if img is not None else (DEFAULT_SIZE, DEFAULT_SIZE)
        plan = IOPlan(r.input_specs(), r.output_specs(), size)
        return plan.canonical_outputs(r.run(plan.feeds(canonical)))

    def close(self):
        for r in self._runners.values():
            r.close()
        self._runners.clear()


# ---- one parity check ---------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    model: str
    format: str
    precision: str
    runtime: str
    path: str
    reference: str = ""
    status: str = "pass"             # pass / fail / skipped / error
    metrics: dict = field(default_factory=dict)    # output role -> metrics
    tolerance: dict = field(default_factory=dict)
    reasons: list = field(default_factory=list)
    input_size: list | None = None

    @property
    def passed(self) -> bool | None:
        return {"pass": True, "fail": False}.get(self.status)

    def summary(self) -> dict:
        """The contract's parity block: the main output's metrics and pass."""
        main = next(iter(self.metrics.values()), {}) if self.metrics else {}
        return {"max_abs": main.get("max_abs"), "mean_abs": main.get("mean_abs"), "p99_abs": main.get("p99_abs"),
                "psnr_db": main.get("psnr_db"), "ssim": main.get("ssim"), "snr_db": main.get("snr_db"),
                "cosine": main.get("cosine"), "pass": self.passed}

    def to_dict(self) -> dict:
        return {"name": self.name, "model": self.model, "format": self.format, "precision": self.precision,
                "runtime": self.runtime, "path": self.path, "reference": self.reference, "status": self.status,
                "pass": self.passed, "input_size": self.input_size, "tolerance": self.tolerance,
                "metrics": self.metrics, "reasons": self.reasons, **{"parity": self.summary()}}


def judge(check: Check, ref_out: dict, cand_out: dict, rules) -> Check:
    check.tolerance = M.resolve_tolerance(check.model, check.format, check.precision, check.runtime, rules)
    pairs = match_outputs(ref_out, cand_out)
    if not pairs:
        check.status, check.reasons = "fail", ["no output to compare"]
        return check
    ok_all, reasons = True, []
    for rk, ck in pairs:
        kind = "vector" if rk == BOTTLENECK or ref_out[rk].ndim != 4 else "image"
        m = M.compare(ref_out[rk], cand_out[ck], kind)
        check.metrics[rk] = m
        ok, why = M.check(m, check.tolerance)
        ok_all &= ok
        reasons += [f"{rk}: {w}" for w in why]
    check.status, check.reasons = ("pass" if ok_all else "fail"), reasons
    return check


def _error_check(check: Check, e: Exception) -> Check:
    check.status = "skipped" if isinstance(e, RuntimeSkipped) else "error"
    check.reasons = [str(e)]
    return check


def run_plan(runner, inputs_manifest, outputs_manifest, size, given, seed) -> tuple[IOPlan, dict, dict]:
    ins = merge_manifest(runner.input_specs(), inputs_manifest)
    outs = merge_manifest(runner.output_specs(), outputs_manifest)
    plan = IOPlan(ins, outs, size)
    canonical = plan.canonical_feeds(given, seed)
    return plan, canonical, plan.canonical_outputs(runner.run(plan.feeds(canonical)))


def artifact_size(a: Artifact, size) -> tuple[int, int]:
    """The input size an artefact runs at: its fixed shape, else --size, else 256 (style 256)."""
    if a.inputs:
        plan = IOPlan(manifest_specs(a.inputs), manifest_specs(a.outputs or []), size or (DEFAULT_SIZE,) * 2)
        s = plan.input_size()
        if s:
            return tuple(s)
    return tuple(size or (DEFAULT_SIZE, DEFAULT_SIZE))


@dataclass
class Options:
    runtimes: list | None = None
    threads: int | None = None
    xnnpack: bool = True
    size: tuple | None = None
    seed: int = 0
    given: dict = field(default_factory=dict)
    rules: list | None = None


def runner_options(runtime: str, opts: Options) -> dict:
    return {"xnnpack": opts.xnnpack} if runtime == "litert" else {}


def _resolve_runtimes(names) -> list[str] | None:
    if not names:
        return None
    out = []
    for n in names:
        for part in str(n).split(","):
            if part.strip():
                out.append(canonical_name(part))
    return out


# ---- parity of a bundle -------------------------------------------------------------------------

def bundle_parity(arts: list[Artifact], opts: Options) -> tuple[list[Check], dict]:
    """Every artefact against the PyTorch reference (predictor: bottleneck parity; transformer:
    image parity with the reference bottleneck fed to both), then each format's chained pipeline."""
    ckpt = next((a.checkpoint for a in arts if a.checkpoint), None)
    info = {"reference": None, "reference_reason": None}
    ref = Reference(ckpt, opts.threads) if ckpt else None
    fallback: dict = {}
    if ref is None:
        info["reference_reason"] = next((a.checkpoint_reason for a in arts if a.checkpoint_reason), "")
        for model in ("predictor", "transformer"):
            cands = [a for a in arts if a.model == model and a.precision == "fp32"]
            cands.sort(key=lambda a: ("onnx", "tflite", "coreml").index(a.format))
            if cands:
                fallback[model] = cands[0]
        if not fallback:
            raise BadInput(f"no reference: {info['reference_reason']}; and the bundle has no fp32 artefact "
                           "to compare against")
        info["reference_reason"] += "; using the fp32 artefacts as reference instead"
    else:
        info["reference"] = str(ckpt)
    checks: list[Check] = []
    style_given = opts.given.get("style_image")
    rng_seed = opts.seed

    def reference_out(model, canonical):
        if ref is not None:
            return ref.run(model, canonical), ref.label
        fa = fallback.get(model)
        if fa is None:
            raise BadInput(f"no reference for the {model}")
        rt = runtimes_for(fa.format, opts.runtimes)[0] if runtimes_for(fa.format, opts.runtimes) else \
            runtimes_for(fa.format)[0]
        with make_runner(rt, fa.path, threads=opts.threads, **runner_options(rt, opts)) as r:
            _, _, out = run_plan(r, fa.inputs, fa.outputs, artifact_size(fa, opts.size), canonical, rng_seed)
        return out, f"{rt}:{fa.label}"

    # Reference bottleneck for the transformer checks (so transformer parity is isolated).
    ref_bottleneck = {}

    def bottleneck_for(size_style):
        if ref is None or not ref.has("predictor"):
            return None
        key = tuple(size_style)
        if key not in ref_bottleneck:
            pspecs = ref.runner("predictor").input_specs()
            plan = IOPlan(pspecs, ref.runner("predictor").output_specs(), key)
            can = plan.canonical_feeds({"style_image": style_given} if style_given is not None else {}, rng_seed)
            ref_bottleneck[key] = ref.run("predictor", can)[BOTTLENECK]
        return ref_bottleneck[key]

    pred_size = next((artifact_size(a, None) for a in arts if a.model == "predictor"), (256, 256))
    runs: dict = {}
    for a in arts:
        for rt in runtimes_for(a.format, opts.runtimes):
            precision = a.precision or "fp32"
            ck = Check(name=f"{a.model}/{a.format}/{precision}{'/' + a.variant if a.variant else ''}@{rt}",
                       model=a.model or "model", format=a.format, precision=precision, runtime=rt, path=a.label)
            try:
                with make_runner(rt, a.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                    size = artifact_size(a, opts.size)
                    given = dict(opts.given)
                    if a.model == "transformer" and BOTTLENECK not in given:
                        b = bottleneck_for(pred_size)
                        if b is not None:
                            given[BOTTLENECK] = b
                    plan, canonical, cand = run_plan(r, a.inputs, a.outputs, size, given, rng_seed)
                    ck.input_size = plan.input_size()
                    runs[(a.model, a.format, precision, a.variant, rt)] = (a, size)
                refout, ck.reference = reference_out(a.model, canonical)
                judge(ck, refout, cand, opts.rules)
            except (RuntimeUnavailable, StyleportError) as e:
                if isinstance(e, BadInput) and not isinstance(e, RuntimeUnavailable):
                    raise
                _error_check(ck, e)
            checks.append(ck)
    # Chained pipeline per format/precision/runtime: its predictor feeding its transformer.
    for (model, fmt, prec, var, rt), (ta, tsize) in list(runs.items()):
        if model != "transformer":
            continue
        pk = ("predictor", fmt, prec, var, rt)
        if pk not in runs:
            continue
        pa, psize = runs[pk]
        ck = Check(name=f"pipeline/{fmt}/{prec}{'/' + var if var else ''}@{rt}", model="pipeline", format=fmt,
                   precision=prec, runtime=rt, path=f"{pa.label} -> {ta.label}")
        try:
            style = {"style_image": style_given} if style_given is not None else {}
            with make_runner(rt, pa.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                _, pcan, pout = run_plan(r, pa.inputs, pa.outputs, psize, style, rng_seed)
            given = {k: v for k, v in opts.given.items() if k != BOTTLENECK}
            given[BOTTLENECK] = pout[BOTTLENECK]
            with make_runner(rt, ta.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                plan, tcan, cand = run_plan(r, ta.inputs, ta.outputs, tsize, given, rng_seed)
            ck.input_size = plan.input_size()
            rb, ck.reference = reference_out("predictor", pcan)
            tref = dict(tcan)
            tref[BOTTLENECK] = rb[BOTTLENECK]
            refout, _ = reference_out("transformer", tref)
            judge(ck, refout, cand, opts.rules)
        except (RuntimeUnavailable, StyleportError) as e:
            if isinstance(e, BadInput) and not isinstance(e, RuntimeUnavailable):
                raise
            _error_check(ck, e)
        checks.append(ck)
    if ref is not None:
        ref.close()
    return checks, info


# ---- parity of two files ------------------------------------------------------------------------

def pair_parity(reference: str, candidate: str, opts: Options, ref_runtime: str | None = None,
                cand_runtime: str | None = None) -> tuple[list[Check], dict]:
    ra, ca = bare_artifact(Path(reference)), bare_artifact(Path(candidate))
    rrt = ref_runtime or (runtimes_for(ra.format, opts.runtimes) or runtimes_for(ra.format))[0]
    crt = cand_runtime or (runtimes_for(ca.format, opts.runtimes) or runtimes_for(ca.format))[0]
    with make_runner(rrt, ra.path, threads=opts.threads, **runner_options(rrt, opts)) as r:
        rplan, canonical, ref_out = run_plan(r, None, None, opts.size or (DEFAULT_SIZE,) * 2, opts.given, opts.seed)
        rprec = r.precision()
    with make_runner(crt, ca.path, threads=opts.threads, **runner_options(crt, opts)) as c:
        cins = c.input_specs()
        cplan = IOPlan(cins, c.output_specs(), opts.size or (DEFAULT_SIZE,) * 2)
        missing = [s.name for s, role in zip(cins, cplan.in_roles) if role not in canonical]
        if missing or len(cins) != len(rplan.inputs):
            raise BadInput(f"{ca.label} and {ra.label} do not take the same inputs "
                           f"({[s.name for s in rplan.inputs]} vs {[s.name for s in cins]})")
        cand_out = cplan.canonical_outputs(c.run(cplan.feeds(canonical)))
        cprec = ca.precision or c.precision() or "fp32"
    model = cplan.model_role
    ck = Check(name=f"{model}/{ca.format}/{cprec}@{crt} vs {ra.label}", model=model, format=ca.format,
               precision=cprec, runtime=crt, path=ca.label, reference=f"{rrt}:{ra.label}",
               input_size=cplan.input_size())
    judge(ck, ref_out, cand_out, opts.rules)
    return [ck], {"reference": str(ra.path), "reference_precision": ra.precision or rprec,
                  "inputs": "given" if opts.given else f"seeded random (seed {opts.seed})"}


# ---- benchmark ----------------------------------------------------------------------------------

@dataclass
class BenchOptions(Options):
    warmup_runs: int = 1
    num_runs: int = 50
    min_seconds: float = 0.0
    max_seconds: float = 150.0
    parity: bool = True
    timeout: float = 900.0


def run_worker(job: dict, workdir: Path, tag: str, timeout: float) -> dict:
    job = dict(job)
    job["result"] = str(workdir / f"{tag}.result.json")
    job["save"] = str(workdir / tag)
    jpath = workdir / f"{tag}.job.json"
    jpath.write_text(json.dumps(job))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run([sys.executable, "-m", "styleport.runtime.worker", str(jpath)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "status": "error", "error": f"worker timed out after {timeout:.0f} s", "exit_code": 3}
    rpath = Path(job["result"])
    if not rpath.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return {"ok": False, "status": "error", "error": f"worker crashed: {tail[0][:300]}", "exit_code": 3}
    res = json.loads(rpath.read_text())
    if res.get("ok"):
        from styleport.runtime.worker import load_arrays
        res["_feeds"] = load_arrays(job["save"] + ".feeds.npz", res["feed_names"])
        res["_outputs"] = load_arrays(job["save"] + ".outputs.npz", res["output_names"])
    return res


def _save_feeds(workdir: Path, tag: str, arrays: dict) -> tuple[str, list]:
    from styleport.runtime.worker import save_arrays
    path = workdir / f"{tag}.given.npz"
    names = save_arrays(path, arrays)
    return str(path), names


def _file_bytes(path: Path) -> int:
    return mf.size_path(path) if path.exists() else 0


def bench(arts: list[Artifact], opts: BenchOptions, progress=None) -> tuple[list[dict], list[Check]]:
    """One result per artefact x runtime (plus a 'torch' row per model when asked and a checkpoint
    exists). Each runs in a fresh worker process."""
    results, checks = [], []
    ckpt = next((a.checkpoint for a in arts if a.checkpoint), None)
    ref = Reference(ckpt, opts.threads) if (ckpt and opts.parity) else None
    wanted = opts.runtimes
    torch_rows = ckpt is not None and (wanted is None or "torch" in wanted)
    pred_size = next((artifact_size(a, None) for a in arts if a.model == "predictor"), (256, 256))
    ref_b = None
    with tempfile.TemporaryDirectory(prefix="styleport-bench-") as tmp:
        workdir = Path(tmp)
        jobs = []
        for a in arts:
            rts = runtimes_for(a.format, wanted)
            if not rts:
                continue
            for rt in rts:
                jobs.append((a, rt))
        if torch_rows:
            seen = set()
            for a in arts:
                if a.model in ("predictor", "transformer") and a.bundle and a.model not in seen:
                    seen.add(a.model)
                    jobs.append((Artifact(path=ckpt, format="pytorch", model=a.model, precision="fp32",
                                          inputs=a.inputs, outputs=a.outputs, label=f"{ckpt.name} ({a.model})",
                                          bundle=a.bundle, checkpoint=ckpt), "torch"))
        if not jobs:
            raise BadInput("no runtime opens these models (check --runtimes)")
        for i, (a, rt) in enumerate(jobs):
            size = artifact_size(a, opts.size)
            given = dict(opts.given)
            if ref is not None and a.model == "transformer" and BOTTLENECK not in given and ref.has("predictor"):
                if ref_b is None:
                    style = {"style_image": opts.given["style_image"]} if "style_image" in opts.given else {}
                    p = ref.runner("predictor")
                    plan = IOPlan(p.input_specs(), p.output_specs(), pred_size)
                    ref_b = ref.run("predictor", plan.canonical_feeds(style, opts.seed))[BOTTLENECK]
                given[BOTTLENECK] = ref_b
            if ref is not None and a.inputs and a.format != "pytorch":
                # canonical feeds decided here so the reference sees exactly what the candidate sees
                plan = IOPlan(manifest_specs(a.inputs), manifest_specs(a.outputs or []), size)
                given = plan.canonical_feeds(given, opts.seed)
            job = {"runtime": rt, "path": str(a.path), "threads": opts.threads,
                   "options": {"part": a.model} if rt == "torch" else runner_options(rt, opts),
                   "manifest_inputs": a.inputs if rt != "torch" else None,
                   "manifest_outputs": a.outputs if rt != "torch" else None,
                   "size": list(size), "seed": opts.seed, "warmup_runs": opts.warmup_runs,
                   "num_runs": opts.num_runs, "min_seconds": opts.min_seconds, "max_seconds": opts.max_seconds,
                   "profile": bool(getattr(opts, "profile", False))}
            if given:
                job["feeds"], job["feed_names"] = _save_feeds(workdir, f"j{i}", given)
            if progress:
                progress(f"[{i + 1}/{len(jobs)}] {a.label} @ {rt}")
            res = run_worker(job, workdir, f"j{i}", opts.timeout)
            row, ck = _result_row(a, rt, res, ref, opts)
            results.append(row)
            if ck is not None:
                checks.append(ck)
    if ref is not None:
        ref.close()
    return results, checks


def _result_row(a: Artifact, rt: str, res: dict, ref: Reference | None, opts: BenchOptions):
    ok = res.get("ok")
    precision = a.precision or res.get("precision") or "fp32"
    model = a.model or res.get("model_role") or "model"
    row = {
        "model": model, "format": a.format, "precision": precision, "runtime": rt, "path": a.label,
        "variant": a.variant or None, "status": "ok" if ok else res.get("status", "error"),
        "error": None if ok else res.get("error"),
        "input_size": res.get("input_size"), "threads": res.get("threads") if ok else opts.threads,
        "latency_ms": None, "runs": res.get("runs"), "load_ms": res.get("load_ms"),
        "first_run_ms": res.get("first_run_ms"), "import_ms": res.get("import_ms"),
        "peak_rss_mb": res.get("peak_rss_mb"),
        "rss_before_load_mb": res.get("rss_before_load_mb"), "file_bytes": _file_bytes(a.path),
        "settings": res.get("settings"), "parity": None, "parity_reason": None,
    }
    if "profile" in res:  # bench --profile: runtime/base.py gives the dict
        row["profile"] = res["profile"]
    if ok:
        lat = res["latency_ms"]
        row["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "p99", "mean", "min", "max", "stdev")}
        if row["threads"] is None:
            row["threads"] = (res.get("settings") or {}).get("threads")
    ck = None
    if not ok:
        row["parity_reason"] = "not run: " + str(res.get("error"))
        ck = Check(name=f"{model}/{a.format}/{precision}@{rt}", model=model, format=a.format,
                   precision=precision, runtime=rt, path=a.label, status="skipped"
                   if res.get("status") == "skipped" else "error", reasons=[str(res.get("error"))])
    elif rt == "torch":
        row["parity_reason"] = "this is the PyTorch reference"
    elif ref is None:
        row["parity_reason"] = a.checkpoint_reason or "parity disabled (--no-parity)"
    elif a.model not in ("predictor", "transformer") or not ref.has(a.model):
        row["parity_reason"] = f"the reference has no {a.model}"
    else:
        ck = Check(name=f"{model}/{a.format}/{precision}{'/' + a.variant if a.variant else ''}@{rt}",
                   model=model, format=a.format, precision=precision, runtime=rt, path=a.label,
                   reference=ref.label, input_size=res.get("input_size"))
        try:
            judge(ck, ref.run(a.model, res["_feeds"]), res["_outputs"], opts.rules)
        except StyleportError as e:
            _error_check(ck, e)
        row["parity"] = ck.summary()
    return row, ck


def exit_code(checks: list[Check], results: list[dict] | None = None) -> int:
    statuses = [c.status for c in checks] + [r["status"] for r in (results or [])]
    if any(s == "error" for s in statuses):
        return 3
    if any(s == "fail" for s in statuses):
        return 1
    ran = [s for s in statuses if s in ("pass", "ok")]
    if not ran and statuses:
        return 3
    return 0
