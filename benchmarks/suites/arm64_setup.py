"""Suite - the cost of the ARM gate's setup (issue 22): `styleport device setup arm64` from an empty
cache folder (downloads included), then again (everything cached). Network to Debian and PyPI.

    .venv/bin/python benchmarks/suites/arm64_setup.py

Writes benchmarks/results/arm64_setup.json: wall seconds per step, disk per part, the QEMU and
wheel versions.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suites.common import ROOT, loadavg, machine, write  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    from styleport.device import arm64 as D
    la0 = loadavg()
    with tempfile.TemporaryDirectory(prefix="arm64setup-") as tmp:
        root = Path(tmp) / "arm64"
        runs = []
        for label in ("fresh", "again"):
            buf = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                doc = D.setup(root)
            runs.append({"run": label, "seconds": round(time.perf_counter() - t0, 1),
                         "step_seconds": doc["step_seconds"],
                         "lines": [ln.replace(str(root), "<root>") for ln in buf.getvalue().splitlines()]})
            print(f"{label}: {runs[-1]['seconds']} s", file=sys.stderr)
        write("arm64_setup", {"suite": "arm64_setup", "machine": machine(), "loadavg": [la0, loadavg()],
                              "qemu": doc["qemu"], "sysroot": doc["debian"], "wheels_aarch64": doc["wheels"],
                              "packages": len(doc["packages"]), "wheel_files": doc["wheel_files"],
                              "disk_mb": {k: round(v / 1e6, 1) for k, v in doc["disk_bytes"].items()},
                              "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
