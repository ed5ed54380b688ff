# The two set-up commands of the README. Both create .venv when missing, install from this repo's own
# files, and are safe to run again.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean arm64 test-arm64 web-setup

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# pip byte-compiles every installed file on one core; compileall does the same files on every core
# instead (fresh clones on 2 cores: 81 s median against 88 for pip alone, noisy; install_runs in
# benchmarks/results/test_runs.json). Like pip, it skips the few files it cannot compile (two in
# torch and litert-torch use Python 3.12 syntax), hence "|| true".
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-compile -e '.[test]'
	$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
	touch $@

demo: $(VENV)/.installed
	$(BIN)/styleport demo --out demo-out

# two pytest-xdist workers, one test file each at a time (module fixtures are built once), the
# longest files first (tests/conftest.py HEAVY_FIRST; --no-loadscope-reorder keeps that order);
# every test runs; the 20 slowest are listed at the end (CI logs show where the time goes). Times
# on 2 cores, serial and with two workers: benchmarks/results/test_runs.json.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=20

# The browser target's assets: npm ci of the pinned onnxruntime-web into ~/.cache/styleport/web (network:
# the npm registry; needs npm). Chromium comes from the system (apt-get install chromium). Without
# them the browser tests skip, saying so.
web-setup: $(VENV)/.installed
	$(BIN)/styleport device setup web

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

# The ARM gate (issue 22): the real aarch64 LiteRT / ONNX Runtime kernels under QEMU user mode.
# Needs qemu-user (apt-get install qemu-user) and network to Debian and PyPI once; the sysroot is
# cached in $(STYLEPORT_ARM64_ROOT) or ~/.cache/styleport/arm64 (about 420 MB, under a minute here).
arm64: $(VENV)/.installed
	$(BIN)/styleport device setup arm64

test-arm64: arm64
	$(BIN)/python -m pytest -q tests/test_arm64.py

clean:
	rm -rf demo-out .pytest_cache build *.egg-info
