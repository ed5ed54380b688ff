"""Suite - `styleport stylize` on huge photos: peak memory (max RSS of the process) and wall time.

    .venv/bin/python benchmarks/suites/stylize_memory.py [--sides 1024,2048,3072,4096] [--skip-png]

Each case runs ``styleport stylize`` (the embedded default model, 2 torch threads) in a fresh process
and reads its peak RSS from the kernel (``os.wait4`` rusage, ru_maxrss) - the figure ``/usr/bin/time``
prints. Cases: a 108 MP JPEG (12000x9000), the same with EXIF orientation 6, a 108 MP PNG, a 50 MP
JPEG (8160x6120), all at the default ``--max-size`` (1024); then the network alone at 1024-4096 px
long side (4:3, ``--max-size 0``). Inputs are noise images made here (the decoder's work does not
depend on content; the network's neither). Writes benchmarks/results/stylize_memory.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import ROOT, loadavg, write  # noqa: E402


def make_image(path: Path, w: int, h: int, exif_orientation: int | None = None) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    # smooth noise: blocks of 8 px, so JPEG sizes stay photo-like
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST)
    kw = {}
    if exif_orientation:
        ex = Image.Exif()
        ex[0x0112] = exif_orientation
        kw["exif"] = ex.tobytes()
    if path.suffix == ".jpg":
        kw["quality"] = 90
    im.save(path, **kw)


def run(content: Path, style: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "styleport", "stylize", "--content", str(content), "--style", str(style),
           "-o", str(out), *extra]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    err = p.stderr.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {"rc": p.returncode, "seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
           "notes": [ln for ln in err.splitlines() if ln.startswith("styleport:")][:3]}
    if p.returncode == 0:
        from PIL import Image
        with Image.open(out) as im:
            res["output"] = list(im.size)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="1024,2048,3072,4096")
    ap.add_argument("--skip-png", action="store_true")
    args = ap.parse_args(argv)
    from styleport import samples
    rows = []
    la0 = loadavg()
    with tempfile.TemporaryDirectory(prefix="stylize-mem-") as tmp:
        tmp = Path(tmp)
        style = tmp / "style.png"
        samples.style_pattern(samples.STYLES[0], 256, seed=0).save(style)
        cases = [("108 MP JPEG (12000x9000)", "big.jpg", 12000, 9000, None),
                 ("108 MP JPEG, EXIF orientation 6", "big_rot.jpg", 12000, 9000, 6),
                 ("108 MP PNG", "big.png", 12000, 9000, None),
                 ("50 MP JPEG (8160x6120)", "mid.jpg", 8160, 6120, None)]
        for label, name, w, h, ori in cases:
            if args.skip_png and name.endswith(".png"):
                continue
            make_image(tmp / name, w, h, ori)
            r = run(tmp / name, style, tmp / "out.png", [])
            r.update(case=label, max_size="1024 (default)")
            rows.append(r)
            print(f"{label}: {r}", file=sys.stderr, flush=True)
            (tmp / name).unlink()
        for side in (int(s) for s in args.sides.split(",")):
            w, h = side, side * 3 // 4
            make_image(tmp / "net.png", w, h)
            r = run(tmp / "net.png", style, tmp / "out.png", ["--max-size", "0"])
            r.update(case=f"network alone, {w}x{h}", max_size="0 (no cap)", long_side=side)
            rows.append(r)
            print(f"{w}x{h}: {r}", file=sys.stderr, flush=True)
    write("stylize_memory", {"suite": "stylize_memory", "model": "embedded default", "threads": "torch default (2)",
                             "loadavg": [la0, loadavg()], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
