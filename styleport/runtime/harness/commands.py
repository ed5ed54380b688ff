"""CLI verbs of styleport.runtime: ``bench`` and ``parity``.

Exit codes: 0 pass, 1 parity failed, 2 bad input or usage, 3 a runtime failed to load or run
(missing package: with an install hint) or nothing could run here.
"""

from __future__ import annotations

import sys
import time

from styleport.errors import BadInput

RUNTIME_HELP = "runtimes to use (comma or space separated): onnxruntime, litert, coreml, coreml-mil, executorch, " \
               "torch, and litert-arm64, onnxruntime-arm64 (the aarch64 kernels under QEMU, after " \
               "`styleport device setup arm64`; parity only, never timed), onnxruntime-web (ONNX Runtime Web " \
               "WASM in headless Chromium, after `styleport device setup web`) " \
               "(default: every runtime that opens each format; torch rows when a checkpoint is known)"


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise BadInput(f"expected an integer, got {text!r}") from None
    return v


def _common(p):
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one shows on stderr when it is a terminal)")
    p.add_argument("--runtimes", nargs="+", metavar="RT", help=RUNTIME_HELP)
    p.add_argument("--threads", "--num_threads", type=int, default=None, dest="threads",
                   help="threads per runtime (default: the number of CPUs)")
    p.add_argument("--no-xnnpack", action="store_true", help="LiteRT: builtin kernels only (XNNPACK off)")
    p.add_argument("--size", metavar="N|HxW", help="input size for models with free H/W (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--inputs", nargs="+", metavar="[NAME=]FILE",
                   help="input data instead of seeded random: images (content first, then style) or .npy "
                        "arrays (a 100-value array is the style bottleneck); NAME= picks the input")
    p.add_argument("--checkpoint", "--reference-checkpoint", dest="checkpoint", metavar="CKPT",
                   help="the bundle's source checkpoint, when moved (PyTorch reference)")
    p.add_argument("--tolerances", metavar="F.toml|F.json", help="tolerance overrides per model/format/precision")
    p.add_argument("--emulate", choices=("fp16", "fp16-acc16"), default=None,
                   help="run the float artefacts with a phone's fp16 arithmetic instead of their x86 runtime: "
                        "fp16 = every tensor stored in fp16, sums in fp32 (TFLite GPU F32_F16, Core ML GPU); "
                        "fp16-acc16 = conv/matmul accumulators in fp16 too (TFLite GPU F16, XNNPACK fp16 on "
                        "ARMv8.2). Judged at the fp16 tolerances; parity prints a per-layer headroom table "
                        "and names the first layer that overflows (README: fp16 emulation)")
    p.add_argument("--arm-cpu", metavar="CPU", default=None,
                   help="litert-arm64 / onnxruntime-arm64: QEMU CPU model, cortex-a76 (default, a phone big core), "
                        "neoverse-n1 or max (= max,sme=off; an SME-enabled CPU is refused: XNNPACK's SME kernels "
                        "are wrong under QEMU 7.2)")
    p.add_argument("--arm-fp16", action="store_true",
                   help="litert-arm64: XNNPACK forced to fp16 arithmetic (FORCE_FP16), as Android's fp16-allowed "
                        "CPU inference; judged at the artefact's own tolerances")
    p.add_argument("--json", metavar="F", help="write the results as JSON")
    p.add_argument("--junit", metavar="F", help="write JUnit XML (one testcase per parity check)")
    p.add_argument("--markdown", metavar="F", help="write the Markdown table")
    p.add_argument("--report", metavar="F.html", help="write an HTML report")
    p.add_argument("-q", "--quiet", action="store_true", help="no table on stdout")


