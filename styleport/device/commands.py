"""``styleport device setup|check TARGET``: the one explicit, network-using install step of each
optional device target, and a report of what is present.

    arm64  an aarch64 sysroot run under QEMU user mode (device/arm64.py; runtimes litert-arm64,
           onnxruntime-arm64)
    web    the pinned onnxruntime-web npm package for headless Chromium (web/assets.py; runtime
           onnxruntime-web)

Exit: 0 ready, 2 bad usage, 3 something missing (named, with the command that installs it).
"""

from __future__ import annotations

import json
from pathlib import Path

from styleport.errors import BadInput

TARGETS = ("arm64", "web")


def _arm64(args) -> dict:
    from styleport.device import arm64
    if args.action == "setup":
        arm64.setup(Path(args.root) if args.root else None, args.mirror, args.refresh)
    s = arm64.find(Path(args.root) if args.root else None)   # RuntimeUnavailable (exit 3) names what is missing
    info = s.info()
    st = {"sysroot": str(s.root), "qemu": arm64.qemu_version(arm64.qemu_binary()),
          "wheels": info.get("wheels", {}), "missing": []}
    if not args.json and args.action == "check":
        print(f"qemu-aarch64    {st['qemu']}")
        print(f"sysroot         {st['sysroot']}")
        for k, v in st["wheels"].items():
            print(f"{k:<15} {v} (aarch64)")
    return st


def _web(args) -> dict:
    from styleport.web import assets
    if args.action == "setup":
        assets.setup(log=lambda m: print(m) if not args.json else None)
    st = assets.status()
    miss = assets.missing(need_browser=True)
    if not args.json:
        print(f"chromium        {st['chromium_version'] or 'missing'}" + (f" ({st['chromium']})" if st["chromium"] else ""))
        print(f"playwright      {st['playwright'] or 'missing'}")
        print(f"npm             {st['npm'] or 'missing'}")
        print(f"onnxruntime-web {st['ort_web'] or 'not installed'} (pinned {st['ort_web_pinned']}; cache {st['cache']})")
    if miss:
        raise assets.WebUnavailable("; ".join(miss))
    return {**st, "missing": miss}


def cmd_device(args) -> int:
    if args.target not in TARGETS:
        raise BadInput(f"unknown device {args.target!r} (available: {', '.join(TARGETS)})")
    if args.target == "web" and (args.root or args.mirror or args.refresh):
        raise BadInput("--root, --mirror and --refresh are options of the arm64 target")
    st = _arm64(args) if args.target == "arm64" else _web(args)
    if args.json:
        print(json.dumps(st, indent=2))
    return 0


def add_parsers(sub, common=None) -> None:
    from styleport.device.arm64 import MIRROR_ENV, ROOT_ENV
    d = sub.add_parser(
        "device", help="set up or check an optional device target: arm64 (real ARM kernels under QEMU), "
                       "web (ONNX Runtime Web in headless Chromium)",
        description="setup arm64: build an aarch64 sysroot (Debian bookworm's arm64 Python 3.11, PyPI's aarch64 "
                    "wheels of this host's numpy, onnxruntime and ai-edge-litert) that the litert-arm64 and "
                    "onnxruntime-arm64 runtimes run under QEMU user mode; needs qemu-aarch64 (apt-get install "
                    "qemu-user), apt-get and dpkg-deb, and network access to Debian and PyPI once; its own apt "
                    "configuration (the host's apt sources are not changed); finished steps are kept. "
                    "setup web: install the pinned onnxruntime-web (styleport/web/npm/package.json and its lock "
                    "file) with `npm ci` into $STYLEPORT_WEB_CACHE, else ~/.cache/styleport/web (the npm registry "
                    "is the only network use); Chromium comes from the system (Debian: apt-get install chromium; "
                    "or $STYLEPORT_CHROMIUM), driven by the playwright package (its own browser download is never "
                    "used). check: say what is present. Exit: 0 ready, 2 bad usage, 3 something missing (named).")
    d.add_argument("action", choices=("setup", "check"))
    d.add_argument("target", metavar="TARGET", help="arm64 or web")
    d.add_argument("--json", action="store_true", help="print the status as JSON")
    d.add_argument("--root", metavar="DIR",
                   help=f"arm64: cache folder (default ${ROOT_ENV}, else ~/.cache/styleport/arm64)")
    d.add_argument("--mirror", metavar="URL",
                   help=f"arm64: Debian mirror (default ${MIRROR_ENV}, else http://deb.debian.org/debian)")
    d.add_argument("--refresh", action="store_true", help="arm64: fetch the package index and downloads again")
    d.set_defaults(func=cmd_device)
