"""Write a bundle: every requested network x format x precision, plus ``manifest.json``.

The bundle is built in a temp folder beside the target (``.NAME.tmp-PID``) and renamed into place
at the end: a failure, Ctrl-C or kill leaves any existing bundle untouched; stale temp folders of
dead processes are removed by the next export into the same parent. An existing bundle is replaced
only with ``force``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from styleport import __version__
from styleport.errors import BadInput, ConversionError, StyleportError
from styleport.export.coreml_export import io_kind
from styleport.export.formats import CheckSkipped, ExportOptions, artefact_path, exporter
from styleport.export.timing import Ticker, clock, one_line, step
from styleport.export.wrappers import LAYOUT, export_module, io_spec, networks
from styleport.interrupts import check as check_interrupt
from styleport.manifest import FORMATS, KIND, MANIFEST, PRECISIONS, SCHEMA, sha256_path, size_path, validate
from styleport.models.checkpoint import WEIGHTS, _umask_mode, load_checkpoint, sha256_file

TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "onnxconverter-common", "litert-torch",
         "ai-edge-litert", "ai-edge-quantizer", "coremltools", "executorch", "torchao", "numpy")


def tool_versions() -> dict:
    out = {"styleport": __version__, "python": sys.version.split()[0]}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def parse_list(value: str, allowed: tuple, what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not items:
        raise BadInput(f"no {what} given (choose from {', '.join(allowed)})")
    for v in items:
        if v not in allowed:
            raise BadInput(f"unknown {what} {v!r} (choose from {', '.join(allowed)})")
    return list(dict.fromkeys(items))


def _clean_stale(parent: Path, name: str) -> None:
    for p in parent.glob(f".{name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1].split(".")[0])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_fp32(fmt: str, path: Path, module, sample, inputs, outputs, net: str, rules=None,
                allow_drift: bool = False, labels: dict | None = None) -> dict:
    """Run the fresh fp32 artefact once against the wrapped torch module and judge it at the fp32
    tolerance of ``parity`` (its defaults, overridden by ``rules`` from ``--tolerances``). Beyond it
    the export fails (exit 3, nothing written) unless ``allow_drift``; then the drift is recorded."""
    with step("gate", **(labels or {})):
        return _check_fp32_inner(fmt, path, module, sample, inputs, outputs, net, rules, allow_drift)


def _check_fp32_inner(fmt, path, module, sample, inputs, outputs, net, rules, allow_drift) -> dict:
    from styleport.metrics import compare
    from styleport.runtime.harness.tolerances import check, resolve_tolerance
    with torch.no_grad():
        ref = module(*sample).numpy()
    feeds = {s["name"]: t.numpy() for s, t in zip(inputs, sample)}
    try:
        runtime, got = exporter(fmt).check(path, feeds)
    except CheckSkipped as e:
        return {"runtime": None, "reason": str(e)}
    got = np.asarray(got)
    if got.shape != ref.shape:
        raise RuntimeError(f"{fmt} output shape {list(got.shape)} differs from torch's {list(ref.shape)}")
    if not np.isfinite(got).all():
        raise RuntimeError(f"{fmt} output holds NaN/Inf")
    out = (outputs or [{}])[0]
    image = out.get("name") == "stylized_image"
    r, g = ref, got
    if image and out.get("layout") == "NHWC":
        r, g = ref.transpose(0, 3, 1, 2), got.transpose(0, 3, 1, 2)
    m = compare(r, g, "image" if image else "vector")
    tol = resolve_tolerance(net, fmt, "fp32", runtime, rules)
    ok, reasons = check(m, tol)
    res = {"runtime": runtime, "max_abs_vs_torch": float(m["max_abs"]), "tolerance": tol, "passed": ok}
    if not ok:
        what = f"{net} {fmt} fp32 differs from PyTorch beyond the fp32 tolerance ({'; '.join(reasons)})"
        if not allow_drift:
            raise ConversionError(f"{what}: a miscompile; the bundle was not written, an existing one is left "
                                  "as it was (--allow-drift writes it anyway, --tolerances F sets the tolerance)")
        res["drift"] = reasons
        print(f"styleport: warning: {what}; written because of --allow-drift", file=sys.stderr)
    return res


@dataclass
class _Job:
    """One network of one format, ready to convert: the wrapped module, its I/O and export options."""

    fmt: str
    net: str
    module: torch.nn.Module
    inputs: list
    outputs: list
    sample: tuple
    opts: ExportOptions

    @classmethod
    def make(cls, model, net, fmt, prec, size, style_size, dynamic, opset, extra, coreml_io="tensor") -> "_Job":
        dyn = bool(dynamic and exporter(fmt).DYNAMIC and net == "transformer")
        inputs, outputs, sample = io_spec(model, net, fmt, size, style_size, dyn)
        if fmt == "coreml":
            from styleport.export.coreml_export import image_io
            inputs, outputs = image_io(inputs, outputs, coreml_io)
        return cls(fmt, net, export_module(model, net, fmt), inputs, outputs, sample,
                   ExportOptions(precision=prec, network=net, dynamic=dyn, opset=opset, extra=dict(extra or {})))

    def export(self, path: Path, precision: str | None = None) -> dict:
        opts = self.opts if precision is None else replace(self.opts, precision=precision)
        return exporter(self.fmt).export(self.module, self.sample, self.inputs, self.outputs, path, opts)

    def fp32_base(self, tmp: Path, fp32_paths: dict, rescaled: bool = False) -> Path:
        """The fp32 artefact quantizers start from; exported unlisted (under _work) when fp32 was not
        asked for. A module rescaled for fp16 (export/fp16safe.py) gets its own, never shared."""
        if rescaled:
            base = tmp / "_work" / artefact_path(self.fmt, self.net, "fp32-fp16safe")
            with step("convert", variant="fp32 base (fp16-safe)"):
                self.export(base, "fp32")
            return base
        key = (self.net, self.fmt)
        if key not in fp32_paths:
            base = tmp / "_work" / artefact_path(self.fmt, self.net, "fp32")
            with step("convert", variant="fp32 base"):
                self.export(base, "fp32")
            fp32_paths[key] = base
        return fp32_paths[key]


def export_bundle(checkpoint, out, formats=("onnx", "tflite", "coreml"), precisions=("fp32",), size=384,
                  style_size=256, dynamic=False, force=False, opset=None, progress=True, calibration=None,
                  export_options: dict | None = None, fp16_rescale=True, coreml_io="tensor", credits=None,
                  tolerances: list | None = None, allow_drift: bool = False, parallel: bool | None = None,
                  alongside=None, networks: list | tuple | None = None) -> dict:
    """Write the bundle. ``export_options`` goes unchanged to every format's exporter
    (``ExportOptions.extra``): format-specific switches live there, not in this signature.
    ``coreml_io``: "tensor" or "image" (coreml_export.image_io); ``credits``: {"author", "license"}
    overrides for the files' metadata (export/metadata.py); ``fp16_rescale``: the fp16-safe rescale of
    convs feeding instance norms (export/fp16safe.py) for fp16 artefacts. ``tolerances``: rules of
    ``runtime.harness.tolerances.load_tolerances`` for the fp32 check against torch; ``allow_drift``: write the
    bundle even when an fp32 artefact breaks that tolerance (recorded in its ``details.check``).
    ``networks``: which of the model's networks to write (default: all, ``wrappers.networks``), e.g.
    ``["transformer"]`` for a second content size of an arbitrary-style model: its predictor
    depends on ``style_size`` only, so the first bundle's predictor files serve every size.

    ``manifest["export"]["timings"]``: the wall time of every step (export/timing.py: trace, convert,
    simplify, calibrate, quantize per variant, gate, score, choose, ...), rows that add up to the
    export's wall time; with ``progress`` a bar on stderr (terminals only) names the artefact and
    step, and one summary line of the timings is printed on stderr at the end.

    ``parallel`` (None: when this process may use 2 or more cores: the machine has them and torch's
    thread count is not limited to one, e.g. by OMP_NUM_THREADS=1 or torch.set_num_threads(1), as
    under several test workers): the ExecuTorch artefacts are written by
    a worker process while this one writes the other formats (ExecuTorch's lowering passes are 60%
    of a four-format export and independent of the rest); the files, manifest entries and order are
    those of a serial export, and the worker's own step timings are kept under
    ``timings["parallel"]["executorch"]``.

    ``alongside``: a callable of the caller's, run in this process right after the worker starts and
    before this process's own conversions (serially where there is no worker), timed as the step
    ``alongside``; the export's bar is hidden meanwhile so the callable may show its own. The demo
    stylises its gallery there: on 2 cores this process's formats take less time than the
    worker's, so the gallery costs the demo little wall time. An exception of the callable stops the
    worker, removes the unfinished bundle and propagates unchanged."""
    t_start = time.perf_counter()
    bar = tqdm(total=None, desc="export", unit="step", disable=None if progress else True, leave=False)
    ticker = Ticker(bar)
    run_alongside = None
    if alongside is not None:
        def run_alongside():
            ticker.paused.set()
            bar.clear()
            try:
                alongside()
            finally:
                ticker.paused.clear()
                bar.refresh()
    try:
        with clock(lambda text: bar.set_postfix_str(text[:60], refresh=True)):
            manifest = _write(checkpoint, out, formats, precisions, size, style_size, dynamic, force, opset,
                              calibration, export_options, fp16_rescale, coreml_io, credits, tolerances,
                              allow_drift, bar, t_start, parallel, run_alongside, networks)
    finally:
        ticker.close()
        bar.close()
    print(f"styleport: {one_line(manifest['export']['timings'])}", file=sys.stderr, flush=True)
    return manifest


def _write(checkpoint, out, formats, precisions, size, style_size, dynamic, force, opset, calibration,
           export_options, fp16_rescale, coreml_io, credits, tolerances, allow_drift, bar, t_start,
           parallel=False, alongside=None, only=None) -> dict:
    """export_bundle's work, inside its step clock; ``only``: export_bundle's ``networks``."""
    from styleport.export.coreml_export import IO_KINDS
    from styleport.export.timing import current as current_clock
    from styleport.quantization import make_variant

    out = Path(out)
    ckpt = Path(checkpoint)
    prep = step("prepare")
    prep.__enter__()
    model, doc = load_checkpoint(ckpt)
    if isinstance(size, int):
        size = (size, size)
    if any(s < 16 or s % 4 for s in size) or style_size < 16:
        raise BadInput(f"--size must be >= 16 and a multiple of 4 (the network downsamples by 4), got {size}")
    if coreml_io not in IO_KINDS:
        raise BadInput(f"--coreml-io must be one of {', '.join(IO_KINDS)}, got {coreml_io!r}")
    if model.kind == "arbitrary" and style_size < 64:
        raise BadInput(f"--style-size must be >= 64 for the style predictor, got {style_size}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"output folder does not exist: {parent}")
    if out.exists() and not force:
        raise BadInput(f"{out} exists: pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a bundle folder")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"output folder is not writable: {parent}")
    nets = networks(model)
    if only is not None:
        unknown = sorted(set(only) - set(nets))
        if unknown or not only:
            raise BadInput(f"networks must be some of {', '.join(nets)} for this model, got {', '.join(unknown) or 'none'}")
        nets = [n for n in nets if n in only]
    # reject a bad calibration set before converting anything
    if calibration and "int8" in precisions:
        from styleport.quantization.calibration import check as check_calibration
        check_calibration(calibration)
    if tolerances:  # a mistyped selector must not pass silently (as in parity)
        from styleport.runtime.harness.tolerances import check_selectors
        check_selectors(tolerances, [(n, f, p) for n in networks(model) for f in formats for p in precisions])
    _clean_stale(parent, out.name)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}.", dir=parent))
        _umask_mode(tmp)  # mkdtemp makes 0700; a finished folder follows the umask like any other
    except OSError as e:
        raise BadInput(f"cannot write in {parent}: {e.strerror or e}") from None

    ckpt_sha = sha256_file(ckpt / WEIGHTS)
    prep.__exit__(None, None, None)
    # --target-psnr (issue 13): every int8 variant is written, the fastest one that reaches the target
    # becomes the plain int8; with --no-variants only that one stays
    target = (calibration or {}).get("target_psnr")
    keep_variants = (calibration or {}).get("variants", True)
    if target is not None and not keep_variants:
        calibration = dict(calibration, variants=True)
    jobs = [(n, f, p) for n in nets for f in formats for p in precisions]
    order = {j: i for i, j in enumerate(jobs)}   # the manifest lists artefacts in this order
    worker = None
    if parallel is None:
        parallel = (os.cpu_count() or 1) >= 2 and torch.get_num_threads() >= 2
    if parallel and PARALLEL_FORMAT in formats and len(formats) > 1:
        # the worker exports the same checkpoint with the same options, its formats only, into
        # tmp/_worker/bundle; its files and entries are merged below (no target/floor: those look at
        # every format together and run here, after the merge)
        wcal = {k: v for k, v in (calibration or {}).items() if k not in ("target_psnr", "int8_floor")} or None
        (tmp / "_worker").mkdir()
        worker = _start_worker(dict(
            checkpoint=str(ckpt), out=str(tmp / "_worker" / "bundle"), formats=(PARALLEL_FORMAT,),
            precisions=tuple(precisions), size=size, style_size=style_size, dynamic=dynamic, force=True,
            opset=opset, calibration=wcal, export_options=export_options, fp16_rescale=fp16_rescale,
            coreml_io=coreml_io, credits=credits, tolerances=tolerances, allow_drift=allow_drift, only=only))
        jobs = [j for j in jobs if j[1] != PARALLEL_FORMAT]
    if alongside is not None:
        try:
            with step("alongside"):
                alongside()
        except BaseException:
            _stop_worker(worker)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    # one bar unit per artefact job, plus the quality report, the float-layer search and the choice
    bar.reset(total=len(jobs) + (any(p != "fp32" for p in precisions))
              + 2 * (target is not None and "int8" in precisions))
    artifacts = []
    current = None
    calib_cache = {}  # calibration feeds per network and input layout, built once (quantization._calib_feeds)
    try:
        fp32_paths = {}
        for net, fmt, prec in jobs:
            current = (net, fmt, prec)
            labels = {"model": net, "format": fmt, "precision": prec}
            t0 = time.perf_counter()
            with step("prepare", **labels):
                job = _Job.make(model, net, fmt, prec, size, style_size, dynamic, opset, export_options, coreml_io)
                rel = artefact_path(fmt, net, prec)
                path = tmp / rel
                # fp16-safe export (issue #16): rescale convs feeding instance norms; fp16 artefacts only
                safe = None
                if prec == "fp16" and fp16_rescale:
                    from styleport.export.fp16safe import make_fp16_safe
                    safe = make_fp16_safe(job.module, job.sample, job.inputs)
                rescaled = bool(safe and safe["applied"])
            if prec in exporter(fmt).NATIVE:
                with step("convert", **labels):
                    details = job.export(path)
                if prec == "fp32":
                    details["check"] = _check_fp32(fmt, path, job.module, job.sample, job.inputs, job.outputs,
                                                   net, tolerances, allow_drift, labels)
                    fp32_paths[(net, fmt)] = path
            else:
                with step("quantize", **labels):
                    # quantizers start from the fp32 artefact (made unlisted if needed) or from the module
                    if exporter(fmt).BASE == "file":
                        base = job.fp32_base(tmp, fp32_paths, rescaled)
                    else:
                        base = None if rescaled else fp32_paths.get((net, fmt))
                    details = make_variant(fmt, prec, base, path, module=job.module, sample=job.sample,
                                           inputs=job.inputs, outputs=job.outputs, network=net, model=model,
                                           calibration=calibration, options=job.opts, cache=calib_cache)
            details["seconds"] = round(time.perf_counter() - t0, 2)
            meta = step("metadata", **labels)
            meta.__enter__()
            if safe is not None:
                details["fp16_rescale"] = safe
            # extra artefacts of one precision (quantization variants), keyed by "variant"
            extra = details.pop("variants", [])
            io = io_kind(job.inputs, job.outputs)
            entry = {"model": net, "format": fmt, "precision": prec, "path": rel, "io": io,
                     "inputs": job.inputs, "outputs": job.outputs}
            details["metadata"] = _stamp(tmp, doc, ckpt_sha, entry, style_size, credits)
            artifacts.append({**entry, "bytes": size_path(path), "sha256": sha256_path(path), "details": details})
            for v in extra:
                vrel = Path(v["path"]).relative_to(tmp).as_posix()
                entry = {"model": net, "format": fmt, "precision": prec, "variant": v["variant"], "path": vrel,
                         "io": io, "inputs": job.inputs, "outputs": job.outputs}
                v["details"]["metadata"] = _stamp(tmp, doc, ckpt_sha, entry, style_size, credits)
                artifacts.append({**entry, "bytes": size_path(v["path"]), "sha256": sha256_path(v["path"]),
                                  "details": v["details"]})
            meta.__exit__(None, None, None)
            bar.update(1)
        worker_timings = None
        if worker is not None:
            current = (PARALLEL_FORMAT, "(worker process)", "")
            with step("wait", format=PARALLEL_FORMAT):
                sub = _join_worker(worker, tmp, artifacts, fp32_paths)
            worker = None
            worker_timings = sub["export"]["timings"]
            artifacts.sort(key=lambda a: (order[(a["model"], a["format"], a["precision"])], bool(a.get("variant"))))
            bar.update(sum(1 for j in order if j[1] == PARALLEL_FORMAT))
        if target is not None and "int8" in precisions:
            from styleport.quantization import _has_calibration
            if "onnx" in formats and _has_calibration(calibration):
                current = ("transformer", "onnx", f"int8 --target-psnr {target} (float-layer search)")
                with step("search", model="transformer", format="onnx", precision="int8", variant="target"):
                    artifacts.append(_target_psnr(model, tmp, fp32_paths, size, style_size, calibration, float(target),
                                                  opset, ckpt_sha, doc, credits))
                bar.update(1)
            elif "onnx" in formats:
                print("styleport: --target-psnr: no calibration images, so no ONNX float-layer search "
                      "(variant 'target'); choosing among the int8 artefacts written", file=sys.stderr)
        if any(p != "fp32" for p in precisions):
            from styleport.quantization.report import write_quality_report
            with step("score"):
                qdoc = write_quality_report(tmp, artifacts, model, fp32_paths, size, style_size, calibration)
            bar.update(1)
            floor = (calibration or {}).get("int8_floor")
            if floor is not None and target is None and "int8" in precisions:
                current = ("int8", "floor", f"{floor} dB")
                with step("floor"):
                    _int8_floor(tmp, artifacts, qdoc, float(floor), model, fp32_paths, size, style_size,
                                calibration, doc, ckpt_sha, credits)
            if target is not None and "int8" in precisions:
                current = ("int8", "choice", f"--target-psnr {target}")
                with step("choose"):
                    _choose_int8(tmp, artifacts, qdoc, float(target), keep_variants, doc, ckpt_sha, style_size,
                                 credits)
                bar.update(1)
        write = step("write")
        write.__enter__()
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        manifest = {
            "schema": SCHEMA, "kind": KIND, "created_by": f"styleport {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"checkpoint": ckpt.name, "checkpoint_path": str(ckpt.resolve()),
                       "sha256": ckpt_sha, "preset": doc["model"]["preset"],
                       "config": doc["model"], "styles": doc.get("styles")},
            "preprocessing": preprocessing(model, size, style_size, dynamic),
            "export": {"size": list(size), "style_size": style_size, "dynamic": bool(dynamic), "coreml_io": coreml_io,
                       "formats": list(formats), "precisions": list(precisions)},
            "tools": tool_versions(),
            "determinism": "the same checkpoint and options give byte-identical ONNX, TFLite and CoreML "
                           "files (CoreML package identifiers are derived from item paths); only this "
                           "manifest's 'created' and timing fields differ between exports",
            "artifacts": artifacts,
        }
        validate(manifest)
        import json
        write.__exit__(None, None, None)  # the manifest holds the timings: written after the clock stops
        wall = time.perf_counter() - t_start
        manifest["export"]["seconds"] = round(wall, 1)
        manifest["export"]["timings"] = current_clock().summary(wall)
        if worker_timings is not None:
            manifest["export"]["timings"]["parallel"] = {PARALLEL_FORMAT: worker_timings}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        check_interrupt()   # Ctrl-C during the export, even one a library swallowed: no new bundle
        if out.exists():
            old = parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return manifest
    except StyleportError as e:
        _stop_worker(worker)
        kept = _keep_worker_log(tmp, parent, out)
        if kept and e.args:
            e.args = (str(e.args[0]).replace(str(tmp / "_worker" / "bundle.export-error.log"), str(kept)),) + e.args[1:]
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException as e:
        _stop_worker(worker)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        log = parent / f"{out.name}.export-error.log"
        try:
            from styleport.export.wrappers import CAPTURED
            log.write_text("".join(traceback.format_exception(e)) + "\n--- converter output ---\n" + CAPTURED[0])
            where = f"; log: {log}"
        except OSError:
            where = ""
        what = " ".join(current) if current else "export"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConversionError(f"{what} failed: {type(e).__name__}: {first}{where}") from None


# The format exported by a worker process beside the others (export_bundle's ``parallel``): on the
# demo's four-format export ExecuTorch's lowering was 70 of 121 s, the three other formats 51 s.
# One worker per network was tried on the 2-core box: 99.9 s vs 94.4 s for one worker (three busy
# processes on two cores; one run of benchmarks/export_cost.py --scenario demo, not kept), so one it is.
PARALLEL_FORMAT = "executorch"


def _worker_main(kw: dict) -> dict:
    """In the worker process: one export of ``kw["formats"]`` under its own step clock, silent."""
    t0 = time.perf_counter()
    # one torch thread: the parent process converts the other formats meanwhile (two busy processes
    # with two threads each on 2 cores slowed the demo's ExecuTorch lowering from 77 to 96 s in one
    # run); the lowering is Python passes. The files do not depend on the thread count: before this
    # line, test_reexport_is_byte_identical compared a one-thread serial export (pytest-xdist) with
    # this worker at two threads, byte for byte
    torch.set_num_threads(1)
    bar = tqdm(total=None, disable=True)
    with clock():
        return _write(bar=bar, t_start=t0, parallel=False, **kw)


def _start_worker(kw: dict):
    import concurrent.futures
    import multiprocessing
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return pool, pool.submit(_worker_main, kw)


def _join_worker(worker, tmp: Path, artifacts: list, fp32_paths: dict) -> dict:
    """Wait for the worker; move its files into ``tmp`` and its entries into ``artifacts``. A
    StyleportError of the worker (its conversion failed) is raised here as it was there."""
    pool, fut = worker
    try:
        sub = fut.result()
    finally:
        pool.shutdown(wait=True)
    root = tmp / "_worker" / "bundle"
    for a in sub["artifacts"]:
        dst = tmp / a["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / a["path"], dst)
        artifacts.append(a)
        if a["precision"] == "fp32" and not a.get("variant"):
            fp32_paths[(a["model"], a["format"])] = dst
    shutil.rmtree(tmp / "_worker", ignore_errors=True)
    return sub


def _stop_worker(worker) -> None:
    """An export that fails here does not wait for the worker's conversions."""
    if worker is None:
        return
    pool, fut = worker
    fut.cancel()
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _keep_worker_log(tmp: Path, parent: Path, out: Path) -> Path | None:
    """The worker's error log (beside its own bundle, inside tmp) is copied where the user looks."""
    log = tmp / "_worker" / "bundle.export-error.log"
    if log.is_file():
        try:
            shutil.copyfile(log, parent / f"{out.name}.export-error.log")
            return parent / f"{out.name}.export-error.log"
        except OSError:
            pass
    return None


