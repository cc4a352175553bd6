# The two commands: `make run` (install, migrate, demo data, serve) and `make test`.
# `make static` rebuilds the committed browser bundle (static/dist) from static/src; needs Node.
# `make widget` rebuilds the committed notification widget (static/widget/dist); needs Node.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck install clean static widget

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/realtime-cms demo
	$(BIN)/realtime-cms serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check realtime_cms handlers tests

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadscope

static:
	cd static && npm ci --no-audit --no-fund && npm run build

widget:
	cd static/widget && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
