# moreclip: `make demo` and `make test` work on a fresh machine (they create .venv when missing).
# The CPU torch/torchvision pair is pinned in constraints.txt for this machine class only.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAINTS := constraints.txt
DEMO_ARGS ?=
PYTEST_ARGS ?= -n 2

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint format install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24" setuptools wheel

# Stamp files so a second `make` does not reinstall; they are redone when the dependency list changes.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -c $(CONSTRAINTS) -e ".[all]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -c $(CONSTRAINTS) -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/moreclip demo $(DEMO_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
