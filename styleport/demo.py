"""``styleport demo``: what a new user runs first (``make demo``). Offline, on images made here.

Current scope: Gatys stylisation of the procedural sample scene with each sample style, using the
seeded random-feature VGG16 loss network (no ImageNet file is assumed on a fresh machine).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from styleport.errors import BadInput


def run_demo(out: Path, quick: bool = False) -> int:
    from styleport.images import pil_to_tensor, save_image
    from styleport.models.vgg import build_vgg
    from styleport.samples import STYLES, content_scene, style_pattern
    from styleport.training.gatys import stylize

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create output folder {out}: {e.strerror or e}") from None
    size, steps = (64, 10) if quick else (192, 60)
    styles = STYLES[:2] if quick else STYLES
    print(f"styleport demo: Gatys stylisation at {size}px, {steps} L-BFGS steps, styles: {', '.join(styles)}",
          file=sys.stderr)
    vgg = build_vgg("random")
    content_img = content_scene(size)
    content_img.save(out / "content.png")
    content = pil_to_tensor(content_img)
    rows = []
    for name in styles:
        style_img = style_pattern(name, size)
        style_img.save(out / f"style_{name}.png")
        t0 = time.perf_counter()
        res = stylize(content, pil_to_tensor(style_img), vgg, steps=steps)
        save_image(res.image, out / f"gatys_{name}.png")
        rows.append({"style": name, "loss_start": res.losses[0], "loss_end": res.losses[-1],
                     "seconds": round(time.perf_counter() - t0, 2), "output": f"gatys_{name}.png"})
    (out / "report.json").write_text(json.dumps({"schema": 1, "kind": "gatys-demo", "size": size,
                                                 "steps": steps, "loss_net": vgg.source, "results": rows},
                                                indent=2) + "\n")
    print(f"\n{'style':10} {'loss start':>12} {'loss end':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['style']:10} {r['loss_start']:12.4g} {r['loss_end']:12.4g} {r['seconds']:8.1f}")
    print(f"\nwrote {out}/ (content.png, style_*.png, gatys_*.png, report.json)")
    return 0