def _target_psnr(model, tmp, fp32_paths, size, style_size, calibration, target, opset, ckpt_sha, doc,
                 credits) -> dict:
    """``--target-psnr``, first half: the smallest set of float layers that brings the ONNX static
    int8 transformer to the target PSNR; written as variant ``target`` (curve in sensitivity.json),
    one more candidate for the latency-aware choice (:func:`_choose_int8`)."""
    import json

    from styleport.quantization import _variant_path, search_target_psnr

    job = _Job.make(model, "transformer", "onnx", "fp32", size, style_size, False, opset, None)
    base = job.fp32_base(tmp, fp32_paths)
    rel = _variant_path(Path(artefact_path("onnx", "transformer", "int8")), "target").as_posix()
    res = search_target_psnr(base, tmp / rel, model=model, network="transformer", inputs=job.inputs,
                             sample=job.sample, calibration=calibration, target_psnr=target, style_size=style_size)
    (tmp / "sensitivity.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    entry = {"model": "transformer", "format": "onnx", "precision": "int8", "variant": "target", "path": rel,
             "io": io_kind(job.inputs, job.outputs), "inputs": job.inputs, "outputs": job.outputs}
    details = {"target_psnr_db": target, "report": "sensitivity.json", "int8_kind": "target",
               **{k: res[k] for k in ("float_layers", "psnr_db") if k in res}}
    details["metadata"] = _stamp(tmp, doc, ckpt_sha, entry, style_size, credits)
    return {**entry, "bytes": size_path(tmp / rel), "sha256": sha256_path(tmp / rel), "details": details}


