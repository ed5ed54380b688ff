"""ONNX Runtime Web runner (``onnxruntime-web``, issue 23): the model runs in ONNX Runtime Web's WASM
backend (SIMD, threads) inside headless Chromium, on this CPU.

    runner = WebRunner("model.onnx", threads=2)
    with runner:                 # open(): local server + Chromium + page + InferenceSession (kept open)
        runner.run(feeds)        # tensors travel as raw bytes over the local server; times in page

Never a default runtime: ask for it with ``--runtimes onnxruntime-web``. Needs the system Chromium,
the ``playwright`` package and the pinned onnxruntime-web installed by ``styleport device setup web``
(styleport/web/assets.py); without one of them it raises RuntimeUnavailable (exit 3) naming it.

``threads`` sets ``ort.env.wasm.numThreads`` (None: ONNX Runtime Web's own default); the server sends
COOP/COEP headers so the page is cross-origin isolated and WASM threads are real (describe() reports
``cross_origin_isolated`` and the thread count the page ran with). SIMD is on (the SIMD+threads binary
is the only one served). I/O names, shapes and dtypes come from the ONNX file (the onnx package);
fp16 tensors travel as their raw 16-bit patterns.

``run()`` is timed by the harness around the whole call (upload, session.run, download); the time of
``session.run`` alone, measured in the page with ``performance.now()``, is kept per run in
``inner_times_ms`` (bench reports both). The transfers are not free: Playwright's DevTools connection
receives a copy of each request body the page posts (measured: a 1.7 MB output, 384² fp32, costs a few
hundred ms on a loaded 2-core box), so the in-page time is the runtime's latency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleport.runtime.runners.base import Runner, RuntimeFailed, RuntimeUnavailable, TensorSpec
from styleport.runtime.runners.deps import first_line, need
from styleport.runtime.runners.ort import onnx_precision

# Browser vs native ONNX Runtime on the same int8 (qlinear) transformer, held to this PSNR (dB, peak 1).
# Measured (benchmarks/results/web_runtime.json, the demo's model at 384²): 46.3 dB browser vs native,
# and as far apart with graph optimizations off on both sides (45.9 dB) -- as far as native's own fused
# integer kernels are from its unfused QDQ graph (46.3 dB): quantization boundaries flipped by float
# rounding differences, not a kernel defect. 6 dB below the measurement.
WEB_INT8_PSNR_DB = 40.0

ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 11: "float64",
               9: "bool"}
# numpy dtype -> ORT Web tensor type
WEB_TYPES = {"float32": "float32", "float16": "float16", "uint8": "uint8", "int8": "int8", "int32": "int32",
             "int64": "int64", "float64": "float64", "bool": "bool"}

_INIT_JS = """async ([threads, model, level]) => {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.simd = true;
  ort.env.wasm.proxy = false;
  if (threads) ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  const session = await ort.InferenceSession.create(model, {executionProviders: ['wasm'],
                                                            graphOptimizationLevel: level});
  window.__sp = {ort, session};
  return {versions: ort.env.versions, numThreads: ort.env.wasm.numThreads,
          isolated: self.crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
          userAgent: navigator.userAgent, inputNames: session.inputNames, outputNames: session.outputNames};
}"""

_RUN_JS = """async ([inputs, outputNames]) => {
  const {ort, session} = window.__sp;
  const ctor = {float32: Float32Array, float16: Uint16Array, uint8: Uint8Array, int8: Int8Array,
                int32: Int32Array, int64: BigInt64Array, float64: Float64Array, bool: Uint8Array};
  const feeds = {};
  for (const x of inputs) {
    const buf = await (await fetch(x.url)).arrayBuffer();
    feeds[x.name] = new ort.Tensor(x.type, new ctor[x.type](buf), x.dims);
  }
  const t0 = performance.now();
  const out = await session.run(feeds);
  const ms = performance.now() - t0;
  const meta = [];
  for (const name of outputNames) {
    const t = out[name];
    const d = t.data;
    await fetch('/blob/out/' + encodeURIComponent(name),
                {method: 'POST', body: new Uint8Array(d.buffer, d.byteOffset, d.byteLength)});
    meta.push({name, type: t.type, dims: Array.from(t.dims)});
    t.dispose && t.dispose();
  }
  return {ms, outputs: meta};
}"""


def _onnx_specs(path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    onnx = need("onnx")
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def spec(v):
        tt = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                 for d in tt.shape.dim]
        return TensorSpec(v.name, shape, ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)))

    return ([spec(v) for v in m.graph.input if v.name not in inits], [spec(v) for v in m.graph.output])


class WebRunner(Runner):
    """Options: ``timeout_s`` (browser steps, default 300), ``optimization`` ("all" default, "basic",
    "extended", "disable": ONNX Runtime Web's graphOptimizationLevel, as OrtRunner's option)."""

    name = runtime = "onnxruntime-web"
    formats = ("onnx",)
    imports = ("playwright.sync_api",)

    def _open(self):
        from styleport.web import assets
        from styleport.web.browser import Browser
        try:
            assets.require(need_browser=True)
        except assets.WebUnavailable as e:
            raise RuntimeUnavailable(f"onnxruntime-web: {e}") from None
        path = Path(str(self.path))
        if not path.is_file():
            raise RuntimeFailed(f"onnxruntime-web: no model file {path}")
        if Path(str(path) + ".data").exists() or any(
                t.data_location == 1 for t in need("onnx").load(str(path), load_external_data=False).graph.initializer):
            raise RuntimeFailed(f"onnxruntime-web: {path.name} keeps its weights in an external file; "
                                "this runner loads single-file ONNX models")
        self._inputs, self._outputs = _onnx_specs(path)
        self.inner_times_ms: list[float] = []
        self.browser = Browser(timeout_s=float(self.options.get("timeout_s", 300)))
        try:
            self.browser.open()
            self.browser.server.serve_file("/model/model.onnx", path)
            self.browser.goto("/")
            level = {"disable": "disabled"}.get(self.options.get("optimization", "all"), self.options.get("optimization", "all"))
            self.info = self.browser.evaluate(_INIT_JS, [int(self.threads or 0), "/model/model.onnx", level])
        except Exception as e:  # noqa: BLE001 - Playwright / page errors
            console = "; ".join(self.browser.console[-3:])
            self.browser.close()
            raise RuntimeFailed(f"onnxruntime-web cannot load {path.name}: {first_line(e)}"
                                + (f" (page: {console[:300]})" if console else "")) from None
        self._out_names = list(self.info["outputNames"])
        self._chromium = assets.chromium_version()
        self._playwright = assets.playwright_version()

    def _close(self):
        b = getattr(self, "browser", None)
        if b is not None:
            b.close()
        self.browser = None

    def input_specs(self):
        return list(self._inputs)

    def output_specs(self):
        return list(self._outputs)

    def run(self, feeds):
        blobs = self.browser.server.blobs
        inputs = []
        for i, (name, arr) in enumerate(feeds.items()):
            a = np.ascontiguousarray(arr)
            t = WEB_TYPES.get(a.dtype.name)
            if t is None:
                raise RuntimeFailed(f"onnxruntime-web: input {name!r} has dtype {a.dtype.name}, not supported here")
            url = f"/blob/in/{i}"
            blobs[url] = a.astype(np.uint8) .tobytes() if a.dtype == bool else a.tobytes()
            inputs.append({"name": name, "type": t, "dims": list(a.shape), "url": url})
        try:
            res = self.browser.evaluate(_RUN_JS, [inputs, self._out_names])
        except Exception as e:  # noqa: BLE001
            console = "; ".join(self.browser.console[-3:])
            raise RuntimeFailed(f"onnxruntime-web failed to run {Path(str(self.path)).name}: {first_line(e)}"
                                + (f" (page: {console[:300]})" if console else "")) from None
        self.inner_times_ms.append(float(res["ms"]))
        outs = {}
        for o in res["outputs"]:
            dt = {"bool": np.uint8}.get(o["type"], np.dtype(o["type"]))
            a = np.frombuffer(blobs.pop("/blob/out/" + o["name"]), dtype=dt).reshape(o["dims"])
            outs[o["name"]] = a.astype(bool) if o["type"] == "bool" else a.copy()
        return outs

    def precision(self):
        return onnx_precision(self.path)

    def versions(self):
        return {"onnxruntime-web": self.info["versions"].get("web"), "chromium": self._chromium,
                "playwright": self._playwright}

    def describe(self):
        i = self.info
        return {"threads": self.threads, "backend": "wasm", "optimization": self.options.get("optimization", "all"), "simd": True, "wasm_threads": i["numThreads"],
                "cross_origin_isolated": i["isolated"], "hardware_concurrency": i["hardwareConcurrency"],
                "browser": self._chromium, "note": "ONNX Runtime Web WASM (SIMD, threads) in headless "
                "Chromium on this CPU; latency includes moving tensors to and from the page; peak RSS is "
                "the Python side only (the browser runs in its own processes)"}
