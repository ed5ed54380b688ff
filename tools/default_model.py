"""Reproduce the embedded default model (styleport/assets/) and the figures in its MODEL_CARD.md.

The default is Google's Magenta arbitrary-style network (TFLite release, Apache-2.0), imported with
styleport's own importer and packed without loss. Packing needs Google's two files, which are not
part of this repository (../shared/data/magenta, or --magenta DIR); see styleport/assets/NOTICE.

    .venv/bin/python tools/default_model.py build [--magenta DIR]     # import + pack -> styleport/assets/
    .venv/bin/python tools/default_model.py fidelity [--magenta DIR] [--images DIR] [--json F]

``build`` runs ``styleport import --from magenta-tflite --predictor P --transfer T --out WORK/google``
and packs that checkpoint (styleport/models/default.py: exact int8 / fp16 / fp32 per tensor), then
checks the pack against the checkpoint. ``fidelity`` runs ``styleport stylize`` with the embedded
default on every photo x painting pair of ../shared/data/images (content stretched to 384x384 and
saved as PNG first, the size Google's transfer file takes) and compares each output with Google's
own pipeline in LiteRT (styleport/magenta_reference.py): PSNR (styleport.runtime.harness.tolerances.compare),
per pair, min and mean.

Making your own student instead (not the default): ``data WORK`` writes training folders
(scikit-image sample photos and procedural scenes as content; the shared paintings, procedural
patterns and scikit-image textures as styles) for ``styleport train --teacher`` (MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

SOURCE = {
    "name": "Magenta arbitrary image stylization (TFLite release)",
    "author": "Google (Magenta)",
    "license": "Apache-2.0",
    "paper": "Ghiasi, Lee, Kudlur, Dumoulin, Shlens: Exploring the structure of a real-time, arbitrary "
             "neural artistic stylization network, BMVC 2017",
    "code": "https://github.com/magenta/magenta/tree/main/magenta/models/arbitrary_image_stylization",
    "release": "https://www.tensorflow.org/lite/examples/style_transfer/overview",
}


def _magenta(folder: str | None) -> Path:
    from styleport.magenta_reference import PREDICTOR, TRANSFER, find
    d = find(folder)
    if d is None:
        sys.exit(f"Google's files {PREDICTOR} and {TRANSFER} not found in {folder or SHARED / 'magenta'} "
                 "(pass --magenta DIR)")
    return d


def build(args) -> None:
    from styleport.cli import main as styleport
    from styleport.magenta_reference import PREDICTOR, TRANSFER
    from styleport.models.checkpoint import load_checkpoint
    from styleport.models.default import load_default, pack_checkpoint

    d = _magenta(args.magenta)
    with tempfile.TemporaryDirectory() as work:
        ck = Path(work) / "google"
        cmd = ["import", "--from", "magenta-tflite", "--predictor", str(d / PREDICTOR),
               "--transfer", str(d / TRANSFER), "--out", str(ck)]
        with contextlib.redirect_stdout(sys.stderr):
            code = styleport(cmd)
        if code != 0:
            sys.exit("styleport import failed")
        shown = ["styleport", *cmd[:4], PREDICTOR, cmd[5], TRANSFER, cmd[7], "CKPT"]
        info = pack_checkpoint(ck, card_info={"source": SOURCE, "import_command": " ".join(shown)})
        # the pack against the checkpoint, on the same input: the storage must be lossless
        import torch

        from styleport.runtime.harness.tolerances import compare
        ref, _ = load_checkpoint(ck)
        packed, _ = load_default()
        g = torch.Generator().manual_seed(0)
        x, s = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 256, 256, generator=g)
        with torch.no_grad():
            m = compare(ref(x, s).numpy(), packed(x, s).numpy())
        info["round_trip_on_noise"] = {"psnr_db": m["psnr_db"], "max_abs": m["max_abs"]}
    print(json.dumps(info, indent=2))


def fidelity(args) -> None:
    import numpy as np
    from PIL import Image

    from styleport.cli import main as styleport
    from styleport.images import list_images, load_image, pil_to_tensor
    from styleport.magenta_reference import CONTENT_SIZE, GoogleMagenta
    from styleport.runtime.harness.tolerances import compare

    images = Path(args.images) if args.images else SHARED / "images"
    photos, paintings = list_images(images / "content"), list_images(images / "style")
    rows = []
    with GoogleMagenta(_magenta(args.magenta)) as google, tempfile.TemporaryDirectory() as tmp:
        for cp in photos:
            content = Path(tmp) / f"{cp.stem}.png"
            load_image(cp).resize((CONTENT_SIZE, CONTENT_SIZE), Image.Resampling.BICUBIC).save(content)
            for sp in paintings:
                out = Path(tmp) / "out.png"
                with contextlib.redirect_stdout(sys.stderr):
                    code = styleport(["stylize", "--content", str(content), "--style", str(sp), "-o", str(out)])
                if code != 0:
                    sys.exit(f"styleport stylize failed on {cp.name} x {sp.name}")
                theirs = google(load_image(content), load_image(sp))
                m = compare(pil_to_tensor(theirs).numpy(), pil_to_tensor(load_image(out)).numpy())
                rows.append({"content": cp.name, "style": sp.name, "psnr_db": round(m["psnr_db"], 2),
                             "ssim": round(m["ssim"], 4), "max_abs": round(m["max_abs"], 4)})
    psnr = [r["psnr_db"] for r in rows]
    doc = {"pairs": len(rows), "psnr_db_min": min(psnr), "psnr_db_mean": round(float(np.mean(psnr)), 2),
           "ssim_min": min(r["ssim"] for r in rows), "rows": rows}
    text = json.dumps(doc, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


def data(args) -> None:
    import skimage

    from styleport.samples import STYLES, content_scene, style_pattern
    work = Path(args.work)
    sk = Path(skimage.__file__).parent / "data"
    (work / "content").mkdir(parents=True, exist_ok=True)
    (work / "style").mkdir(parents=True, exist_ok=True)
    for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"):
        shutil.copy(sk / n, work / "content" / n)
    for i in range(4):
        content_scene(384, seed=i).save(work / "content" / f"scene{i}.png")
    paintings = SHARED / "images" / "style"
    if paintings.is_dir():
        for f in sorted(paintings.iterdir()):
            shutil.copy(f, work / "style" / f.name)
    for s in STYLES:
        style_pattern(s, 384).save(work / "style" / f"{s}.png")
    for n in ("brick.png", "grass.png", "gravel.png", "ihc.png", "color.png"):
        shutil.copy(sk / n, work / "style" / n)
    print(f"wrote {work}/content and {work}/style")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="import Google's files and pack them into styleport/assets/")
    b.add_argument("--magenta", metavar="DIR", help="folder with Google's files (default ../shared/data/magenta)")
    b.set_defaults(func=build)
    f = sub.add_parser("fidelity", help="default model (styleport stylize) vs Google's TFLite pipeline")
    f.add_argument("--magenta", metavar="DIR")
    f.add_argument("--images", metavar="DIR", help="folder with content/ and style/ (default ../shared/data/images)")
    f.add_argument("--json", metavar="F", help="also write the result here")
    f.set_defaults(func=fidelity)
    d = sub.add_parser("data", help="training folders for a distilled student of your own")
    d.add_argument("work")
    d.set_defaults(func=data)
    a = ap.parse_args()
    a.func(a)
