"""A local HTTP server with cross-origin isolation and a headless Chromium page, for the browser target.

    with Browser(threads=2) as b:          # server on 127.0.0.1:<free port>, Chromium, one page
        b.serve_file("/model/0.onnx", path) # or b.put("/blob/x", bytes) for in-memory data
        b.goto("/")                         # the runner's blank page, or a folder served with root=
        b.evaluate("async () => ...")

The server answers only 127.0.0.1, sends ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` on every response (without them the page is not
cross-origin isolated, SharedArrayBuffer is absent and ONNX Runtime Web silently falls back to one
thread), serves ONNX Runtime Web's pinned WASM assets under ``/ort/`` from the cache folder
(assets.py), files registered with serve_file, an optional static ``root`` folder, and an in-memory
store (GET/POST ``/blob/<key>``) through which tensors travel between Python and the page as raw bytes.

Chromium: the system binary (assets.chromium_path) through Playwright's ``executable_path``, headless,
with the flags of :data:`CHROMIUM_FLAGS` (no sandbox: this runs as root in containers; no GPU; no
background network of the browser's own). Each Browser gets a new browser context: an in-memory
profile of its own (fresh HTTP cache and storage), so a model served at the same URL by the next
Browser is never a cached copy.

Inside ``with shared_browser():`` every Browser opened reuses one Playwright driver and one Chromium
process (a new context and page each, its own server), closed when the block ends: starting and
stopping them is ~3.5 s per Browser on the 2-core box (parity of a bundle opens twelve; the demo's
browser step took 30 s, of which 25 s was Playwright's driver shutting down twelve times).
"""

from __future__ import annotations

import contextlib
import http.server
import mimetypes
import threading
from pathlib import Path

from styleport.web import assets

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

BLANK = (b"<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
         b"<title>styleport onnxruntime-web runner</title></head><body></body></html>")

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}

MIME = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
        ".html": "text/html; charset=utf-8", ".json": "application/json", ".onnx": "application/octet-stream",
        ".css": "text/css", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _mime(path: str) -> str:
    return MIME.get(Path(path).suffix.lower()) or mimetypes.guess_type(path)[0] or "application/octet-stream"


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "styleport-web"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in ISOLATION.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, path: Path):
        try:
            body = path.read_bytes()
        except OSError:
            return self._send(404, b"not found", "text/plain")
        self._send(200, body, _mime(str(path)))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        srv = self.server
        p = self.path.split("?", 1)[0]
        if p in srv.blobs:
            return self._send(200, srv.blobs[p])
        if p in srv.files:
            return self._file(srv.files[p])
        if p.startswith("/ort/") and p[5:] in assets.ASSETS and srv.ort_dist is not None:
            return self._file(srv.ort_dist / p[5:])
        if srv.root is not None:
            rel = p.lstrip("/") or "index.html"
            target = (srv.root / rel).resolve()
            if target.is_dir():
                target = target / "index.html"
            if srv.root in target.parents or target == srv.root:
                if target.is_file():
                    return self._file(target)
        elif p in ("/", "/index.html"):
            return self._send(200, BLANK, "text/html; charset=utf-8")
        self._send(404, b"not found", "text/plain")

    def do_POST(self):
        srv = self.server
        p = self.path.split("?", 1)[0]
        if not p.startswith("/blob/"):
            return self._send(404, b"not found", "text/plain")
        n = int(self.headers.get("Content-Length") or 0)
        srv.blobs[p] = self.rfile.read(n)
        self._send(200, b"", "text/plain")


class Server:
    """ThreadingHTTPServer on 127.0.0.1 (port 0: a free one) in a daemon thread."""

    def __init__(self, root: str | Path | None = None, ort_dist: Path | None = None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.blobs = {}
        self.httpd.files = {}
        self.httpd.root = Path(root).resolve() if root else None
        self.httpd.ort_dist = ort_dist
        # a short poll interval: shutdown() waits up to one interval (0.5 s by default)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="styleport-web", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def blobs(self) -> dict:
        return self.httpd.blobs

    def serve_file(self, url_path: str, path: str | Path):
        self.httpd.files[url_path] = Path(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Chromium:
    """One Playwright driver + one headless Chromium process."""

    def __init__(self, timeout_ms: float):
        from playwright.sync_api import sync_playwright
        self.pw = sync_playwright().start()
        try:
            self.browser = self.pw.chromium.launch(executable_path=assets.chromium_path(), headless=True,
                                                   args=CHROMIUM_FLAGS, timeout=timeout_ms)
        except Exception:
            self.pw.stop()
            raise

    def close(self):
        for step in (self.browser.close, self.pw.stop):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing what may be half-open
                pass


_SHARED: dict = {"depth": 0, "chromium": None}


@contextlib.contextmanager
def shared_browser():
    """Browsers opened inside the block share one Chromium (started on first use, closed at the end)."""
    _SHARED["depth"] += 1
    try:
        yield
    finally:
        _SHARED["depth"] -= 1
        if _SHARED["depth"] == 0 and _SHARED["chromium"] is not None:
            _SHARED["chromium"].close()
            _SHARED["chromium"] = None


class Browser:
    """Server + headless Chromium + one page. ``root`` serves a folder (the exported web page)."""

    def __init__(self, root: str | Path | None = None, ort: bool = True, timeout_s: float = 120.0):
        self.root = root
        self.ort = ort
        self.timeout_ms = timeout_s * 1e3
        self.server = self._own = self._ctx = self.page = None
        self.console: list[str] = []

    def open(self):
        assets.require(need_browser=True) if self.ort else _require_browser()
        self.server = Server(self.root, assets.dist_dir() if self.ort else None)
        try:
            if _SHARED["depth"]:
                if _SHARED["chromium"] is None:
                    _SHARED["chromium"] = _Chromium(self.timeout_ms)
                chromium = _SHARED["chromium"]
            else:
                chromium = self._own = _Chromium(self.timeout_ms)
            self._ctx = chromium.browser.new_context()
            self._ctx.set_default_timeout(self.timeout_ms)
            self.page = self._ctx.new_page()
            self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
            self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        except Exception:
            self.close()
            raise
        return self

    def goto(self, path: str = "/"):
        self.page.goto(self.server.url + path, wait_until="load")

    def evaluate(self, js: str, arg=None):
        return self.page.evaluate(js, arg)

    def version(self) -> str | None:
        return self._ctx.browser.version if self._ctx is not None and self._ctx.browser else None

    def close(self):
        for step in (lambda: self._ctx and self._ctx.close(), lambda: self._own and self._own.close(),
                     lambda: self.server and self.server.close()):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing what may be half-open
                pass
        self._ctx = self._own = self.server = self.page = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


def _require_browser():
    m = assets.missing(need_browser=True)
    m = [x for x in m if "onnxruntime-web" not in x]
    if m:
        raise assets.WebUnavailable("browser unavailable: " + "; ".join(m))
