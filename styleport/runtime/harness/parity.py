"""Parity: a bundle against its PyTorch checkpoint, or one model file against another.

Loaders build (runtime/harness/targets.py), runners run (runtime/runners/registry.py), comparators compare
(runtime/harness/checks.py): this module only decides what is compared with what.

* ``bundle_parity``: every artefact x runtime against the torch reference (the predictor by its
  bottleneck; the transformer fed the reference bottleneck, so its parity is isolated), then each
  format's chained pipeline (its own predictor feeding its own transformer). Without the
  checkpoint, the bundle's fp32 artefacts stand in as reference and are left out of the checks:
  an artefact is never reported as passing against itself.
* ``pair_parity``: file B against file A on the same inputs; each side may declare its value range
  and colour order (third-party files: 0-255, BGR).
"""

from __future__ import annotations

from pathlib import Path

from styleport import manifest as mf
from styleport.errors import BadInput
from styleport.runtime.harness.adapt import BOTTLENECK, IOPlan, merge_manifest
from styleport.runtime.runners.base import RuntimeUnavailable, StyleportError
from styleport.runtime.harness.checks import Check, check_name, error_check, judge
from styleport.runtime.harness.tolerances import check_selectors
from styleport.runtime.harness.reference import Reference
from styleport.runtime.runners.registry import make_runner, runtimes_for, usable_here
from styleport.runtime.harness.targets import (DEFAULT_SIZE, Artifact, Convention, Options, apply_convention,
                                       artifact_size, bare_artifact, runner_options)

FALLBACK_ORDER = mf.FORMATS


def _failed(ck: Check, e: Exception) -> None:
    """A runtime that cannot run here or fails becomes an error row; a user mistake stays an exception."""
    if isinstance(e, BadInput) and not isinstance(e, RuntimeUnavailable):
        raise e
    error_check(ck, e)


def run_plan(runner, inputs_manifest, outputs_manifest, size, given, seed,
             conv: Convention | None = None) -> tuple[IOPlan, dict, dict]:
    """Open-runner + manifest (+ convention) -> (plan, canonical feeds, canonical outputs)."""
    ins = apply_convention(merge_manifest(runner.input_specs(), inputs_manifest), conv)
    outs = apply_convention(merge_manifest(runner.output_specs(), outputs_manifest), conv)
    plan = IOPlan(ins, outs, size)
    canonical = plan.canonical_feeds(given, seed)
    return plan, canonical, plan.canonical_outputs(runner.run(plan.feeds(canonical)))


def emulation_report(runner) -> dict | None:
    """The headroom report of an emulating runner (``--emulate fp16``); None for real runtimes."""
    report = getattr(runner, "report", None)
    return report() if callable(report) else None


def _fallback_runtime(fmt: str, opts: Options) -> str:
    """The runtime that runs one side of a comparison: the first of --runtimes (or of the format's
    defaults) that can run on this platform, e.g. coreml-mil for CoreML files off macOS."""
    cands = runtimes_for(fmt, opts.runtimes) or runtimes_for(fmt)
    return next((r for r in cands if usable_here(r)), cands[0])


def planned_keys(arts: list[Artifact], opts: Options) -> set:
    """(model, format, precision) of every check a bundle run will make: what tolerance selectors
    may name."""
    keys = set()
    for a in arts:
        for _ in runtimes_for(a.format, opts.runtimes):
            keys.add((a.model or "model", a.format, a.precision or "fp32"))
    for (m, f, p) in list(keys):
        if m == "transformer" and ("predictor", f, p) in keys:
            keys.add(("pipeline", f, p))
    return keys


def bundle_parity(arts: list[Artifact], opts: Options, progress: bool = False) -> tuple[list[Check], dict]:
    """Every artefact against the PyTorch reference, then each format's chained pipeline.
    ``progress``: a bar on stderr (terminals only) naming the artefact and runtime."""
    from styleport.export.timing import Bar
    from styleport.web.browser import shared_browser
    check_selectors(opts.selector_rules(), planned_keys(arts, opts))
    bar = Bar(sum(len(runtimes_for(a.format, opts.runtimes)) for a in arts), "parity", progress, "check")
    try:
        # onnxruntime-web runners of this run share one Chromium (a context each); none starts otherwise
        with shared_browser():
            return _bundle_parity(arts, opts, bar)
    finally:
        bar.close()


