"""Strings taken from files (model names, runtime messages, image names) are escaped in the demo report."""

from styleport.reports.demo_report import write_demo_report

EVIL = '<script>alert("x")</script>'


def test_demo_report_escapes_every_string(tmp_path):
    doc = {"model": EVIL, "quick": True, "elapsed_s": 1.0, "export_s": 0.5,
           "inputs": {"content": EVIL, "style": "s", "size": 64, "style_size": 64},
           "gallery": [{"content": EVIL, "style": EVIL, "strength": 1.0, "file": "stylized/" + EVIL + ".png"}],
           "compare": [{"format": "onnx", "precision": "fp32", "runtime": EVIL, "error": EVIL}],
           "checks": [{"name": EVIL, "runtime": EVIL, "status": "fail", "reasons": [EVIL],
                       "parity": {"max_abs": 1.0, "psnr_db": 10.0, "ssim": 0.5, "cosine": 0.9}}],
           "results": [{"model": EVIL, "format": "onnx", "precision": "fp32", "runtime": EVIL, "status": EVIL,
                        "latency_ms": None, "file_bytes": 10}],
           "machine": {"cpu": EVIL}, "tools": {EVIL: EVIL},
           "manifest": {"artifacts": [{"model": "transformer", "format": "onnx", "precision": "fp32",
                                       "bytes": 10, "path": "x"}]}}
    write_demo_report(tmp_path, doc, [])
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
