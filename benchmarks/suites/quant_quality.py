"""Suite - quantization quality on Google's imported weights: size and PSNR of every fp16 / int8
artefact (plain and variants) of every format, as the bundle's own quality report computes them.

    .venv/bin/python benchmarks/suites/quant_quality.py [--size 384] [--formats onnx,tflite,coreml,executorch]

Google's Magenta files are imported (``magenta_from_tflite``) and exported with ``export_bundle`` at
fp32, fp16 and int8, calibrated on scikit-image's sample photos that are not the held-out ones
(benchmarks/suites/int8_runtimes.py ``calibration_folder``), evaluated on ../shared/data/images
(``--eval-content`` / ``--eval-style``): the bundle's quality.json (PSNR against fp32 PyTorch per
held-out pair, bytes, ratio to fp32, ops quantized) is stored as benchmarks/results/quant_quality.json,
with the plain int8 kind of each format. Skipped (said in the JSON) without ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import IMAGES, MAGENTA, loadavg, write  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--formats", default="onnx,tflite,coreml,executorch")
    args = ap.parse_args(argv)
    pred, transfer = MAGENTA / "style_predict_quantized_256.tflite", MAGENTA / "style_transfer_f16_384.tflite"
    if not (pred.exists() and transfer.exists() and IMAGES.exists()):
        write("quant_quality", {"suite": "quant_quality", "skipped": "../shared/data (Google's files, images) absent"})
        return 0
    from styleport.export.bundle import export_bundle
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.importers import magenta_from_tflite
    from suites.int8_runtimes import calibration_folder
    la0 = loadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qq-") as tmp:
        tmp = Path(tmp)
        model, cfg = magenta_from_tflite(pred, transfer)
        ck = save_checkpoint(model, cfg, tmp / "ck")
        calib = calibration_folder(tmp / "calib")
        man = export_bundle(ck, tmp / "b", args.formats.split(","), ["fp32", "fp16", "int8"], size=args.size,
                            style_size=256, progress=False,
                            calibration=dict(calib, count=8, eval_content=str(IMAGES / "content"),
                                             eval_style=str(IMAGES / "style")))
        q = json.loads((tmp / "b" / "quality.json").read_text())
    kinds = {f"{a['model']}/{a['format']}": a["details"].get("int8_kind") for a in man["artifacts"]
             if a["precision"] == "int8" and not a.get("variant")}
    write("quant_quality", {"suite": "quant_quality", "weights": "Google's Magenta files, imported",
                            "size": args.size, "formats": args.formats.split(","), "int8_plain_kind": kinds,
                            "calibration": "8 scikit-image sample photos, not the held-out ones",
                            "loadavg": [la0, loadavg()], "seconds": round(time.perf_counter() - t0, 1),
                            "quality": q})
    return 0


if __name__ == "__main__":
    sys.exit(main())
