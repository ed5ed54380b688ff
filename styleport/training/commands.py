"""CLI verbs of styleport.training: `add_parsers(sub, common)` adds them to the `styleport` parser.

Verbs: ``train`` (every preset; resumable; DDP under torchrun), ``import`` (pytorch/examples
fast_neural_style state dicts, Google's Magenta TFLite files) and ``embed`` (2-D map of style
bottlenecks). Each verb's function takes the parsed args and returns an exit code; user errors
raise styleport.errors.StyleportError subclasses (one line, exit code per the contract).
"""

from __future__ import annotations

import argparse

from styleport.errors import BadInput

_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _layers(text: str) -> list:
    layers = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in layers if s not in _LAYERS]
    if bad or not layers:
        raise argparse.ArgumentTypeError(f"style layers are a comma list of {', '.join(_LAYERS)}")
    return layers


def cmd_distill(args) -> int:
    from styleport.models.presets import default_config
    from styleport.training.distill import distill

    if args.resume:
        raise BadInput("--teacher runs cannot --resume (distillation keeps no optimizer state)")
    if args.preset not in ("ghiasi", "magenta-mobile"):
        raise BadInput("--teacher distils arbitrary-style presets (ghiasi, magenta-mobile)")
    if args.vgg_weights or args.loss_net:
        raise BadInput("--teacher replaces the VGG loss: drop --vgg-weights/--loss-net")
    info = distill(default_config(args.preset, width=args.width), args.teacher, [args.content], args.style, args.out,
                   steps=args.steps, batch_size=args.batch_size or 8, image_size=args.image_size,
                   style_size=args.style_size or args.image_size, lr=args.lr or 2e-3, seed=args.seed,
                   log_json=args.log_json, progress=not args.no_progress)
    final = info["train"]["final"]
    print(f"wrote {args.out}: {args.steps} distillation steps in {info['train']['seconds']:.0f} s, "
          f"image L1 {final.get('image_l1', float('nan')):.4f}, bottleneck MSE {final.get('bottleneck_mse', float('nan')):.4f}")
    return 0


def cmd_train(args, common) -> int:
    from styleport.training.train import TrainOptions, report, train

    if args.teacher:
        return cmd_distill(args)

    opts = TrainOptions(
        preset=args.preset, content=[args.content], style=args.style, steps=args.steps, out=args.out,
        width=args.width, image_size=args.image_size, style_size=args.style_size, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, resume=args.resume, log_json=args.log_json, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, grad_accum=args.grad_accum, content_layer=args.content_layer,
        content_weight=args.content_weight, style_layers=args.style_layers,
        style_layer_weight=args.style_layer_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        norm=args.norm, progress=not args.no_progress)
    import os
    announce = int(os.environ.get("RANK", "0")) == 0
    from styleport.models.vgg import build_vgg
    opts.extra["vgg"] = build_vgg(args.loss_net or ("imagenet" if args.vgg_weights else "auto"),
                                  args.vgg_weights, announce=announce)
    summary = train(opts)
    if announce:
        print(report(summary))
    return 0


def cmd_import(args, common) -> int:
    from styleport.models import importers

    if args.source == "fast-neural-style":
        if not args.file:
            raise BadInput("import --from fast-neural-style needs the state dict FILE")
        if args.predictor or args.transfer:
            raise BadInput("--predictor/--transfer belong to --from magenta-tflite")
        path, info = importers.import_fast_neural_style_to(args.file, args.out)
    else:
        if args.file:
            raise BadInput("import --from magenta-tflite takes --predictor P.tflite --transfer T.tflite, "
                           "not a positional FILE")
        if not args.predictor or not args.transfer:
            raise BadInput("import --from magenta-tflite needs --predictor P.tflite and --transfer T.tflite")
        path, info = importers.import_magenta_tflite_to(args.predictor, args.transfer, args.out)
    print(f"wrote {path}  ({info})")
    return 0


def cmd_embed(args, common) -> int:
    from styleport.training.embed import embed_command
    return embed_command(args)