def _options(args, cls):
    from styleport.runtime.harness import targets as T
    from styleport.runtime.harness.tolerances import load_tolerances
    threads = args.threads
    if threads is not None and not 1 <= threads <= 256:
        raise BadInput(f"--threads must be between 1 and 256, got {threads}")
    if threads is None:
        import os
        threads = os.cpu_count() or 1
    opts = cls(runtimes=T.resolve_runtimes(args.runtimes), threads=threads, xnnpack=not args.no_xnnpack,
               size=T.parse_size(args.size), seed=args.seed, given=T.load_inputs(args.inputs),
               rules=load_tolerances(args.tolerances) if args.tolerances else None)
    opts.user_rules = list(opts.rules or [])
    arm = [r for r in (opts.runtimes or []) if r.endswith("-arm64")]
    if args.arm_cpu is not None or args.arm_fp16:
        if not arm:
            raise BadInput("--arm-cpu and --arm-fp16 apply to --runtimes litert-arm64 / onnxruntime-arm64")
        if args.arm_fp16 and "litert-arm64" not in arm:
            raise BadInput("--arm-fp16 applies to litert-arm64 (XNNPACK's fp16 mode)")
        if args.arm_fp16 and args.no_xnnpack:
            raise BadInput("--arm-fp16 runs XNNPACK in fp16: it cannot go with --no-xnnpack")
        from styleport.device.arm64 import qemu_cpu
        qemu_cpu(args.arm_cpu)   # BadInput for an unknown or SME-enabled CPU
    opts.arm_cpu, opts.arm_fp16 = args.arm_cpu, bool(args.arm_fp16)
    if opts.arm_fp16:   # the phone computes an fp32 file in fp16: judged at the fp16 tolerances, as --emulate
        from styleport.runtime.numerics.emulate import emulation_rules
        opts.rules = emulation_rules(opts.rules)
    if getattr(args, "emulate", None):   # --- fp16 emulation (issue #16)
        from styleport.runtime.numerics.emulate import RUNTIME_OF_MODE, emulation_rules
        if args.runtimes:
            raise BadInput("--emulate picks its own runtime (the fp16 emulator): drop --runtimes")
        opts.runtimes = [RUNTIME_OF_MODE[args.emulate]]
        opts.rules = emulation_rules(opts.rules)
    return opts


def _float_artifacts(arts, verb):
    """--emulate covers float artefacts: int8 ones are left out, with a note."""
    keep = [a for a in arts if (a.precision or "fp32") in ("fp32", "fp16")]
    if len(keep) < len(arts):
        print(f"styleport: note: --emulate: {len(arts) - len(keep)} int8 artefact(s) left out of {verb} "
              "(fp16 emulation covers fp32 and fp16 artefacts)", file=sys.stderr)
    if not keep:
        raise BadInput("--emulate: no fp32 or fp16 artefact to run")
    return keep


def _write_outputs(args, doc, checks, results=None, title="styleport"):
    from styleport.reports import html, json_report, junit, markdown
    if args.json:
        json_report.write_json(doc, args.json)
    if args.junit:
        junit.write_junit(checks, args.junit, suite=f"styleport.{doc['kind'].split('-')[-1]}",
                          time_s=doc.get("elapsed_s", 0.0))
    text = markdown.bench_table(results) if results is not None else markdown.parity_table(checks)
    if results is not None and checks:
        text += "\n\n" + markdown.parity_table(checks)
    if args.markdown:
        json_report.write_text_atomic(args.markdown, text + "\n")
    if args.report:
        html.write_html(args.report, title, results, checks, doc.get("machine"))
    if not args.quiet:
        print(text)


def _report_errors(checks, results=None):
    seen = set()
    for c in checks:
        if c.status in ("error",) and c.reasons:
            msg = f"styleport: error: {c.name}: {c.reasons[0]}"
            if msg not in seen:
                print(msg, file=sys.stderr)
                seen.add(msg)
        elif c.status == "skipped":
            print(f"styleport: skipped: {c.name}: {c.reasons[0] if c.reasons else ''}", file=sys.stderr)
    for r in results or []:
        if r["status"] == "error":
            msg = f"styleport: error: {r['model']}/{r['format']}/{r['precision']}@{r['runtime']}: {r['error']}"
            if msg not in seen:
                print(msg, file=sys.stderr)
                seen.add(msg)


