# One entry point for every tool. Each target creates its own virtual environment
# on a fresh machine (python3 -m venv) and installs the package into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# the stamps carry a checksum of pyproject.toml: editing it reinstalls
SUM    := $(shell cksum < pyproject.toml | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.test-$(SUM)
DEV_STAMP  := $(VENV)/.dev-$(SUM)

.PHONY: test lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.test-*
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.dev-* $(VENV)/.test-*
	touch $@ $(TEST_STAMP)

## test: create the environment, install lrp_ref with its test extras, run the whole suite
test: $(TEST_STAMP)
	$(BIN)/python -m pytest

## lint: ruff on the package, the tests and the scripts
lint: $(DEV_STAMP)
	$(BIN)/ruff check lrp_ref tests

## typecheck: mypy (strict) on the package
typecheck: $(DEV_STAMP)
	$(BIN)/mypy

## check: lint, typecheck and test
check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
