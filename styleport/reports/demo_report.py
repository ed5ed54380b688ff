"""The demo's report: report.html (opens from disk, no server: images by relative path, charts and
heatmaps inline), report.json and junit.xml. Jinja2 with autoescape: every string from a file or a
model is escaped."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from styleport import metrics
from styleport.reports.json_report import write_json, write_text_atomic
from styleport.reports.junit import write_junit

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>styleport demo report</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
th{background:#f3f3f3}.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}
.error,.skipped{color:#777}figure{display:inline-block;margin:4px;text-align:center;vertical-align:top}
figure img{max-width:190px;max-height:190px;display:block;border:1px solid #ccc}
figcaption{font-size:11px;max-width:190px}.pair{display:inline-block;border:1px solid #e4e4e4;margin:2px}.small{font-size:12px;color:#555}
</style></head><body>
<h1>styleport demo report</h1>
<p>Model: <b>{{ doc.model }}</b>{% if doc.quick %} &middot; <b>quick mode</b> (reduced sizes){% endif %}<br>
Export size {{ doc.inputs.size }}&times;{{ doc.inputs.size }} content, {{ doc.inputs.style_size }}&times;{{ doc.inputs.style_size }} style
&middot; demo took {{ doc.elapsed_s }} s (export {{ doc.export_s }} s)</p>

{% if doc.web and doc.web.present %}<p id="web">Browser: <a href="{{ doc.web.page }}">{{ doc.web.page }}</a> stylises a photo and a painting you pick
in the page (serve the folder over HTTP: README "The browser"); the ONNX files were also checked in ONNX Runtime Web
{{ doc.web.onnxruntime_web }} (WASM) in {{ doc.web.browser }} (runtime <code>onnxruntime-web</code> below).</p>
{% elif doc.web %}<p class="small" id="web">{{ doc.web.note }}</p>{% endif %}
<h2 id="gallery">Stylised samples (PyTorch){% if doc.google and doc.google.present %} beside Google's own TFLite files{% endif %}</h2>
{% if doc.google and doc.google.present %}<p class="small" id="google">Each pair: this model in PyTorch at the content's own size (left) and Google's own
files {{ doc.google.files|join(' + ') }} run in LiteRT (right; content stretched to 384&times;384 as their transfer file takes it,
style 256&times;256, shown at the left image's size, so brush strokes can differ in scale). dB: PSNR between the two on identical 384&times;384 inputs; over {{ doc.google.pairs }} pairs
min {{ '%.1f'|format(doc.google.psnr_db_min) }} dB, mean {{ '%.1f'|format(doc.google.psnr_db_mean) }} dB.</p>
{% elif doc.google %}<p class="small" id="google">{{ doc.google.note }}</p>{% endif %}
{% for c in contents %}<div>{% for g in gallery if g.content == c %}<span class="pair"><figure><img src="{{ g.file }}" alt="{{ g.content }} / {{ g.style }}">
<figcaption>{{ g.content }} &times; {{ g.style }}, strength {{ g.strength }}</figcaption></figure>{% if g.google_file %}<figure><img src="{{ g.google_file }}" alt="Google: {{ g.content }} / {{ g.style }}">
<figcaption>Google's TFLite files, {{ '%.1f'|format(g.google_psnr_db) }} dB</figcaption></figure>{% endif %}</span>{% endfor %}</div>{% endfor %}

<h2 id="compare">Content, style, PyTorch reference and every runtime</h2>
<p class="small">Input pair: {{ doc.inputs.content }} &times; {{ doc.inputs.style }}. Heatmaps: |runtime &minus; PyTorch|,
mean over RGB, on a 0&ndash;{{ heat_max }} scale (reduced precisions).</p>
<figure><img src="samples/content/{{ doc.inputs.content }}.png" alt="content"><figcaption>content</figcaption></figure>
<figure><img src="samples/style/{{ doc.inputs.style }}.png" alt="style"><figcaption>style</figcaption></figure>
<figure><img src="reference_torch.png" alt="PyTorch"><figcaption>PyTorch fp32 (reference)</figcaption></figure>
{% for c in compare %}<figure>{% if c.file %}<img src="{{ c.file }}" alt="{{ c.format }} {{ c.precision }}">{% else %}
<div style="width:190px;min-height:60px;border:1px dashed #aaa;overflow-wrap:anywhere" class="small">{{ c.error }}</div>{% endif %}
<figcaption>{{ c.format }} {{ c.precision }}<br>{{ c.runtime }}{% if c.psnr %}<br>{{ '%.1f'|format(c.psnr) }} dB{% endif %}</figcaption></figure>{% endfor %}
<div>{% for c in compare if c.heatmap %}<figure><img src="data:image/png;base64,{{ c.heatmap }}" alt="error heatmap">
<figcaption>error {{ c.format }} {{ c.precision }}</figcaption></figure>{% endfor %}</div>

<h2 id="latency">Latency</h2>
{% if latency_chart %}<img alt="latency chart" src="data:image/png;base64,{{ latency_chart }}">{% endif %}
<p class="small">Bars: median (p50); whiskers: p90. {{ runs_note }}</p>

<h2 id="size">Size</h2>
{% if size_chart %}<img alt="size chart" src="data:image/png;base64,{{ size_chart }}">{% endif %}

<h2 id="parity">Parity against PyTorch</h2>
<table><tr><th>check</th><th>runtime</th><th>max abs</th><th>PSNR dB</th><th>SSIM</th><th>cosine</th><th>result</th><th>reasons</th></tr>
{% for c in checks %}<tr><td>{{ c.name }}</td><td>{{ c.runtime }}</td><td>{{ f(c.parity.max_abs, '.2e') }}</td>
<td>{{ f(c.parity.psnr_db, '.1f') }}</td><td>{{ f(c.parity.ssim, '.4f') }}</td><td>{{ f(c.parity.cosine, '.6f') }}</td>
<td class="{{ c.status }}">{{ c.status }}</td><td class="small">{{ c.reasons|join('; ') }}</td></tr>{% endfor %}</table>
<p class="small">PSNR uses peak 1.0 (images in [0,1]); the predictor's bottleneck is judged by cosine and SNR.
Default tolerances: fp32 max abs &le; 1e-4 (ORT) / 1e-3 (LiteRT); fp16 PSNR &ge; 45 dB; int8 PSNR &ge; 30 dB.</p>

<h2 id="benchmarks">Benchmark table</h2>
<table><tr><th>model</th><th>format</th><th>precision</th><th>runtime</th><th>p50 ms</th><th>p90 ms</th><th>min ms</th>
<th>load ms</th><th>first run ms</th><th>peak RSS MB</th><th>bytes</th><th>status</th></tr>
{% for r in results %}<tr><td>{{ r.model }}</td><td>{{ r.format }}</td><td>{{ r.precision }}</td><td>{{ r.runtime }}</td>
<td>{{ f(r.latency_ms and r.latency_ms.p50) }}</td><td>{{ f(r.latency_ms and r.latency_ms.p90) }}</td>
<td>{{ f(r.latency_ms and r.latency_ms.min) }}</td><td>{{ f(r.load_ms, '.0f') }}</td><td>{{ f(r.first_run_ms, '.0f') }}</td>
<td>{{ f(r.peak_rss_mb, '.0f') }}</td><td>{{ '{:,}'.format(r.file_bytes or 0) }}</td><td class="small">{{ r.status }} {{ r.error or '' }}</td></tr>{% endfor %}</table>

<h2 id="machine">Machine and tools</h2>
<table>{% for k, v in machine.items() if k != 'versions' %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
{% for k, v in tools.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
</body></html>
"""