def cmd_bench(args) -> int:
    from styleport.reports.json_report import BENCH_KIND, BENCH_SCHEMA
    from styleport.runtime.harness import bench as B
    from styleport.runtime.harness import checks as C
    from styleport.runtime.harness import targets as T
    from styleport.runtime.harness.machine import machine_info
    for name in ("warmup_runs", "num_runs"):
        if getattr(args, name) < 0 or (name == "num_runs" and args.num_runs < 1):
            raise BadInput(f"--{name} must be >= {1 if name == 'num_runs' else 0}")
    if args.min_seconds < 0 or args.max_seconds <= 0:
        raise BadInput("--min_seconds must be >= 0 and --max_seconds > 0")
    opts = _options(args, B.BenchOptions)
    from styleport.runtime.runners.registry import UNTIMED
    if opts.runtimes and all(r in UNTIMED for r in opts.runtimes):
        raise BadInput(f"bench times nothing on {', '.join(opts.runtimes)}: the aarch64 kernels run emulated "
                       "under QEMU, and that time says nothing about a phone; check their numerics with "
                       f"`styleport parity --runtimes {' '.join(opts.runtimes)}`")
    opts.warmup_runs, opts.num_runs = args.warmup_runs, args.num_runs
    opts.min_seconds, opts.max_seconds = args.min_seconds, args.max_seconds
    opts.parity = not args.no_parity
    opts.profile = args.profile
    conv = T.convention(args.range, args.order, "")
    arts = T.collect(args.targets, args.checkpoint, verify=not args.no_verify, conv=conv)
    if args.emulate:
        arts = _float_artifacts(arts, "bench")
    t0 = time.perf_counter()
    bar = not args.no_progress and sys.stderr.isatty()   # a bar on a terminal, lines in a log
    progress = None if (args.quiet or bar) else (lambda m: print(m, file=sys.stderr, flush=True))
    results, checks = B.bench(arts, opts, progress, bar=bar)
    doc = {"schema": BENCH_SCHEMA, "kind": BENCH_KIND, "machine": machine_info(),
           "settings": {"warmup_runs": opts.warmup_runs, "num_runs": opts.num_runs,
                        "min_seconds": opts.min_seconds, "threads": opts.threads, "xnnpack": opts.xnnpack,
                        "seed": opts.seed, "inputs": "given" if opts.given else "seeded random",
                        "convention": conv.to_dict() if conv else None, "profile": opts.profile,
                        "psnr_peak": 1.0, "emulate": args.emulate},
           "results": results, "checks": [c.to_dict() for c in checks],
           "elapsed_s": time.perf_counter() - t0}
    doc["exit_code"] = code = C.exit_code(checks, results)
    _write_outputs(args, doc, checks, results, title="styleport bench")
    _report_errors(checks, results)
    if code == 3 and not any(r["status"] == "error" for r in results):
        print("styleport: error: nothing could run here (every runtime was skipped)", file=sys.stderr)
    return code