def _choose_int8(tmp, artifacts, qdoc, target, keep_variants, doc, ckpt_sha, style_size, credits) -> None:
    """``--target-psnr``, second half: per network and format, the fastest int8 artefact that reaches
    the target becomes the plain int8 (quantization/choose.py); files re-stamped, hashes redone,
    quality.json/.md rewritten with the table; without variants only the chosen file stays."""
    from styleport.quantization.choose import choose
    from styleport.quantization.report import write_quality_files

    records = choose(tmp, artifacts, qdoc, target)
    for rec in records:
        for a in artifacts:
            if (a["model"], a["format"], a["precision"]) == (rec["model"], rec["format"], "int8") and not a.get("variant"):
                a["details"]["int8_choice"] = {k: rec[k] for k in ("target_psnr_db", "chosen", "changed", "reason")}
    if not keep_variants:
        gone = [a for a in artifacts if a.get("variant")]
        for a in gone:
            p = tmp / a["path"]
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        artifacts[:] = [a for a in artifacts if not a.get("variant")]
        kept = {a["path"] for a in artifacts}
        qdoc["results"] = [r for r in qdoc["results"] if r["path"] in kept]
    changed = {(r["model"], r["format"]) for r in records if r["changed"]}
    for a in artifacts:
        if a["precision"] == "int8" and (a["model"], a["format"]) in changed:  # swapped: re-stamp, re-hash
            _restamp(tmp, a, doc, ckpt_sha, style_size, credits)
    qdoc["int8_choice"] = records
    write_quality_files(tmp, qdoc)


