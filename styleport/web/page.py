"""The self-contained stylisation page of a bundle with ONNX (``export --formats onnx,web`` writes it
to BUNDLE/web/; ``write_page(bundle)`` adds it to an existing bundle).

    web/index.html        the page: pick a photo and a painting, strength slider, Stylise; no CDN
    web/models/*.onnx     the bundle's predictor and transformer (one precision, fp32 by default)
    web/models.json       their I/O (names, layout, size) as the manifest gives it
    web/ort/              the pinned ONNX Runtime Web WASM assets (assets.ASSETS)

Serve the folder over HTTP with the headers ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` for WASM threads (the page runs without them, on one
thread); file:// does not work (module scripts and fetch). The page does what the Python pipeline
does: images drawn to the model's input size, the predictor on the painting, strength mixing the
painting's bottleneck with the photo's own (strength 1 = the painting's only), the transformer,
output clamped to [0,1] and drawn on the canvas ``#out``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from styleport.web import assets

PAGE = Path(__file__).with_name("index.html")
PREFERENCE = ("fp32", "fp16", "int8")


def _pick(manifest: dict, model: str, precision: str | None) -> dict | None:
    arts = [a for a in manifest["artifacts"] if a["model"] == model and a["format"] == "onnx" and not a.get("variant")]
    order = [precision] if precision else list(PREFERENCE)
    for p in order:
        for a in arts:
            if a["precision"] == p:
                return a
    return None


def write_page(bundle: str | Path, precision: str | None = None, out: str | Path | None = None) -> Path:
    """Write BUNDLE/web/ (or ``out``) from the bundle's ONNX predictor and transformer."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assets.require(need_browser=False)
    arts = {m: _pick(manifest, m, precision) for m in ("predictor", "transformer")}
    missing = [m for m, a in arts.items() if a is None]
    if missing:
        raise assets.WebUnavailable(f"the web page needs an ONNX {' and '.join(missing)}"
                                    + (f" at {precision}" if precision else "") + f" in {bundle}")
    out = Path(out) if out else bundle / "web"
    if out.exists():
        shutil.rmtree(out)
    (out / "models").mkdir(parents=True)
    (out / "ort").mkdir()
    for a in assets.ASSETS:
        shutil.copyfile(assets.dist_dir() / a, out / "ort" / a)
    cfg = {"onnxruntime_web": assets.pinned_version(), "models": {}}
    for m, a in arts.items():
        shutil.copyfile(bundle / a["path"], out / "models" / f"{m}.onnx")
        cfg["models"][m] = {"url": f"models/{m}.onnx", "precision": a["precision"], "source": a["path"],
                            "inputs": a["inputs"], "outputs": a["outputs"]}
    (out / "models.json").write_text(json.dumps(cfg, indent=2))
    shutil.copyfile(PAGE, out / "index.html")
    return out