def cmd_parity(args) -> int:
    from styleport.reports.json_report import PARITY_KIND, BENCH_SCHEMA
    from styleport.runtime.harness import checks as C
    from styleport.runtime.harness import parity as P
    from styleport.runtime.harness import targets as T
    from styleport.runtime.harness.machine import machine_info
    modes = sum(bool(x) for x in (args.bundle, args.reference or args.candidate, args.layerwise))
    if modes != 1:
        raise BadInput("give one of: BUNDLE, --reference A --candidate B, or --layerwise A B")
    if args.layerwise and args.emulate:
        raise BadInput("--emulate works with BUNDLE or --reference A --candidate B, not --layerwise "
                       "(the emulated parity already reports every layer)")
    convs = {side: T.convention(getattr(args, f"{side}_range"), getattr(args, f"{side}_order"), side)
             for side in ("reference", "candidate")}
    if any(convs.values()) and not (args.reference or args.candidate):
        raise BadInput("--reference-range/--reference-order/--candidate-range/--candidate-order apply to "
                       "--reference A --candidate B (a bundle's manifest states its own I/O)")
    opts = _options(args, T.Options)
    t0 = time.perf_counter()
    if args.layerwise:
        return _layerwise(args, opts)
    if args.bundle:
        arts = T.collect([args.bundle], args.checkpoint)
        if any(a.bundle is None for a in arts):
            raise BadInput(f"{args.bundle} is not a bundle; for two files use --reference A --candidate B")
        if args.emulate:
            arts = _float_artifacts(arts, "parity")
        checks, info = P.bundle_parity(arts, opts, progress=not args.no_progress)
    else:
        if not (args.reference and args.candidate):
            raise BadInput("--reference and --candidate go together")
        cand_rt = None
        if args.emulate:   # only the candidate is emulated; the reference runs in its own runtime
            cand_rt = opts.runtimes[0]
            opts.runtimes = None
        elif any(r.endswith("-arm64") for r in opts.runtimes or []):
            # the candidate on the aarch64 kernels, the reference on this host's (e.g. one .tflite
            # against itself: x86 vs ARM arithmetic), unless --runtimes names a host runtime too
            from styleport.runtime.runners.registry import RUNTIMES, format_of
            fmt = format_of(args.candidate)
            cand_rt = next((r for r in opts.runtimes if r.endswith("-arm64") and fmt in RUNTIMES[r][2]), None)
            if cand_rt is None:
                raise BadInput(f"--runtimes {' '.join(opts.runtimes)}: none opens {args.candidate}")
            opts.runtimes = [r for r in opts.runtimes if not r.endswith("-arm64")] or None
        checks, info = P.pair_parity(args.reference, args.candidate, opts, cand_runtime=cand_rt,
                                     ref_conv=convs["reference"], cand_conv=convs["candidate"])
    if args.emulate:
        from styleport.runtime.numerics.emulate import annotate
        annotate(checks)
        info["emulate"] = args.emulate
    if any(c.runtime.endswith("-arm64") for c in checks):
        from styleport.device.arm64 import DEFAULT_CPU, qemu_cpu
        info["arm64"] = {"cpu": opts.arm_cpu or DEFAULT_CPU, "qemu_cpu": qemu_cpu(opts.arm_cpu),
                         "fp16": opts.arm_fp16, "judged_at": "fp16 tolerances" if opts.arm_fp16 else "own tolerances"}
        print(f"styleport: note: -arm64 rows ran the aarch64 kernels under QEMU (cpu {info['arm64']['cpu']})"
              + ("; litert-arm64 with XNNPACK forced to fp16 (--arm-fp16), fp32 artefacts judged at the fp16 "
                 "tolerances" if opts.arm_fp16 else ""), file=sys.stderr)
    doc = {"schema": BENCH_SCHEMA, "kind": PARITY_KIND, "machine": machine_info(), **info,
           "inputs": "given" if opts.given else f"seeded random (seed {opts.seed})", "psnr_peak": 1.0,
           "checks": [c.to_dict() for c in checks], "elapsed_s": time.perf_counter() - t0}
    doc["exit_code"] = code = C.exit_code(checks)
    if info.get("reference_reason"):
        print(f"styleport: note: {info['reference_reason']}", file=sys.stderr)
    if info.get("reference_artifacts"):
        print(f"styleport: note: reference (not checked): {', '.join(info['reference_artifacts'])}",
              file=sys.stderr)
    _write_outputs(args, doc, checks, None, title="styleport parity")
    if args.emulate and not args.quiet:
        from styleport.runtime.numerics.emulate import render_headroom
        for c in checks:
            if c.emulation:
                print()
                print(render_headroom(c.emulation, c.name))
                if c.emulation.get("problem"):
                    print(c.emulation["problem"])
    _report_errors(checks)
    return code