# The cheap fallback of a calibrated plain int8 that misses the floor: the format's uncalibrated
# dynamic-range kind (weights int8, activations quantized per run), the most accurate of the fast
# ones (ONNX transformer on Google's weights: dynamic 37.7 dB vs qlinear 34.2 dB at 384²; at 128²
# qlinear fell to 28.5 dB on the demo's pair). CoreML linear and ExecuTorch dynamic are weight-only /
# dynamic already: nothing cheaper and more accurate to fall back to.
FLOOR_FALLBACK = {("onnx", "qlinear"): "dynamic", ("onnx", "static"): "dynamic", ("tflite", "full"): "dynamic"}


def _int8_floor(tmp, artifacts, qdoc, floor, model, fp32_paths, size, style_size, calibration, doc, ckpt_sha,
                credits) -> None:
    """``calibration["int8_floor"]`` (the demo: its int8 parity tolerance): a calibrated plain int8
    whose worst held-out pair of the quality report is below ``floor`` dB is quantized again with
    the format's dynamic-range kind (FLOOR_FALLBACK); the fallback replaces it when it scores
    higher, and ``details.int8_floor`` (and stderr) says what happened. One extra quantization,
    only where the plain file misses: the bounded cousin of ``--target-psnr``, which writes and
    times every variant."""
    from styleport.quantization.report import evaluate, write_quality_files
    rows = {r["path"]: r for r in qdoc["results"]}
    for a in artifacts:
        if a["precision"] != "int8" or a.get("variant"):
            continue
        row = rows.get(a["path"], {})
        first = row.get("psnr_min_db")
        kind = a["details"].get("int8_kind")
        alt = FLOOR_FALLBACK.get((a["format"], kind))
        if first is None or first >= floor or alt is None or (a["model"], a["format"]) not in fp32_paths:
            continue
        path = tmp / a["path"]
        trial = path.with_name(".floor-" + path.name)
        if a["format"] == "onnx":
            from styleport.quantization.onnx_quant import quantize
            d = quantize(fp32_paths[(a["model"], "onnx")], trial, "dynamic")
        else:
            from styleport.quantization.tflite_quant import quantize
            d = quantize(fp32_paths[(a["model"], "tflite")], trial, "dynamic")
        probe = dict(a, path=trial.relative_to(tmp).as_posix(), bytes=size_path(trial))
        new = evaluate([probe], tmp, model, size, style_size, calibration)["results"][0]
        got = new.get("psnr_min_db")
        rec = {"floor_db": floor, "first": {"kind": kind, "psnr_min_db": first}, "fallback": {"kind": alt, "psnr_min_db": got}}
        if got is None or got <= first:
            trial.unlink(missing_ok=True)
            rec["kept"] = kind
            print(f"styleport: {a['model']} {a['format']} int8: {kind} scores {first} dB (< {floor}); the {alt} "
                  f"fallback is no better ({got} dB): {kind} kept", file=sys.stderr)
        else:
            os.replace(trial, path)
            rec["kept"] = alt
            keep = {k: a["details"][k] for k in ("seconds",) if k in a["details"]}
            a["details"] = {**d, **keep, "int8_kind": alt, "calibration": None}
            _restamp(tmp, a, doc, ckpt_sha, style_size, credits)
            new.update(path=a["path"], bytes=a["bytes"])
            rows[a["path"]].clear()
            rows[a["path"]].update(new)
            a["details"]["quality"] = {"psnr_db": new["psnr_db"], "ssim": new["ssim"],
                                       "vs": "torch fp32, held-out images (quality.json)"}
            print(f"styleport: {a['model']} {a['format']} int8: {kind} scores {first} dB on the held-out pair "
                  f"(< {floor}): the {alt} kind replaces it ({got} dB)", file=sys.stderr)
        a["details"]["int8_floor"] = rec
        qdoc.setdefault("int8_floor", []).append({"model": a["model"], "format": a["format"], **rec})
    if qdoc.get("int8_floor"):
        write_quality_files(tmp, qdoc)


