"""HTML report (Jinja2, autoescape on: every string that came from a file is escaped) with an inline
base64 PNG latency chart drawn by matplotlib (Agg backend)."""

from __future__ import annotations

import base64
import io

from styleport.reports.json_report import write_text_atomic

TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}.FAIL,.ERROR{color:#b00;font-weight:bold}
.pass{color:#070}.SKIPPED{color:#777}</style></head><body>
<h1>{{ title }}</h1>
{% if machine %}<p>{{ machine.cpu }} &middot; {{ machine.cores }} cores &middot; {{ machine.os }} &middot;
Python {{ machine.python }}</p>{% endif %}
{% if chart %}<img alt="latency chart" src="data:image/png;base64,{{ chart }}">{% endif %}
{% if results %}<h2>Latency</h2><table><tr>{% for h in bench_head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in results %}<tr><td>{{ r.model }}</td><td>{{ r.format }}</td><td>{{ r.precision }}</td>
<td>{{ r.runtime }}</td><td>{{ r.path }}</td><td>{{ fmt(r.latency_ms and r.latency_ms.p50) }}</td>
<td>{{ fmt(r.latency_ms and r.latency_ms.p90) }}</td><td>{{ fmt(r.load_ms, '.0f') }}</td>
<td>{{ fmt(r.peak_rss_mb, '.0f') }}</td><td>{{ fmt(r.parity and r.parity.psnr_db) }}</td>
<td class="{{ verdict(r) }}">{{ verdict(r) }}</td><td>{{ r.error or r.parity_reason or '' }}</td></tr>
{% endfor %}</table>{% endif %}
{% if profiled %}<h2>Per-op profiles</h2>
{% for r in profiled %}<h3>{{ label(r) }}</h3>
{% if r.profile %}<p>{{ r.profile.runs }} profiled runs, {{ fmt(r.profile.total_ms) }} ms per run, ops
{{ fmt(r.profile.ops_ms) }} ms{% if r.profile.coverage is not none %} ({{ fmt(100 * r.profile.coverage, '.1f') }}%
of the run){% endif %}{% if r.latency_ms %}; bench p50 {{ fmt(r.latency_ms.p50) }} ms{% endif %}</p>
<table><tr><th>op</th><th>nodes</th><th>ms</th><th>% of run</th><th></th></tr>
{% for o in r.profile.by_op_type[:top_ops] %}<tr><td>{{ o.op }}</td><td>{{ o.count }}</td><td>{{ fmt(o.ms) }}</td>
<td>{{ fmt(o.pct, '.1f') }}</td><td><div style="background:#3b6ea5;height:9px;width:{{ (o.pct or 0)|round(1) }}px">
</div></td></tr>{% endfor %}</table>
<p>Slowest nodes:</p><table><tr><th>node</th><th>op</th><th>ms</th></tr>
{% for n in r.profile.slowest_nodes[:top_nodes] %}<tr><td>{{ n.name }}</td><td>{{ n.op }}</td><td>{{ fmt(n.ms) }}</td></tr>
{% endfor %}</table><p style="font-size:12px">{{ r.profile.notes|join(' · ') }}</p>
{% else %}<p>No profile: {{ r.error or 'this runtime gives no per-op times' }}</p>{% endif %}
{% endfor %}{% endif %}
{% if checks %}<h2>Parity</h2><table><tr><th>check</th><th>reference</th><th>max abs</th><th>PSNR dB</th>
<th>SSIM</th><th>SNR dB</th><th>cosine</th><th>result</th><th>reasons</th></tr>
{% for c in checks %}<tr><td>{{ c.name }}</td><td>{{ c.reference }}</td><td>{{ fmt(c.parity.max_abs, '.2e') }}</td>
<td>{{ fmt(c.parity.psnr_db) }}</td><td>{{ fmt(c.parity.ssim, '.4f') }}</td><td>{{ fmt(c.parity.snr_db) }}</td>
<td>{{ fmt(c.parity.cosine, '.6f') }}</td><td class="{{ c.status|upper if c.status != 'pass' else 'pass' }}">
{{ c.status }}</td><td>{{ c.reasons|join('; ') }}</td></tr>{% endfor %}</table>
<p>PSNR peak 1.0 (images in [0,1]); bottleneck parity by cosine / max abs / SNR.</p>{% endif %}
</body></html>
"""


def _fmt(v, spec=".2f"):
    return "-" if v is None or v is False else format(v, spec)


def _verdict(r):
    p = r.get("parity")
    if r.get("status") != "ok":
        return str(r.get("status", "error")).upper()
    if not p:
        return "-"
    return {True: "pass", False: "FAIL", None: "-"}[p.get("pass")]


def _label(r):
    v = f"/{r['variant']}" if r.get("variant") else ""
    return f"{r['model']}/{r['format']}/{r['precision']}{v}@{r['runtime']} ({r.get('path', '')})"


def latency_chart(results: list[dict]) -> str | None:
    rows = [r for r in results if r.get("latency_ms")]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['model']}/{r['format']}/{r['precision']}\n{r['runtime']}" for r in rows]
    p50 = [r["latency_ms"]["p50"] for r in rows]
    p90 = [r["latency_ms"]["p90"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows)), 3.2), dpi=100)
    ax.bar(range(len(rows)), p90, color="#cfd8e6", label="p90")
    ax.bar(range(len(rows)), p50, color="#3b6ea5", label="p50")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(title: str, results: list[dict] | None = None, checks: list | None = None,
                machine: dict | None = None) -> str:
    import jinja2
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    cs = [c.to_dict() if hasattr(c, "to_dict") else c for c in (checks or [])]
    return env.from_string(TEMPLATE).render(
        title=title, machine=machine, results=results or [], checks=cs, chart=latency_chart(results or []),
        fmt=_fmt, verdict=_verdict, profiled=[r for r in (results or []) if "profile" in r],
        label=_label, top_ops=10, top_nodes=8,
        bench_head=["model", "format", "precision", "runtime", "file", "p50 ms", "p90 ms", "load ms",
                    "peak RSS MB", "PSNR dB", "parity", "note"])


def write_html(path, title: str, results=None, checks=None, machine=None):
    return write_text_atomic(path, render_html(title, results, checks, machine))
