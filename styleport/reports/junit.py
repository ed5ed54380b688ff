"""JUnit XML: one testcase per artefact parity check; <failure> when it fails, <error> when the
runtime failed, <skipped> when it cannot run here (e.g. CoreML on Linux) - never a silent pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from styleport.reports.json_report import write_text_atomic


def _fmt(v):
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def junit_xml(checks: list, suite: str = "styleport.parity", time_s: float = 0.0) -> str:
    """``checks``: dicts (Check.to_dict()) or objects with to_dict()."""
    cases = [c.to_dict() if hasattr(c, "to_dict") else c for c in checks]
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=str(sum(c["status"] == "fail" for c in cases)),
                       errors=str(sum(c["status"] == "error" for c in cases)),
                       skipped=str(sum(c["status"] == "skipped" for c in cases)), time=f"{time_s:.3f}")
    for c in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{c.get('model')}.{c.get('format')}",
                           name=c["name"], file=str(c.get("path") or ""))
        p = c.get("parity") or {}
        details = (f"reference {c.get('reference') or '-'}; max_abs {_fmt(p.get('max_abs'))}, "
                   f"mean_abs {_fmt(p.get('mean_abs'))}, PSNR {_fmt(p.get('psnr_db'))} dB (peak 1.0), "
                   f"SSIM {_fmt(p.get('ssim'))}, SNR {_fmt(p.get('snr_db'))} dB, cosine {_fmt(p.get('cosine'))}; "
                   f"tolerance {c.get('tolerance')}")
        msg = "; ".join(c.get("reasons") or []) or c["status"]
        if c["status"] == "fail":
            el = ET.SubElement(tc, "failure", message=msg, type="ParityFailure")
            el.text = details
        elif c["status"] == "error":
            ET.SubElement(tc, "error", message=msg, type="RuntimeFailure")
        elif c["status"] == "skipped":
            ET.SubElement(tc, "skipped", message=msg)
        else:
            out = ET.SubElement(tc, "system-out")
            out.text = details
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(checks: list, path, suite: str = "styleport.parity", time_s: float = 0.0):
    return write_text_atomic(path, junit_xml(checks, suite, time_s))
