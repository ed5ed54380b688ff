"""ONNX Runtime Web, pinned, and the pieces the browser target needs on this machine.

The npm package is pinned in ``styleport/web/npm/package.json`` (+ package-lock.json) and installed with
``npm ci`` into a cache folder by the explicit set-up step ``styleport device setup web`` -- never at
run time. The cache folder is ``$STYLEPORT_WEB_CACHE``, else ``$XDG_CACHE_HOME/styleport/web``, else
``~/.cache/styleport/web``. The browser is the system Chromium (``$STYLEPORT_CHROMIUM``, else
``chromium`` / ``chromium-browser`` on PATH; Debian: ``apt-get install chromium``), driven by the
``playwright`` Python package through ``executable_path`` (Playwright's own browser download is never
used).

Only three files of the package are served or copied: the ES-module loader of the WASM build and the
SIMD+threads WASM binary with its Emscripten glue (:data:`ASSETS`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from styleport.errors import EXIT_CONVERSION, StyleportError

NPM_DIR = Path(__file__).with_name("npm")
PACKAGE = "onnxruntime-web"
# The WASM build (no WebGL/WebGPU): SIMD + threads binary and its loader.
ASSETS = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
LOADER = ASSETS[0]


class WebUnavailable(StyleportError):
    """A piece of the browser target is missing (exit 3, naming it and how to install it)."""

    exit_code = EXIT_CONVERSION


def pinned_version() -> str:
    return json.loads((NPM_DIR / "package.json").read_text())["dependencies"][PACKAGE]


def cache_dir() -> Path:
    env = os.environ.get("STYLEPORT_WEB_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "styleport" / "web"


def dist_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "node_modules" / PACKAGE / "dist"


def installed_version(cache: Path | None = None) -> str | None:
    pj = (cache or cache_dir()) / "node_modules" / PACKAGE / "package.json"
    try:
        return json.loads(pj.read_text()).get("version")
    except (OSError, ValueError):
        return None


def assets_ready(cache: Path | None = None) -> bool:
    d = dist_dir(cache)
    return installed_version(cache) == pinned_version() and all((d / a).is_file() for a in ASSETS)


def chromium_path() -> str | None:
    env = os.environ.get("STYLEPORT_CHROMIUM")
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium_version(path: str | None = None) -> str | None:
    path = path or chromium_path()
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def playwright_version() -> str | None:
    try:
        return metadata.version("playwright")
    except metadata.PackageNotFoundError:
        return None


def status() -> dict:
    """What is present: {chromium, chromium_version, playwright, npm, ort_web (installed), ort_web_pinned, cache}."""
    chrom = chromium_path()
    return {"chromium": chrom, "chromium_version": chromium_version(chrom) if chrom else None,
            "playwright": playwright_version(), "npm": shutil.which("npm"),
            "ort_web": installed_version() if assets_ready() else None, "ort_web_pinned": pinned_version(),
            "cache": str(cache_dir())}


def missing(need_browser: bool = True) -> list[str]:
    """One line per missing piece, each with how to install it (empty: all present)."""
    out = []
    if need_browser:
        if chromium_path() is None:
            out.append("Chromium not found (install it: apt-get install chromium, or set STYLEPORT_CHROMIUM "
                       "to a Chromium binary)")
        if playwright_version() is None:
            out.append("the playwright Python package is not installed (pip install playwright; its browser "
                       "download is not needed)")
    if not assets_ready():
        have = installed_version()
        what = (f"onnxruntime-web {have} is installed, the pin is {pinned_version()}" if have
                else f"onnxruntime-web {pinned_version()} is not installed in {cache_dir()}")
        hint = "run: styleport device setup web" + ("" if shutil.which("npm") else " (needs npm: apt-get install npm)")
        out.append(f"{what}; {hint}")
    return out


def require(need_browser: bool = True) -> None:
    m = missing(need_browser)
    if m:
        raise WebUnavailable("browser runtime unavailable: " + "; ".join(m))


def setup(cache: Path | None = None, log=print) -> dict:
    """Install the pinned onnxruntime-web with ``npm ci`` into the cache folder (from the npm registry:
    the one step of the browser target that uses the network). Returns status()."""
    cache = cache or cache_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise WebUnavailable("npm not found (install it: apt-get install npm); it installs the pinned "
                             f"onnxruntime-web {pinned_version()}")
    cache.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copyfile(NPM_DIR / f, cache / f)
    log(f"installing onnxruntime-web {pinned_version()} with npm ci into {cache}")
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=cache, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WebUnavailable(f"npm ci failed in {cache} (exit {proc.returncode}): {tail[0][:300]}")
    if not assets_ready(cache):
        raise WebUnavailable(f"npm ci finished but {', '.join(ASSETS)} of onnxruntime-web {pinned_version()} "
                             f"are not in {dist_dir(cache)}")
    return status()
