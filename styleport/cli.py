"""The ``styleport`` command: argument parsing and wiring only; the work lives in the sub-packages.

Exit codes: 0 ok, 1 parity/threshold failed, 2 bad input or usage, 3 conversion/runtime failed.
"""

from __future__ import annotations

import argparse
import sys

from styleport import __version__
from styleport.errors import EXIT_USAGE, StyleportError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, as argparse does, but with our prefix
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_loss_net(p):
    g = p.add_argument_group("loss network")
    g.add_argument("--vgg-weights", metavar="PATH",
                   help="torchvision VGG16 ImageNet state dict (vgg16-397923af.pth); default: the torch hub "
                        "cache file when present")
    g.add_argument("--loss-net", choices=("imagenet", "random"), default=None,
                   help="'random' = seeded random-feature VGG16 (announced; for offline use)")


def _vgg(args):
    from styleport.models.vgg import build_vgg
    return build_vgg(args.loss_net or ("imagenet" if args.vgg_weights else "auto"), args.vgg_weights)


def cmd_gatys(args) -> int:
    import torch

    from styleport.images import load_tensor, save_image
    from styleport.models.losses import LossConfig
    from styleport.training.gatys import stylize

    if args.steps < 1:
        raise StyleportError("--steps must be >= 1")
    if args.size < 16:
        raise StyleportError("--size must be >= 16")
    content = load_tensor(args.content, args.size)
    style = load_tensor(args.style, args.size)
    vgg = _vgg(args)
    torch.manual_seed(args.seed)
    cfg = LossConfig(content_layer=args.content_layer, alpha=args.content_weight, beta=args.style_weight,
                     tv_weight=args.tv_weight)
    res = stylize(content, style, vgg, cfg, steps=args.steps, optimizer=args.optimizer, lr=args.lr,
                  progress=not args.no_progress)
    save_image(res.image, args.output)
    print(f"wrote {args.output}  (total loss {res.losses[0]:.4g} -> {res.losses[-1]:.4g} in {args.steps} "
          f"{args.optimizer} steps, loss net {vgg.source})")
    return 0


def _note(msg: str) -> None:
    print(f"styleport: note: {msg}", file=sys.stderr)


def cmd_stylize(args) -> int:
    from styleport.images import open_image, pil_to_tensor, save_image
    from styleport.stylize import MIN_SIDE, BundleStylizer, stylize_torch, working_size

    if args.bundle and args.checkpoint:
        raise StyleportError("give --bundle or --checkpoint, not both")
    if args.max_size < 0 or 0 < args.max_size < MIN_SIDE:
        raise StyleportError(f"--max-size must be 0 (no cap) or at least {MIN_SIDE}, got {args.max_size}")
    content, shown = open_image(args.content, args.max_size or None)
    if content.size != shown:
        _note(f"content is {shown[0]}x{shown[1]}, over --max-size {args.max_size}: scaled down to "
              f"{content.width}x{content.height} while reading; the output has that size")
    style = open_image(args.style)[0] if args.style else None
    if args.bundle:
        st = BundleStylizer(args.bundle, args.runtime, args.precision, args.threads)
        try:
            tiny = st.input_size is None and min(content.size) < MIN_SIDE
            out = st(content, style, args.strength, args.style_index, args.style_weights, args.max_size or None)
        finally:
            st.close()
        source = f"{args.bundle} ({st.runtime}, {args.precision})"
    else:
        if args.checkpoint:
            from styleport.models.checkpoint import load_checkpoint
            model, _ = load_checkpoint(args.checkpoint)
            source = args.checkpoint
        else:
            from styleport.models.default import describe, load_default
            model, doc = load_default()
            source = f"the embedded default model, {describe(doc)} (PyTorch)"
        tiny = min(content.size) < MIN_SIDE
        out = stylize_torch(model, content, style, args.strength, args.style_size, args.max_size or None,
                            args.style_index, args.style_weights)
    if tiny:
        w, h = working_size(content.size, args.max_size or None)
        _note(f"content is {content.width}x{content.height}, under the {MIN_SIDE} px a side the network "
              f"takes: stylised at {w}x{h} and scaled back to {content.width}x{content.height}")
    save_image(pil_to_tensor(out), args.output)
    print(f"wrote {args.output} ({out.width}x{out.height}) with {source}")
    return 0


