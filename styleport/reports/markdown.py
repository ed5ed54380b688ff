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
    if notes:
        lines += ["", *dict.fromkeys(notes)]
    return "\n".join(lines)


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
