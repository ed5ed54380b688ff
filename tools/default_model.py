"""Reproduce the embedded default model (styleport/assets/) and the figures in its MODEL_CARD.md.

    .venv/bin/python tools/default_model.py data WORK          # training folders: content/ and style/
    .venv/bin/styleport import --from magenta-tflite --predictor ../shared/data/magenta/style_predict_quantized_256.tflite \
        --transfer ../shared/data/magenta/style_transfer_f16_384.tflite --out WORK/teacher
    .venv/bin/styleport train --preset magenta-mobile --teacher WORK/teacher --content WORK/content \
        --style WORK/style --steps N --image-size 128 --batch-size 8 --lr 2e-3 --seed 0 --out WORK/student \
        --log-json WORK/train.jsonl
    .venv/bin/python tools/default_model.py pack WORK/student          # writes styleport/assets/default_model.*
    .venv/bin/python tools/default_model.py metrics WORK/teacher      # the card's table (JSON on stdout)

Training data: scikit-image's own sample photos (astronaut, chelsea, coffee, motorcycle_left) and four
procedural scenes as content; the five public-domain paintings of ../shared/data/images/style, the
four procedural patterns and five scikit-image textures (brick, grass, gravel, ihc, color) as styles.
The rocket photo is held out for evaluation.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def data(work: Path) -> None:
    import skimage

    from styleport.samples import STYLES, content_scene, style_pattern
    sk = Path(skimage.__file__).parent / "data"
    (work / "content").mkdir(parents=True, exist_ok=True)
    (work / "style").mkdir(parents=True, exist_ok=True)
    for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"):
        shutil.copy(sk / n, work / "content" / n)
    for i in range(4):
        content_scene(384, seed=i).save(work / "content" / f"scene{i}.png")
    paintings = SHARED / "images" / "style"
    if not paintings.is_dir():
        sys.exit(f"{paintings} is missing: the default model's style set uses those paintings")
    for f in sorted(paintings.iterdir()):
        shutil.copy(f, work / "style" / f.name)
    for s in STYLES:
        style_pattern(s, 384).save(work / "style" / f"{s}.png")
    for n in ("brick.png", "grass.png", "gravel.png", "ihc.png", "color.png"):
        shutil.copy(sk / n, work / "style" / n)
    print(f"wrote {work}/content and {work}/style")


def pack(student: str) -> None:
    from styleport.models.default import pack_checkpoint
    print(json.dumps(pack_checkpoint(student), indent=2))


def _hist_distance(a, b, bins: int = 16) -> float:
    """Chi-square distance between normalised 3-D RGB histograms (0 = same colour distribution)."""
    import numpy as np
    ha, _ = np.histogramdd(a.reshape(-1, 3), bins=bins, range=[(0, 1)] * 3)
    hb, _ = np.histogramdd(b.reshape(-1, 3), bins=bins, range=[(0, 1)] * 3)
    ha, hb = ha / ha.sum(), hb / hb.sum()
    return float(0.5 * ((ha - hb) ** 2 / (ha + hb + 1e-12)).sum())


def metrics(teacher: str | None) -> None:
    import numpy as np
    import torch

    from styleport.demo import sample_sets
    from styleport.images import pil_to_tensor, prepare
    from styleport.models.default import load_default
    from styleport.models.losses import gram
    from styleport.models.vgg import build_vgg
    from styleport.stylize import stylize_torch

    model, doc = load_default()
    ref = None
    if teacher:
        from styleport.models.checkpoint import load_checkpoint
        ref, _ = load_checkpoint(teacher)
    vgg = build_vgg("random", announce=False)
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    contents, styles = sample_sets(quick=False)
    if (SHARED / "images" / "content" / "rocket.jpg").is_file():
        from styleport.images import load_image
        contents["rocket (held out)"] = load_image(SHARED / "images" / "content" / "rocket.jpg")

    def style_loss(x, s):
        with torch.no_grad():
            fx, fs = vgg(x), vgg(s)
        return float(sum(torch.nn.functional.mse_loss(gram(fx[k]), gram(fs[k])) for k in layers))

    rows = []
    for cn, c in contents.items():
        c = c.resize((256, 256))
        ct = pil_to_tensor(c)
        for sn, s in styles.items():
            st = pil_to_tensor(prepare(s, 256, crop=True))
            out = stylize_torch(model, c, s, 1.0, 256)
            ot = pil_to_tensor(out)
            row = {"content": cn, "style": sn,
                   "style_loss_output": style_loss(ot, st), "style_loss_content": style_loss(ct, st),
                   "hist_dist_output": _hist_distance(ot[0].permute(1, 2, 0).numpy(), st[0].permute(1, 2, 0).numpy()),
                   "hist_dist_content": _hist_distance(ct[0].permute(1, 2, 0).numpy(), st[0].permute(1, 2, 0).numpy())}
            if ref is not None:
                tt = pil_to_tensor(stylize_torch(ref, c, s, 1.0, 256))
                from styleport import metrics
                row["psnr_vs_teacher_db"] = metrics.psnr_db(tt.numpy(), ot.numpy())
                row["style_loss_teacher"] = style_loss(tt, st)
                row["hist_dist_teacher"] = _hist_distance(tt[0].permute(1, 2, 0).numpy(), st[0].permute(1, 2, 0).numpy())
            rows.append(row)
    summary = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k not in ("content", "style")}
    doc = {"rows": rows, "median": summary, "loss_net": vgg.source}
    print(json.dumps(doc, indent=2))
    print(markdown_table(doc), file=sys.stderr)


def markdown_table(doc) -> str:
    cols = [("content", "{}"), ("style", "{}"), ("style_loss_content", "{:.2e}"), ("style_loss_output", "{:.2e}"),
            ("style_loss_teacher", "{:.2e}"), ("hist_dist_content", "{:.3f}"), ("hist_dist_output", "{:.3f}"),
            ("hist_dist_teacher", "{:.3f}"), ("psnr_vs_teacher_db", "{:.1f}")]
    cols = [c for c in cols if c[0] in doc["rows"][0]]
    head = ["content", "style", "style loss: content", "output", "teacher", "colour dist.: content", "output",
            "teacher", "PSNR vs teacher dB"][:len(cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    for r in doc["rows"] + [dict(doc["median"], content="**median**", style="")]:
        lines.append("| " + " | ".join(f.format(r[k]) if k in r else "" for k, f in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["help"]
    if cmd == "data":
        data(Path(rest[0]))
    elif cmd == "pack":
        pack(rest[0])
    elif cmd == "metrics":
        metrics(rest[0] if rest else None)
    else:
        print(__doc__)
