"""Markdown tables for bench results and parity checks (also what the CLI prints)."""

from __future__ import annotations


def _f(v, spec=".2f"):
    if v is None:
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, spec)
    return str(v)


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def bench_table(results: list[dict]) -> str:
    head = ("| model | format | precision | runtime | size | threads | p50 ms | p90 ms | p99 ms | mean ms | "
            "min ms | load ms | first ms | peak RSS MB | MB | PSNR dB | max abs | parity |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        lat = r.get("latency_ms") or {}
        p = r.get("parity") or {}
        size = "x".join(map(str, r["input_size"])) if r.get("input_size") else "-"
        verdict = {True: "pass", False: "FAIL", None: "-"}[p.get("pass")] if p else (
            "-" if r.get("status") == "ok" else r.get("status", "-").upper())
        lines.append("| " + " | ".join(_cell(x) for x in (
            r["model"], r["format"], r["precision"], r["runtime"], size, _f(r.get("threads"), "d"),
            _f(lat.get("p50")), _f(lat.get("p90")), _f(lat.get("p99")), _f(lat.get("mean")), _f(lat.get("min")),
            _f(r.get("load_ms"), ".0f"), _f(r.get("first_run_ms"), ".1f"), _f(r.get("peak_rss_mb"), ".0f"),
            _f((r.get("file_bytes") or 0) / 1e6, ".2f"), _f(p.get("psnr_db"), ".1f"), _f(p.get("max_abs"), ".2e"),
            verdict)) + " |")
    notes = [f"- {r['model']}/{r['format']}/{r['precision']}@{r['runtime']}: {r.get('error') or r.get('parity_reason')}"
             for r in results if r.get("status") != "ok" or (r.get("parity") is None and r.get("parity_reason"))]
    for r in results:  # a runtime's own word on what its latency means (onnxruntime-web: WASM on this CPU)
        note = (r.get("settings") or {}).get("note") if r.get("status") == "ok" else None
        if note:
            inner = (r.get("inner_latency_ms") or {}).get("p50")
            notes.append(f"- {_label(r)}: {note}" + (f"; the runtime's own run p50 {_f(inner)} ms" if inner else ""))
    if notes:
        lines += ["", *dict.fromkeys(notes)]
    if any("profile" in r for r in results):
        lines += ["", profile_tables(results)]
    return "\n".join(lines)


def _label(r: dict) -> str:
    v = f"/{r['variant']}" if r.get("variant") else ""
    return f"{r['model']}/{r['format']}/{r['precision']}{v}@{r['runtime']}"


def profile_tables(results: list[dict], top_ops: int = 8, top_nodes: int = 5) -> str:
    """Per-op profiles (bench --profile): heaviest op types with ms and % of the profiled run, then
    the slowest nodes. Rows without a profile say why."""
    lines = ["### Per-op profiles", ""]
    seen_notes = set()
    for r in results:
        if "profile" not in r:
            continue
        p = r["profile"]
        if not p:
            why = r.get("error") if r.get("status") != "ok" else "this runtime gives no per-op times"
            lines += [f"**{_cell(_label(r))}**: no profile ({_cell(why)})", ""]
            continue
        p50 = (r.get("latency_ms") or {}).get("p50")
        cov = f" ({100 * p['coverage']:.1f}% of the run)" if p.get("coverage") is not None else ""
        lines += [f"**{_cell(_label(r))}** ({_cell(r.get('path', ''))}): {p['runs']} profiled runs, "
                  f"{_f(p['total_ms'])} ms per run, ops {_f(p['ops_ms'])} ms{cov}"
                  + (f"; bench p50 {_f(p50)} ms" if p50 is not None else ""), "",
                  "| op | nodes | ms | % of run |", "|---|---:|---:|---:|"]
        ops = p.get("by_op_type") or []
        for o in ops[:top_ops]:
            lines.append(f"| {_cell(o['op'])} | {o['count']} | {_f(o['ms'])} | {_f(o.get('pct'), '.1f')} |")
        if len(ops) > top_ops:
            rest = ops[top_ops:]
            ms = sum(o["ms"] for o in rest)
            pct = 100 * ms / p["total_ms"] if p.get("total_ms") else None
            lines.append(f"| {len(rest)} other op types | {sum(o['count'] for o in rest)} | {_f(ms)} | {_f(pct, '.1f')} |")
        slow = ", ".join(f"`{_cell(n['name'])}` {_cell(n['op'])} {_f(n['ms'])} ms"
                         for n in (p.get("slowest_nodes") or [])[:top_nodes])
        lines += ["", f"Slowest nodes: {slow or '-'}", ""]
        lines += [f"- {_cell(n)}" for n in p.get("notes") or [] if n not in seen_notes]  # once per report
        seen_notes.update(p.get("notes") or [])
        lines.append("")
    return "\n".join(lines).rstrip()


def parity_table(checks: list) -> str:
    cs = [c.to_dict() if hasattr(c, "to_dict") else c for c in checks]
    head = "| check | reference | max abs | mean abs | p99 abs | PSNR dB | SSIM | SNR dB | cosine | result |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in cs:
        p = c.get("parity") or {}
        lines.append("| " + " | ".join(_cell(x) for x in (
            c["name"], c.get("reference") or "-", _f(p.get("max_abs"), ".2e"), _f(p.get("mean_abs"), ".2e"),
            _f(p.get("p99_abs"), ".2e"), _f(p.get("psnr_db"), ".2f"), _f(p.get("ssim"), ".4f"),
            _f(p.get("snr_db"), ".1f"), _f(p.get("cosine"), ".6f"), c["status"].upper())) + " |")
    why = [f"- {c['name']}: {'; '.join(c['reasons'])}" for c in cs if c.get("reasons")]
    if why:
        lines += ["", *why]
    lines += ["", "PSNR uses peak 1.0 (images in [0,1]); the style bottleneck is not an image, so its PSNR/SSIM "
              "are not computed - judge it by cosine, max abs and SNR."]
    return "\n".join(lines)
