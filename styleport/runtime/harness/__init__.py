"""Parity and benchmarking: which artefacts run where, against what, judged how (see parity.py, bench.py)."""
