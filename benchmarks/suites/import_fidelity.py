"""Suite - import fidelity: Google's Magenta TFLite files imported by `styleport import --from
magenta-tflite` (int8 predictor + f16 transfer network -> the magenta-mobile preset in PyTorch),
compared with Google's own files run in LiteRT, on every photo x painting pair of ../shared/data.

    .venv/bin/python benchmarks/suites/import_fidelity.py

Metrics (styleport.metrics): bottleneck SNR and cosine (ours vs Google's int8 predictor, same style
image); transfer-network output PSNR (ours in fp32 PyTorch vs Google's f16 file, both fed Google's
bottleneck, so the transfer network alone is compared); whole-pipeline PSNR (ours end to end vs
Google's int8 predictor + f16 transfer). Preprocessing as the manifest states: content stretched to
384x384, style short side 256 + centre crop. Writes benchmarks/results/import_fidelity.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import IMAGES, MAGENTA, TFL, loadavg, write  # noqa: E402


def _summary(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 2), "min": round(float(np.min(values)), 2),
            "max": round(float(np.max(values)), 2), "per_pair": [round(v, 2) for v in values]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--style-size", type=int, default=256)
    args = ap.parse_args(argv)
    pred, f16 = MAGENTA / "style_predict_quantized_256.tflite", MAGENTA / "style_transfer_f16_384.tflite"
    if not (pred.exists() and f16.exists() and (IMAGES / "style").is_dir()):
        write("import_fidelity", {"suite": "import_fidelity", "skipped": f"Google's files or images not in {MAGENTA.parent}"})
        return 0
    import torch

    from styleport import metrics
    from PIL import Image

    from styleport.images import load_image, load_tensor, pil_to_tensor
    from styleport.models.importers import magenta_from_tflite

    la0 = loadavg()
    torch.set_num_threads(1)
    model, _ = magenta_from_tflite(pred, f16)
    model.eval()
    g_pred, g_transfer = TFL(pred, 1), TFL(f16, 1)

    def google_predict(style_nchw: np.ndarray) -> np.ndarray:
        return g_pred(image=style_nchw.transpose(0, 2, 3, 1)).reshape(1, 100)

    def google_transfer(content_nchw: np.ndarray, b: np.ndarray) -> np.ndarray:
        return g_transfer(image=content_nchw.transpose(0, 2, 3, 1), bottleneck=b).transpose(0, 3, 1, 2)

    contents = sorted(p for p in (IMAGES / "content").iterdir() if p.is_file())
    styles = sorted(p for p in (IMAGES / "style").iterdir() if p.is_file())
    rows, b_snr, b_cos, t_psnr, p_psnr = [], [], [], [], []
    with torch.no_grad():
        for s in styles:
            st = load_tensor(s, args.style_size, crop=True)
            bg = google_predict(st.numpy())
            bo = model.predictor(st).reshape(1, 100).numpy()
            b_snr.append(metrics.snr_db(bg, bo))
            b_cos.append(metrics.cosine(bg, bo))
            for c in contents:
                ct = pil_to_tensor(load_image(c).resize((args.size, args.size), Image.Resampling.BICUBIC))
                og = google_transfer(ct.numpy(), bg)
                ours_t = model.transformer(ct, torch.from_numpy(bg).reshape(1, 100, 1, 1)).numpy()
                ours_p = model.transformer(ct, torch.from_numpy(bo).reshape(1, 100, 1, 1)).numpy()
                t_psnr.append(metrics.psnr_db(og, ours_t))
                p_psnr.append(metrics.psnr_db(og, ours_p))
                rows.append({"style": s.name, "content": c.name, "transfer_psnr_db": round(t_psnr[-1], 2),
                             "pipeline_psnr_db": round(p_psnr[-1], 2)})
    doc = {"suite": "import_fidelity", "files": [pred.name, f16.name], "size": args.size,
           "style_size": args.style_size, "pairs": len(rows), "styles": len(styles), "contents": len(contents),
           "metrics": "styleport.metrics (PSNR peak 1.0; SNR/cosine for the 100-d bottleneck)",
           "bottleneck_snr_db": _summary(b_snr), "bottleneck_cosine": {"min": round(float(min(b_cos)), 6)},
           "transfer_psnr_db": _summary(t_psnr), "pipeline_psnr_db": _summary(p_psnr), "rows": rows,
           "loadavg": [la0, loadavg()]}
    write("import_fidelity", doc)
    print(f"bottleneck SNR {doc['bottleneck_snr_db']['min']}-{doc['bottleneck_snr_db']['max']} dB; transfer PSNR "
          f"{doc['transfer_psnr_db']['min']}-{doc['transfer_psnr_db']['max']} dB; pipeline PSNR "
          f"{doc['pipeline_psnr_db']['min']}-{doc['pipeline_psnr_db']['max']} dB over {len(rows)} pairs",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