def add_parsers(sub, common) -> None:
    t = sub.add_parser(
        "train", help="train a feed-forward network (johnson, dumoulin, ghiasi, magenta-mobile)",
        description="Train a style network on image folders. Checkpoints (weights, config, optimizer and RNG "
                    "state, step) are written every --checkpoint-every steps and at the end; --resume continues "
                    "exactly. Under `torchrun --nproc_per_node=N -m styleport train ...` it runs "
                    "DistributedDataParallel (gloo on CPU, nccl on GPU); --batch-size is the global batch.",
        epilog="Loss defaults per preset: johnson content relu2_2 x1e5, style relu1_2..relu4_3 x1e10 "
               "(pytorch/examples); dumoulin content relu3_3 x1, style 1e-4 per layer; ghiasi/magenta-mobile "
               "content relu3_3 x1, style 0.5e-3 per layer, TV 1e4 (Ghiasi et al.).")
    t.add_argument("--preset", required=True, choices=("johnson", "dumoulin", "ghiasi", "magenta-mobile"))
    t.add_argument("--width", type=float, default=None, help="channel width multiplier (default 1)")
    t.add_argument("--content", required=True, metavar="DIR", help="folder of content images (recursive)")
    t.add_argument("--style", required=True, action="append", metavar="DIR_OR_FILE",
                   help="style image or folder (repeatable): johnson one image, dumoulin N (one per style), "
                        "ghiasi/magenta-mobile a pool")
    t.add_argument("--steps", required=True, type=int, metavar="N", help="total optimiser steps")
    t.add_argument("--image-size", type=int, default=256, metavar="S", help="content crop, px (default 256)")
    t.add_argument("--style-size", type=int, default=None, metavar="S",
                   help="style image size, px (default: --image-size; at least 75 for ghiasi)")
    t.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="global batch (default: johnson 4, dumoulin 16, ghiasi/magenta-mobile 8)")
    t.add_argument("--out", required=True, metavar="CKPT", help="checkpoint folder to write")
    t.add_argument("--grad-accum", type=int, default=1, metavar="N",
                   help="split each process's share of the batch into N micro-batches (same update, less memory)")
    t.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: johnson/dumoulin 1e-3, ghiasi/magenta-mobile 1e-5)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights and data order (default 0)")
    t.add_argument("--resume", action="store_true", help="continue from --out when it exists")
    t.add_argument("--checkpoint-every", type=int, default=1000, metavar="K", help="default 1000")
    t.add_argument("--log-json", metavar="FILE", help="one JSON line per logged step (step, total, terms)")
    t.add_argument("--log-every", type=int, default=10, metavar="N", help="log interval in steps (default 10)")
    g = t.add_argument_group("loss (defaults per preset)")
    g.add_argument("--content-layer", choices=_LAYERS, default=None)
    g.add_argument("--content-weight", type=float, default=None, help="alpha")
    g.add_argument("--style-layers", type=_layers, default=None, metavar="L1,L2,...",
                   help="comma list of relu1_2, relu2_2, relu3_3, relu4_3")
    g.add_argument("--style-layer-weight", type=float, default=None, help="weight of each style layer")
    g.add_argument("--style-weight", type=float, default=None, help="beta, multiplies the style sum")
    g.add_argument("--tv-weight", type=float, default=None, help="total variation weight")
    t.add_argument("--norm", choices=("instance", "batch"), default=None, help="johnson only (default instance)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--teacher", metavar="CKPT",
                   help="distil from this arbitrary-style checkpoint instead of the VGG loss: the student's "
                        "bottlenecks (MSE) and stylisations (L1) are trained to match the teacher's (--lr "
                        "default 2e-3, cosine decay), to make a student of your own")
    common.add_loss_net(t)
    t.set_defaults(func=lambda a: cmd_train(a, common))

    i = sub.add_parser(
        "import", help="import weights: pytorch/examples fast_neural_style, Google's Magenta TFLite files",
        description="Turn third-party weights into a styleport checkpoint. fast-neural-style: a pytorch/examples "
                    "TransformerNet state dict (.pth/.model, new or legacy torch.save format, any width; read "
                    "with weights_only=True) -> preset johnson. magenta-tflite: Google's style predictor and "
                    "transfer files (int8 or f16; weights dequantized) -> preset magenta-mobile.")
    i.add_argument("--from", dest="source", required=True, choices=("fast-neural-style", "magenta-tflite"))
    i.add_argument("file", nargs="?", metavar="FILE", help="state dict (fast-neural-style)")
    i.add_argument("--predictor", metavar="P.tflite", help="style_predict_*.tflite (magenta-tflite)")
    i.add_argument("--transfer", metavar="T.tflite", help="style_transfer_*.tflite (magenta-tflite)")
    i.add_argument("--out", required=True, metavar="CKPT", help="checkpoint folder to write")
    i.set_defaults(func=lambda a: cmd_import(a, common))

    e = sub.add_parser(
        "embed", help="plot style images by their style bottlenecks (PCA, t-SNE)",
        description="Compute the 100-d style bottleneck of each image with an arbitrary-style checkpoint "
                    "(ghiasi, magenta-mobile) and draw a 2-D map (PCA; t-SNE too when there are at least "
                    "--tsne-min points) with thumbnails: similar styles lie close.")
    e.add_argument("--checkpoint", required=True, metavar="CKPT")
    e.add_argument("styles", nargs="+", metavar="STYLE_IMAGES", help="image files or folders")
    e.add_argument("-o", "--output", required=True, metavar="plot.png")
    e.add_argument("--json", metavar="FILE", help="coordinates and bottlenecks as JSON")
    e.add_argument("--size", type=int, default=None, help="style image size, px (default: the model's, 256)")
    e.add_argument("--tsne-min", type=int, default=8, metavar="N", help="t-SNE from N points (default 8)")
    e.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity (default min(30, (N-1)/3))")
    e.add_argument("--seed", type=int, default=0, help="t-SNE seed (default 0)")
    e.set_defaults(func=lambda a: cmd_embed(a, common))