def cmd_demo(args) -> int:
    from pathlib import Path

    from styleport.demo import run_demo
    from styleport.export.bundle import parse_list
    from styleport.manifest import FORMATS, PRECISIONS
    if args.shared_data and args.shared_data.lower() != "none" and not Path(args.shared_data).is_dir():
        raise StyleportError(f"--shared-data: no such folder: {args.shared_data}")
    return run_demo(Path(args.out), quick=args.quick, checkpoint=args.checkpoint,
                    formats=parse_list(args.formats, FORMATS, "format"),
                    precisions=parse_list(args.precisions, PRECISIONS, "precision"),
                    num_runs=args.num_runs, threads=args.threads, tolerances=args.tolerances,
                    int8_search=args.int8_search, progress=not args.no_progress,
                    shared=None if args.shared_data is None else (
                        False if args.shared_data.lower() == "none" else Path(args.shared_data)),
                    web=not args.no_web)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="styleport", description="Neural style transfer networks, from PyTorch to the edge: "
                "train, export to ONNX/TFLite/CoreML, benchmark and check numeric parity.",
                epilog="Exit codes: 0 ok, 1 parity or threshold failed, 2 bad input or usage, "
                       "3 conversion or runtime failed.")
    p.add_argument("--version", action="version", version=f"styleport {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    g = sub.add_parser("gatys", help="optimisation-based stylisation (Gatys et al.), the slow reference",
                       description="Optimise the pixels of CONTENT to match the Gram statistics of STYLE.")
    g.add_argument("--content", required=True, metavar="IMG", help="content image")
    g.add_argument("--style", required=True, metavar="IMG", help="style image")
    g.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image (.png/.jpg)")
    g.add_argument("--steps", type=int, default=200, help="optimiser steps (default 200)")
    g.add_argument("--size", type=int, default=256, help="short side of content and style, px (default 256)")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="default lbfgs")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: 1.0 lbfgs, 0.02 adam)")
    g.add_argument("--content-layer", default="relu3_3", choices=("relu1_2", "relu2_2", "relu3_3", "relu4_3"))
    g.add_argument("--content-weight", type=float, default=1.0, help="alpha (default 1)")
    g.add_argument("--style-weight", type=float, default=1e5, help="beta (default 1e5)")
    g.add_argument("--tv-weight", type=float, default=1.0, help="total variation weight (default 1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_loss_net(g)
    g.set_defaults(func=cmd_gatys)

    st = sub.add_parser("stylize", help="stylise one image with a checkpoint, a bundle or the default model",
                        description="Stylise CONTENT: any size, mode (grey, palette, RGBA, 16-bit, CMYK) and "
                                    "EXIF orientation. The output has the content's size and aspect ratio, "
                                    "except that a photo whose long side exceeds --max-size is scaled down to "
                                    "it while it is read (said on stderr) and the output has the scaled size; "
                                    "content under 8 px a side is upscaled for the network and scaled back "
                                    "(said on stderr). Without --bundle or --checkpoint the embedded default "
                                    "model is used: Google's Magenta arbitrary-style network, imported "
                                    "(styleport/assets/MODEL_CARD.md).")
    st.add_argument("--content", required=True, metavar="IMG", help="content image")
    st.add_argument("--style", metavar="IMG", help="style image (arbitrary-style models)")
    st.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image")
    st.add_argument("--bundle", metavar="DIR", help="exported bundle to run")
    st.add_argument("--runtime", default="onnxruntime", help="with --bundle: onnxruntime, litert, coreml, "
                                                             "coreml-mil, executorch (default onnxruntime)")
    st.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"), help="with --bundle")
    st.add_argument("--checkpoint", metavar="CKPT", help="checkpoint folder (PyTorch)")
    st.add_argument("--strength", type=float, default=1.0, help="style strength in [0, 1] (default 1)")
    st.add_argument("--style-index", type=int, default=None, help="dumoulin: which style (default 0)")
    st.add_argument("--style-weights", default=None, help="dumoulin: comma list blending the styles")
    st.add_argument("--style-size", type=int, default=256, help="style image size, PyTorch path (default 256)")
    st.add_argument("--max-size", type=int, default=1024, metavar="N",
                    help="long side, px: bigger photos (e.g. 50 or 108 MP) are scaled down to N while they are "
                         "read, and the output has that size; 0 = no cap. Memory grows with the pixels "
                         "(default model, measured: about 0.7 GB peak at 1024, 1.4 GB at 2048, 3.9 GB at "
                         "4096). Default 1024")
    st.add_argument("--threads", type=int, default=None, help="runtime threads (with --bundle)")
    st.set_defaults(func=cmd_stylize)

    d = sub.add_parser("demo", help="the main job, offline: stylise, export, check parity and latency, report",
                       description="End to end on the embedded default model: stylise sample images, export "
                                   "ONNX/TFLite/CoreML/ExecuTorch at fp32/fp16/int8, run parity and latency for every "
                                   "artefact that can run here, write report.html, report.json and junit.xml. "
                                   "Exit: 0 ok, 1 a parity check failed, 2 bad input, 3 a runtime failed.")
    d.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    d.add_argument("--quick", action="store_true", help="reduced sizes and runs (used by the tests)")
    d.add_argument("--checkpoint", metavar="CKPT", help="use this arbitrary-style checkpoint instead of the default")
    d.add_argument("--formats", default="onnx,tflite,coreml,executorch", help="formats to export (default all four)")
    d.add_argument("--precisions", default="fp32,fp16,int8", help="precisions to export (default fp32,fp16,int8)")
    d.add_argument("--num_runs", type=int, default=None, help="timed runs per artefact (default 10; quick 3)")
    d.add_argument("--threads", type=int, default=2, help="runtime threads (default 2)")
    d.add_argument("--tolerances", metavar="F.toml|F.json",
                   help="parity tolerance overrides per model/format/precision (as for `parity`)")
    d.add_argument("--shared-data", metavar="DIR", default=None,
                   help="optional third-party data, laid out like ../shared/data: paintings in images/style "
                        "(more styles) and Google's Magenta TFLite files in magenta/ (a side-by-side column "
                        "of Google's own outputs); default ../shared/data beside the repository when "
                        "present; 'none' runs without it")
    d.add_argument("--int8-search", action="store_true",
                   help="write every int8 variant and keep, per network and format, the fastest whose worst pair "
                        "reaches 30 dB (export --target-psnr 30); by default the demo writes the plain calibrated "
                        "int8 only (several minutes less)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars (they show on a terminal only)")
    d.add_argument("--no-web", action="store_true",
                   help="skip the browser target (by default, when Chromium, playwright and `styleport device "
                        "setup web` are present: bundle/web/ page and parity in ONNX Runtime Web)")
    d.set_defaults(func=cmd_demo)

    import types

    from styleport.device import commands as device_cmds
    from styleport.export import commands as export_cmds
    from styleport.runtime.harness import commands as runtime_cmds
    from styleport.training import commands as training_cmds
    common = types.SimpleNamespace(add_loss_net=_add_loss_net, vgg=_vgg)
    for mod in (training_cmds, export_cmds, runtime_cmds, device_cmds):
        mod.add_parsers(sub, common)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from styleport.interrupts import installed, interrupted
    try:
        with installed():   # a Ctrl-C that a library swallowed still stops the command (interrupts.py)
            code = int(args.func(args) or 0)
            if interrupted():
                raise KeyboardInterrupt
            return code
    except StyleportError as e:
        print(f"styleport: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("styleport: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