def _layerwise(args, opts) -> int:
    from styleport.reports.json_report import write_json
    from styleport.runtime.harness.layerwise import layerwise, render
    a, b = args.layerwise
    from pathlib import Path
    if not (Path(a).is_file() or (Path(a) / "config.json").is_file()):
        raise BadInput(f"reference not found: {a} (a .onnx/.tflite/.pte file or a checkpoint folder)")
    if not Path(b).is_file():
        raise BadInput(f"model not found: {b}")
    doc = layerwise(a, b, opts.size or (64, 64), opts.given, opts.seed, args.layer_tol, opts.threads)
    doc["kind"] = "styleport-layerwise"
    if args.json:
        write_json(doc, args.json)
    if not args.quiet:
        print(render(doc))
    return 1 if doc["first_failing"] is not None else 0


def add_parsers(sub, common) -> None:
    b = sub.add_parser("bench", help="latency, load time, memory and parity of bundles or model files",
                       description="Benchmark each artefact in each runtime, one fresh process per run "
                                   "(peak RSS per runner), with parity against the PyTorch reference when "
                                   "the bundle's checkpoint is found. Exit: 0 ok, 1 parity failed, 2 bad "
                                   "input, 3 a runtime failed.")
    b.add_argument("targets", nargs="+", metavar="TARGET", help="bundle folder or .onnx/.tflite/.mlpackage/.mlmodel/.pte")
    b.add_argument("--warmup_runs", "--warmup-runs", type=int, default=1, help="untimed runs after the first (1)")
    b.add_argument("--num_runs", "--num-runs", type=int, default=50, help="timed runs, at least (50)")
    b.add_argument("--min_seconds", "--min-seconds", type=float, default=0.0,
                   help="keep timing at least this long (0)")
    b.add_argument("--max_seconds", "--max-seconds", type=float, default=150.0,
                   help="stop timing after this long (150)")
    b.add_argument("--no-parity", action="store_true", help="timings only")
    b.add_argument("--profile", action="store_true",
                   help="add a per-op profile to each result, after its latency loop (ONNX Runtime: the session "
                        "profiler's kernel times summed by op type, and the slowest nodes); JSON key 'profile', "
                        "also in --markdown and --report")
    b.add_argument("--no-verify", action="store_true", help="skip the manifest's sha256 checks")
    b.add_argument("--range", metavar="LO,HI", help="bare model files: the value range of their image inputs "
                                                    "and outputs (e.g. 0,255); default 0,1")
    b.add_argument("--order", choices=("rgb", "bgr"), help="bare model files: colour order of their images "
                                                            "(default rgb)")
    _common(b)
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser("parity", help="numeric parity: bundle vs PyTorch, file vs file, or layer by layer",
                       description="Compare outputs against a reference: a bundle against its PyTorch "
                                   "checkpoint (bottleneck, transformer and chained pipeline apart), two files "
                                   "with the same I/O, or two versions of one network layer by layer. "
                                   "PSNR uses peak 1.0 on [0,1] images. Exit: 0 pass, 1 fail, 2 bad input, "
                                   "3 a runtime failed.")
    p.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle folder (manifest.json)")
    p.add_argument("--reference", metavar="A", help="reference model file")
    p.add_argument("--candidate", metavar="B", help="candidate model file (same inputs as A)")
    for side, what in (("reference", "A"), ("candidate", "B")):
        p.add_argument(f"--{side}-range", metavar="LO,HI",
                       help=f"value range of {what}'s image inputs and outputs (e.g. 0,255 for a "
                            "pytorch/examples export); default 0,1")
        p.add_argument(f"--{side}-order", metavar="rgb|bgr", help=f"colour order of {what}'s images (default rgb)")
    p.add_argument("--layerwise", nargs=2, metavar=("A", "B"),
                   help="first layer where B drifts from A: A a checkpoint folder (torch), .onnx, .tflite or .pte; "
                        "B .onnx, .tflite or .pte (ExecuTorch shows only the outputs of its XNNPACK delegates "
                        "and portable kernels, not the ops inside a delegate)")
    p.add_argument("--layer-tol", type=float, default=1e-3,
                   help="layer-wise: fail when max_abs / max|ref| exceeds this (default 1e-3)")
    _common(p)
    p.set_defaults(func=cmd_parity)
