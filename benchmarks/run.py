"""`make bench`: run the benchmark suites (benchmarks/suites/*.py), each in its own process, then
rewrite benchmarks/RESULTS.md from the JSON in benchmarks/results/.

    .venv/bin/python benchmarks/run.py                 # default set, ~23 min on 2 quiet cores (results/run.json)
    .venv/bin/python benchmarks/run.py --full          # + 384²/512² in suite 1, 3 export repeats
    .venv/bin/python benchmarks/run.py --only roofline,scaling
    .venv/bin/python benchmarks/run.py --render        # only rewrite RESULTS.md from results/*.json
    .venv/bin/python benchmarks/run.py --sizes 256,384,512,1024   # suite 1 sizes

Suites: exported_vs_eager, int8_runtimes, ours_vs_google, roofline, toolkit_cost, scaling, import_fidelity,
default_fidelity (tools/default_model.py fidelity: the embedded default model vs Google's pipeline),
fp16_emulation, stylize_memory, quant_quality, web_runtime (ONNX Runtime Web in headless Chromium; skips
without it). Extra flags after `--` go to every suite run (e.g. `-- --runs 20`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SUITES = ("exported_vs_eager", "int8_runtimes", "ours_vs_google", "roofline", "toolkit_cost", "scaling",
          "import_fidelity", "default_fidelity", "fp16_emulation", "stylize_memory", "quant_quality", "web_runtime")
# suites that are a tool rather than benchmarks/suites/NAME.py
SCRIPTS = {"default_fidelity": "tools/default_model.py"}


def commands(full: bool, sizes: str | None) -> dict:
    s1 = sizes or ("256,384,512" if full else "384")
    return {
        "exported_vs_eager": ["--sizes", s1, "--threads", "1,2", "--runs", "10"],
        "int8_runtimes": ["--sizes", "384", "--threads", "1,2", "--runs", "10", "--profile"],
        "ours_vs_google": ["--threads", "2", "--runs", "10"],
        "roofline": ["--runs", "10"],
        "toolkit_cost": ["--repeats", "3" if full else "1"],
        "scaling": ["--sizes", "256,384,512,768,1024", "--threads", "1", "--runs", "10"],
        "import_fidelity": [],
        "default_fidelity": ["fidelity", "--json", "benchmarks/results/default_fidelity.json"],
        "fp16_emulation": ["--size", "384" if full else "256", "--images", "2"],
        "stylize_memory": [],
        "quant_quality": ["--size", "384"],
        "web_runtime": ["--size", "384", "--threads", "1,2", "--runs", "5"],  # skips without Chromium/assets
    }


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", help="comma-separated suites")
    ap.add_argument("--sizes", help="suite 1 sizes, e.g. 256,384,512,1024")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.render:
        want = args.only.split(",") if args.only else list(SUITES)
        cmds = commands(args.full, args.sizes)
        log_path = RESULTS / "run.json"
        log = json.loads(log_path.read_text()) if log_path.exists() else {}
        for name in want:
            script = SCRIPTS.get(name, f"benchmarks/suites/{name}.py")
            more = [] if name in SCRIPTS else extra
            cmd = [sys.executable, str(ROOT / script)] + cmds[name] + more
            shown = " ".join([".venv/bin/python", script] + cmds[name] + more)
            print(f"== {shown}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            la = [round(x, 2) for x in os.getloadavg()]
            rc = subprocess.call(cmd, cwd=ROOT)
            log[name] = {"command": shown, "rc": rc, "seconds": round(time.perf_counter() - t0, 1),
                         "loadavg_start": la, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            log_path.write_text(json.dumps(log, indent=1) + "\n")
            print(f"   rc {rc}, {log[name]['seconds']} s", file=sys.stderr, flush=True)
    from results_md import render, update_readme  # benchmarks/suites/results_md.py
    (HERE / "RESULTS.md").write_text(render(RESULTS))
    print(f"wrote {HERE / 'RESULTS.md'}", file=sys.stderr)
    if update_readme(ROOT / "README.md", RESULTS):
        print(f"updated the benchmark highlights in {ROOT / 'README.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE / "suites"))
    sys.exit(main())