HEAT_MAX = 0.1


def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def latency_chart(results: list[dict]) -> str | None:
    rows = [r for r in results if r.get("latency_ms")]
    if not rows:
        return None
    plt = _plt()
    labels = [f"{r['model'][:5]}\n{r['format']}/{r['precision']}\n{r['runtime'][:10]}" for r in rows]
    p50 = np.array([r["latency_ms"]["p50"] for r in rows])
    p90 = np.array([r["latency_ms"]["p90"] for r in rows])
    fig, ax = plt.subplots(figsize=(max(5, 0.75 * len(rows)), 3.6), dpi=100)
    colors = ["#3b6ea5" if r["model"] == "transformer" else "#8a5fb0" for r in rows]
    ax.bar(range(len(rows)), p50, color=colors, yerr=[np.zeros_like(p50), np.maximum(p90 - p50, 0)], capsize=3)
    ax.set_xticks(range(len(rows)), labels, fontsize=6)
    ax.set_ylabel("latency ms (p50, whisker p90)")
    fig.tight_layout()
    return _png_b64(fig)


def size_chart(manifest: dict) -> str | None:
    arts = manifest.get("artifacts") or []
    if not arts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(arts)), 3.2), dpi=100)
    labels = [f"{a['model'][:5]}\n{a['format']}/{a['precision']}{('/' + a['variant']) if a.get('variant') else ''}"
              for a in arts]
    ax.bar(range(len(arts)), [a["bytes"] / 1e6 for a in arts],
           color=["#3b6ea5" if a["model"] == "transformer" else "#8a5fb0" for a in arts])
    ax.set_xticks(range(len(arts)), labels, fontsize=6)
    ax.set_ylabel("MB")
    fig.tight_layout()
    return _png_b64(fig)


