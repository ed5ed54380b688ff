"""The browser target (issue 23): ONNX Runtime Web's pinned assets (assets.py), a local server with the
cross-origin isolation headers WASM threads need plus headless Chromium driven by Playwright
(browser.py), and the self-contained stylisation page written by ``export --formats web`` (page.py)."""
