# `make demo`: set up .venv and run the whole pipeline on the offline default dataset.
# `make test`: set up .venv, lint, and run the test suite (the slow end-to-end `dvc repro` tests included).
# `make lint`: ruff over the code (pyproject.toml's [tool.ruff]).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# A run on a laptop must not fight over cores: torch sets its own threads (see train/device.py).
export OMP_NUM_THREADS ?= 2

.PHONY: demo test test-fast lint setup repro bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show
	@git diff --quiet -- metrics/metrics.json 2>/dev/null || echo "metrics/metrics.json differs from the committed run:" \
		"reruns are bit-identical only with the same precision and kind of processor (see metrics/train.json" \
		"and README, Reproducibility)"
	@echo "Plots: plots/*.png; captions: data/predictions.json; model: models/"

repro: setup
	$(BIN)/dvc repro

test: setup lint
	$(BIN)/python -m pytest -q

test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src stages tests bench

bench: setup
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf data models .dvc/cache .dvc/tmp
