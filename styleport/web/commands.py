"""``styleport device setup web`` / ``styleport device check web``: the browser target's one explicit
install step (npm ci of the pinned onnxruntime-web into the cache folder) and a report of what is
present (Chromium, playwright, npm, ONNX Runtime Web). Exit 3 naming what is missing."""

from __future__ import annotations

import json

from styleport.web import assets

TARGETS = ("web",)


def cmd_device(args) -> int:
    if args.action == "setup":
        assets.setup(log=lambda m: print(m) if not args.json else None)
    st = assets.status()
    miss = assets.missing(need_browser=True)
    if args.json:
        print(json.dumps({**st, "missing": miss}, indent=2))
    else:
        print(f"chromium        {st['chromium_version'] or 'missing'}" + (f" ({st['chromium']})" if st["chromium"] else ""))
        print(f"playwright      {st['playwright'] or 'missing'}")
        print(f"npm             {st['npm'] or 'missing'}")
        print(f"onnxruntime-web {st['ort_web'] or 'not installed'} (pinned {st['ort_web_pinned']}; cache {st['cache']})")
    if miss:
        raise assets.WebUnavailable("; ".join(miss))
    return 0


def add_parsers(sub, common) -> None:
    d = sub.add_parser("device", help="set up or check an optional device target (web: ONNX Runtime Web in "
                                      "headless Chromium)",
                       description="setup web: install the pinned onnxruntime-web (styleport/web/npm/package.json "
                                   "and its lock file) with `npm ci` into the cache folder ($STYLEPORT_WEB_CACHE, "
                                   "else ~/.cache/styleport/web); the only step of the browser target that uses "
                                   "the network (the npm registry). check web: say what is present. Chromium "
                                   "comes from the system (Debian: apt-get install chromium; or "
                                   "$STYLEPORT_CHROMIUM), driven by the playwright package (pip; its own browser "
                                   "download is never used). Exit: 0 ready, 3 something missing (named).")
    d.add_argument("action", choices=("setup", "check"))
    d.add_argument("target", choices=TARGETS)
    d.add_argument("--json", action="store_true", help="print the status as JSON")
    d.set_defaults(func=cmd_device)
