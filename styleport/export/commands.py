"""CLI verbs of styleport.export: ``export`` and ``inspect``."""

from __future__ import annotations

import json
import sys


def add_parsers(sub, common) -> None:
    from styleport.manifest import FORMATS, PRECISIONS

    p = sub.add_parser("export", help="export a checkpoint to a bundle of ONNX / TFLite / CoreML / ExecuTorch "
                                      "files",
                       description="Trace the checkpoint's networks and convert them; write BUNDLE/ with a "
                                   "manifest.json (atomically: a failed export leaves nothing behind).")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--formats", default="onnx,tflite,coreml",
                   help=f"comma list of {', '.join(FORMATS)}, web (default onnx,tflite,coreml); web "
                        "writes BUNDLE/web/, a page that stylises in the browser with ONNX Runtime Web "
                        "(needs onnx and `styleport device setup web`)")
    p.add_argument("--precisions", default="fp32", help=f"comma list of {', '.join(PRECISIONS)} (default fp32)")
    p.add_argument("--size", type=int, default=384, help="content input size in px, square (default 384)")
    p.add_argument("--height", type=int, default=None, help="content height (overrides --size)")
    p.add_argument("--width-px", type=int, default=None, help="content width (overrides --size)")
    p.add_argument("--style-size", type=int, default=256, help="style input size for the predictor (default 256)")
    p.add_argument("--dynamic", action="store_true",
                   help="free H and W for ONNX and CoreML (TFLite and ExecuTorch stay fixed)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 20, dynamo exporter; 17 uses the TorchScript exporter)")
    p.add_argument("--coreml-io", choices=("tensor", "image"), default="tensor",
                   help="CoreML I/O: 'tensor' (default: MLMultiArray float32 NCHW in [0,1]) or 'image' (content and "
                        "style inputs are RGB images, the stylised output is an image: CVPixelBuffer in and out)")
    p.add_argument("--author", default=None, help="author written into each file's metadata (default: from the "
                                                  "checkpoint or its import)")
    p.add_argument("--license", default=None, help="licence written into each file's metadata (default: from the "
                                                   "checkpoint or its import, e.g. Apache-2.0 for Google's weights)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    p.add_argument("--calib-content", metavar="DIR",
                   help="content images for int8 calibration (with a calibration set the transformer's ONNX "
                        "int8 is 'qlinear', which runs on ONNX Runtime's integer kernels)")
    p.add_argument("--calib-style", metavar="DIR", help="style images for int8 calibration")
    p.add_argument("--calib-count", type=int, default=None, help="calibration images per set")
    p.add_argument("--calib-synthetic", action="store_true",
                   help="calibrate int8 on the project's procedural images (only when asked)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default=None,
                   help="ONNX calibrated int8 (qlinear, static, a16w8) calibration method (default minmax)")
    p.add_argument("--eval-content", metavar="DIR", help="held-out content images for the quality report")
    p.add_argument("--eval-style", metavar="DIR", help="held-out style images for the quality report")
    p.add_argument("--no-variants", action="store_true",
                   help="write only the plain artefact of each precision (no dynamic/qlinear/a16w8/full/palettize "
                        "variants)")
    p.add_argument("--target-psnr", type=float, default=None, metavar="DB",
                   help="latency-aware int8: time every int8 artefact of each network and format on this "
                        "machine and score it on the held-out images; the fastest whose worst pair reaches DB "
                        "becomes the plain int8 (table in quality.json/quality.md; CoreML keeps its plain "
                        "int8, its latency cannot be measured off macOS). With calibration images the ONNX "
                        "transformer also gets variant 'target': the fewest layers kept float that reach DB "
                        "(curve in sensitivity.json). With --no-variants only the chosen file is kept")
    p.add_argument("--no-fp16-rescale", action="store_true",
                   help="fp16 artefacts: do not scale down the convs that feed instance norms (by default "
                        "they are, with eps to match, so fp16 devices keep clear of the 65504 range; fp32 "
                        "numbers are unchanged; the scales go in the manifest details)")
    p.add_argument("--tolerances", metavar="F.toml|F.json",
                   help="tolerance overrides for the export-time fp32 check, as for parity (default: parity's "
                        "fp32 tolerances: max abs 1e-4 ONNX/ExecuTorch, 1e-3 TFLite; predictor SNR 60 dB)")
    p.add_argument("--allow-drift", action="store_true",
                   help="write the bundle even when a fresh fp32 artefact differs from PyTorch beyond the fp32 "
                        "tolerance (recorded in its details.check); by default that fails with exit 3")
    p.add_argument("--json", metavar="FILE", help="also write the manifest here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_export)

    i = sub.add_parser("inspect", help="I/O, op histogram, parameters and Transpose count of a model file",
                       description="Inspect .onnx, .tflite, .mlpackage, .mlmodel or .pte files (ours or anyone's).")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print JSON (keys: inputs, outputs, op_histogram, "
                                                       "params, file_bytes, transpose_count, metadata, ...)")
    i.set_defaults(func=cmd_inspect)


def cmd_export(args) -> int:
    from styleport.errors import BadInput
    from styleport.export.bundle import export_bundle, parse_list
    from styleport.manifest import FORMATS, PRECISIONS

    wanted = [f.strip().lower() for f in str(args.formats).split(",")]
    web = "web" in wanted  # not a model format: the browser page written from the ONNX files (issue 23)
    if web:
        if "onnx" not in wanted:
            raise BadInput("--formats web is a page around the ONNX files: add onnx (e.g. --formats onnx,web)")
        from styleport.web import assets
        assets.require(need_browser=False)  # the ORT Web assets must be installed before a long export
        args.formats = ",".join(f for f in wanted if f != "web")
    formats = parse_list(args.formats, FORMATS, "format")
    precisions = parse_list(args.precisions, PRECISIONS, "precision")
    if args.opset is not None and args.opset < 17:
        raise BadInput(f"--opset must be >= 17, got {args.opset}")
    size = (args.height or args.size, args.width_px or args.size)
    from styleport.runtime.harness.tolerances import load_tolerances
    rules = load_tolerances(args.tolerances) if args.tolerances else None
    calibration = {"content": args.calib_content, "style": args.calib_style, "count": args.calib_count,
                   "synthetic": args.calib_synthetic}
    if args.calib_method:
        calibration["method"] = args.calib_method
    if args.eval_content:
        calibration["eval_content"] = args.eval_content
    if args.eval_style:
        calibration["eval_style"] = args.eval_style
    if args.no_variants:
        calibration["variants"] = False
    if args.target_psnr is not None:
        if "int8" not in precisions:
            raise BadInput("--target-psnr chooses among int8 artefacts: include int8 in --precisions")
        if not 0 < args.target_psnr < 200:
            raise BadInput(f"--target-psnr must be a PSNR in dB between 0 and 200, got {args.target_psnr:g}")
        calibration["target_psnr"] = args.target_psnr
    manifest = export_bundle(args.checkpoint, args.out, formats, precisions, size=size, style_size=args.style_size,
                             dynamic=args.dynamic, force=args.force, opset=args.opset,
                             progress=not args.no_progress, calibration=calibration,
                             fp16_rescale=not args.no_fp16_rescale, coreml_io=args.coreml_io,
                             credits={"author": args.author, "license": args.license},
                             tolerances=rules, allow_drift=args.allow_drift)
    if web:
        from styleport.web.page import write_page
        page = write_page(args.out)
        print(f"wrote {page}/ (index.html: serve the folder over HTTP, README 'The browser page')")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(manifest, f, indent=2)
    print(f"wrote {args.out}/ in {manifest['export']['seconds']} s")
    print(f"{'model':12} {'format':10} {'precision':9} {'variant':11} {'io':6} {'bytes':>11}  check")
    for a in manifest["artifacts"]:
        chk = a["details"].get("check") or {}
        c = f"max|d| {chk['max_abs_vs_torch']:.2e} ({chk['runtime']})" if chk.get("max_abs_vs_torch") is not None \
            else (chk.get("reason") or "")
        print(f"{a['model']:12} {a['format']:10} {a['precision']:9} {a.get('variant', ''):11} {a.get('io', 'tensor'):6} "
              f"{a['bytes']:>11,}  {c}")
    return 0


def cmd_inspect(args) -> int:
    from styleport.export.inspect import inspect_file

    infos = [inspect_file(f) for f in args.files]
    if args.json:
        json.dump(infos[0] if len(infos) == 1 else infos, sys.stdout, indent=2, default=str)
        print()
        return 0
    for info in infos:
        print(f"{info['path']}  ({info['format']}, {info['file_bytes']:,} bytes, {info['params']:,} params, "
              f"{info['transpose_count']} Transpose)")
        for kind in ("inputs", "outputs"):
            for t in info[kind]:
                extra = ""
                if t.get("image"):
                    im = t["image"]
                    extra = f" {im['color_space']}"
                    pre = im.get("preprocessing") or {}
                    if "scale" in pre:
                        extra += f", x {pre['scale']:g} + " + ", ".join(f"{k} {v:g}" for k, v in pre["bias"].items())
                    elif pre:
                        extra += f", minus a mean image ({pre['mean_image_values']} values)"
                print(f"  {kind[:-1]:6} {t['name']:40} {t['shape']} {t['dtype']}{extra}")
        md = info.get("metadata")
        if md:
            print(f"  metadata: {md.get('name') or md.get('description')} | version {md.get('version')} | "
                  f"author {md.get('author')} | license {md.get('license')}")
        print("  weights: " + ", ".join(f"{k} {v:,}" for k, v in info["weight_dtypes"].items()))
        if info.get("delegation"):
            d = info["delegation"]
            backends = ", ".join(sorted({x["backend"] for x in d["delegates"]})) or "none"
            print(f"  methods: {', '.join(info['methods'])}; delegated ops {d['delegated_ops']} in "
                  f"{len(d['delegates'])} delegate(s) ({backends}), non-delegated {d['non_delegated_ops']}"
                  + (": " + ", ".join(f"{k} {v}" for k, v in d["non_delegated"].items()) if d["non_delegated"] else ""))
        print("  ops: " + ", ".join(f"{k} {v}" for k, v in info["op_histogram"].items()))
    return 0