def _bundle_parity(arts: list[Artifact], opts: Options, bar) -> tuple[list[Check], dict]:
    ckpt = next((a.checkpoint for a in arts if a.checkpoint), None)
    info = {"reference": None, "reference_reason": None}
    ref = Reference(ckpt, opts.threads) if ckpt else None
    fallback: dict = {}   # model -> (artefact, runtime) standing in for PyTorch
    if ref is None:
        info["reference_reason"] = next((a.checkpoint_reason for a in arts if a.checkpoint_reason), "")
        for model in ("predictor", "transformer"):
            cands = [a for a in arts if a.model == model and a.precision == "fp32" and not a.variant
                     and a.format in FALLBACK_ORDER]
            cands.sort(key=lambda a: FALLBACK_ORDER.index(a.format))
            for a in cands:
                if runtimes_for(a.format):
                    fallback[model] = (a, _fallback_runtime(a.format, opts))
                    break
        if not fallback:
            raise BadInput(f"no reference: {info['reference_reason']}; and the bundle has no fp32 artefact "
                           "to compare against")
        info["reference_reason"] += "; using the fp32 artefacts as reference instead"
        info["reference_artifacts"] = [f"{rt}:{a.label}" for a, rt in fallback.values()]
    else:
        info["reference"] = str(ckpt)
    style_given = opts.given.get("style_image")

    def is_reference(a: Artifact, rt: str) -> bool:
        fa = fallback.get(a.model)
        return fa is not None and fa[0] is a and fa[1] == rt

    def reference_out(model, canonical):
        if ref is not None:
            return ref.run(model, canonical), ref.label
        if model not in fallback:
            raise BadInput(f"no reference for the {model}")
        fa, rt = fallback[model]
        with make_runner(rt, fa.path, threads=opts.threads, **runner_options(rt, opts)) as r:
            _, _, out = run_plan(r, fa.inputs, fa.outputs, artifact_size(fa, opts.size), canonical, opts.seed)
        return out, f"{rt}:{fa.label}"

    pred_size = next((artifact_size(a, None) for a in arts if a.model == "predictor"), (256, 256))
    runs: dict = {}
    # The chained pipeline reuses what the artefact checks ran: the predictor's output on the style
    # input (the pipeline feeds it the same canonical style image, and a runtime is deterministic), and
    # the transformer's open runner for its second run. Opening a runtime is the slow part on some
    # (a browser page and ORT Web session, the coreml-mil interpreter); without a predictor run to
    # reuse, the pipeline opens its own runners (below).
    pred_runs: dict = {}   # (format, precision, variant, runtime) -> (canonical feeds, outputs)
    pipe_runs: dict = {}   # same key -> (canonical transformer feeds, outputs, emulation report) or the error
    # predictors first (their outputs feed the pipelines); checks and runs keep the bundle's order
    order = {id(a): i for i, a in enumerate(arts)}
    ordered: list = []   # (position in the bundle, check)
    for a in sorted(arts, key=lambda a: a.model != "predictor"):
        for rt in runtimes_for(a.format, opts.runtimes):
            precision = a.precision or "fp32"
            key = (a.model, a.format, precision, a.variant, rt)
            bar.note(f"{a.label} @ {rt}")
            bar.update(1)
            if is_reference(a, rt):
                runs[key] = (a, artifact_size(a, opts.size))
                continue
            ck = Check(name=check_name(a.model or "model", a.format, precision, rt, a.variant),
                       model=a.model or "model", format=a.format, precision=precision, runtime=rt, path=a.label)
            try:
                with make_runner(rt, a.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                    size = artifact_size(a, opts.size)
                    given = dict(opts.given)
                    if a.model == "transformer" and BOTTLENECK not in given and ref is not None:
                        b = ref.bottleneck(pred_size, style_given, opts.seed)
                        if b is not None:
                            given[BOTTLENECK] = b
                    plan, canonical, cand = run_plan(r, a.inputs, a.outputs, size, given, opts.seed)
                    ck.emulation = emulation_report(r)
                    ck.input_size = plan.input_size()
                    runs[key] = (a, size)
                    if a.model == "predictor":
                        pred_runs[key[1:]] = (canonical, cand)
                    elif a.model == "transformer" and key[1:] in pred_runs:
                        try:
                            tgiven = {k: v for k, v in opts.given.items() if k != BOTTLENECK}
                            tgiven[BOTTLENECK] = pred_runs[key[1:]][1][BOTTLENECK]
                            tplan, tcan, tout = run_plan(r, a.inputs, a.outputs, size, tgiven, opts.seed)
                            pipe_runs[key[1:]] = (tplan, tcan, tout, emulation_report(r))
                        except (RuntimeUnavailable, StyleportError) as e:
                            pipe_runs[key[1:]] = e
                refout, ck.reference = reference_out(a.model, canonical)
                judge(ck, refout, cand, opts.rules)
            except (RuntimeUnavailable, StyleportError) as e:
                _failed(ck, e)
            ordered.append((order[id(a)], ck))
    checks = [ck for _, ck in sorted(ordered, key=lambda t: t[0])]
    runs = dict(sorted(runs.items(), key=lambda kv: order[id(kv[1][0])]))
    # Chained pipeline per format/precision/runtime: its predictor feeding its transformer.
    bar.grow(sum(1 for (m, f, p, v, r) in runs if m == "transformer" and ("predictor", f, p, v, r) in runs))
    for (model, fmt, prec, var, rt), (ta, tsize) in list(runs.items()):
        if model != "transformer":
            continue
        pk = ("predictor", fmt, prec, var, rt)
        if pk not in runs:
            continue
        bar.note(f"pipeline {fmt} {prec} @ {rt}")
        bar.update(1)
        pa, psize = runs[pk]
        if is_reference(pa, rt) and is_reference(ta, rt):
            continue   # the reference pipeline itself
        ck = Check(name=check_name("pipeline", fmt, prec, rt, var), model="pipeline", format=fmt,
                   precision=prec, runtime=rt, path=f"{pa.label} -> {ta.label}")
        try:
            done = pipe_runs.get(pk[1:])
            if isinstance(done, Exception):
                raise done
            if done is not None:
                pcan = pred_runs[pk[1:]][0]
                plan, tcan, cand, ck.emulation = done
            else:
                style = {"style_image": style_given} if style_given is not None else {}
                with make_runner(rt, pa.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                    _, pcan, pout = run_plan(r, pa.inputs, pa.outputs, psize, style, opts.seed)
                given = {k: v for k, v in opts.given.items() if k != BOTTLENECK}
                given[BOTTLENECK] = pout[BOTTLENECK]
                with make_runner(rt, ta.path, threads=opts.threads, **runner_options(rt, opts)) as r:
                    plan, tcan, cand = run_plan(r, ta.inputs, ta.outputs, tsize, given, opts.seed)
                    ck.emulation = emulation_report(r)
            ck.input_size = plan.input_size()
            rb, ck.reference = reference_out("predictor", pcan)
            tref = dict(tcan)
            tref[BOTTLENECK] = rb[BOTTLENECK]
            refout, _ = reference_out("transformer", tref)
            judge(ck, refout, cand, opts.rules)
        except (RuntimeUnavailable, StyleportError) as e:
            _failed(ck, e)
        checks.append(ck)
    if ref is not None:
        ref.close()
    return checks, info


def pair_parity(reference: str, candidate: str, opts: Options, ref_runtime: str | None = None,
                cand_runtime: str | None = None, ref_conv: Convention | None = None,
                cand_conv: Convention | None = None) -> tuple[list[Check], dict]:
    """File ``candidate`` against file ``reference`` on the same canonical inputs (images in [0,1]
    RGB, mapped to each side's own range, colour order and layout)."""
    ra, ca = bare_artifact(Path(reference), ref_conv), bare_artifact(Path(candidate), cand_conv)
    rrt = ref_runtime or _fallback_runtime(ra.format, opts)
    crt = cand_runtime or _fallback_runtime(ca.format, opts)
    size = opts.size or (DEFAULT_SIZE,) * 2
    with make_runner(rrt, ra.path, threads=opts.threads, **runner_options(rrt, opts)) as r:
        rplan, canonical, ref_out = run_plan(r, None, None, size, opts.given, opts.seed, ref_conv)
        rprec = r.precision()
    with make_runner(crt, ca.path, threads=opts.threads, **runner_options(crt, opts)) as c:
        cins = apply_convention(c.input_specs(), cand_conv)
        cplan = IOPlan(cins, apply_convention(c.output_specs(), cand_conv), size)
        missing = [s.name for s, role in zip(cins, cplan.in_roles) if role not in canonical]
        if missing or len(cins) != len(rplan.inputs):
            raise BadInput(f"{ca.label} and {ra.label} do not take the same inputs "
                           f"({[s.name for s in rplan.inputs]} vs {[s.name for s in cins]})")
        cprec = ca.precision or c.precision() or "fp32"
        model = cplan.model_role
        check_selectors(opts.selector_rules(), {(model, ca.format, cprec)})
        cand_out = cplan.canonical_outputs(c.run(cplan.feeds(canonical)))
        cand_report = emulation_report(c)
    ck = Check(name=f"{check_name(model, ca.format, cprec, crt)} vs {ra.label}", model=model, format=ca.format,
               precision=cprec, runtime=crt, path=ca.label, reference=f"{rrt}:{ra.label}",
               input_size=cplan.input_size(), emulation=cand_report)
    judge(ck, ref_out, cand_out, opts.rules)
    info = {"reference": str(ra.path), "reference_precision": ra.precision or rprec,
            "inputs": "given" if opts.given else f"seeded random (seed {opts.seed})"}
    for side, conv in (("reference", ref_conv), ("candidate", cand_conv)):
        if conv is not None:
            info[f"{side}_convention"] = conv.to_dict()
    return [ck], info