def _restamp(tmp: Path, a: dict, doc: dict, ckpt_sha: str, style_size: int, credits) -> None:
    """A manifest entry whose file was replaced (the int8 choice, the int8 floor): the file's own
    metadata stamped again, its bytes and hash redone."""
    entry = {k: a[k] for k in ("model", "format", "precision", "path", "io", "inputs", "outputs")}
    if a.get("variant"):
        entry["variant"] = a["variant"]
    a["details"]["metadata"] = _stamp(tmp, doc, ckpt_sha, entry, style_size, credits)
    a["bytes"], a["sha256"] = size_path(tmp / a["path"]), sha256_path(tmp / a["path"])


def _stamp(tmp: Path, doc: dict, ckpt_sha: str, entry: dict, style_size: int, credits) -> dict:
    """Write the file's own metadata (name, description, version, author, licence, I/O texts)."""
    from styleport.export.metadata import describe, stamp
    meta = describe(doc, ckpt_sha, entry, style_size, credits)
    return stamp(entry["format"], tmp / entry["path"], meta, entry["inputs"], entry["outputs"])


def preprocessing(model, size, style_size, dynamic) -> dict:
    pre = {
        "content_image": {"color": "RGB", "range": [0.0, 1.0], "dtype": "float32",
                          "resize": "any size" if dynamic else f"stretch to {size[0]}x{size[1]} (H x W); "
                                    "resize the output back to the input's size",
                          "size": None if dynamic else list(size),
                          "size_multiple": 4},
        "stylized_image": {"color": "RGB", "range": [0.0, 1.0], "note": "clamp to [0,1], multiply by 255"},
        "layouts": dict(LAYOUT),
    }
    if model.kind == "arbitrary":
        pre["style_image"] = {"color": "RGB", "range": [0.0, 1.0], "dtype": "float32",
                              "resize": f"short side to {style_size}, centre crop {style_size}x{style_size}",
                              "size": [style_size, style_size]}
        pre["style_strength"] = ("bottleneck = s * predictor(style) + (1 - s) * predictor(content resized "
                                 f"to {style_size}x{style_size}), s in [0, 1]")
    if model.kind == "multi":
        pre["style_weights"] = {"length": model.num_styles, "note": "non-negative, summing to 1 (one-hot = one style)"}
    return pre


FORMATS_ALL = FORMATS
PRECISIONS_ALL = PRECISIONS
