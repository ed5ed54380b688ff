# The two set-up commands of the README. Both create .venv when missing, install from this repo's own
# files, and are safe to run again.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean web-setup

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/styleport demo --out demo-out

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# The browser target's assets: npm ci of the pinned onnxruntime-web into ~/.cache/styleport/web (network:
# the npm registry; needs npm). Chromium comes from the system (apt-get install chromium). Without
# them the browser tests skip, saying so.
web-setup: $(VENV)/.installed
	$(BIN)/styleport device setup web

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf demo-out .pytest_cache build *.egg-info