def heatmap(out: Path, ref: Path) -> tuple[str, float]:
    a = np.asarray(Image.open(out).convert("RGB"), np.float32) / 255
    b = np.asarray(Image.open(ref).convert("RGB"), np.float32) / 255
    if a.shape != b.shape:
        a = np.asarray(Image.open(out).convert("RGB").resize(Image.open(ref).size), np.float32) / 255
    err = np.abs(a - b).mean(axis=2)
    psnr = metrics.psnr_db(b, a)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.2, 2.2), dpi=90)
    ax.imshow(err, cmap="inferno", vmin=0, vmax=HEAT_MAX)
    ax.axis("off")
    fig.tight_layout(pad=0.1)
    return _png_b64(fig), psnr


def write_demo_report(out: Path, doc: dict, checks: list) -> None:
    import jinja2

    for c in doc["compare"]:
        if c.get("file"):
            hm, psnr = heatmap(out / c["file"], out / "reference_torch.png")
            c["psnr"] = psnr
            if c["precision"] != "fp32":
                c["heatmap"] = hm
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)

    def f(v, spec=".2f"):
        return "-" if v is None or v is False or isinstance(v, jinja2.Undefined) else format(v, spec)

    contents = list(dict.fromkeys(g["content"] for g in doc["gallery"]))
    runs = {r.get("runs") for r in doc["results"] if r.get("runs")}
    html = env.from_string(TEMPLATE).render(
        doc=doc, contents=contents, gallery=doc["gallery"], compare=doc["compare"], checks=doc["checks"],
        results=doc["results"], machine=doc["machine"], tools=doc["tools"], f=f, heat_max=HEAT_MAX,
        latency_chart=latency_chart(doc["results"]), size_chart=size_chart(doc["manifest"]),
        runs_note=f"{', '.join(str(r) for r in sorted(runs))} timed runs per artefact" if runs else "")
    write_text_atomic(out / "report.html", html)
    slim = {k: v for k, v in doc.items() if k != "manifest"}
    slim["artifacts"] = doc["manifest"]["artifacts"]
    write_json(slim, out / "report.json")
    write_junit(checks, out / "junit.xml", suite="styleport.demo")
