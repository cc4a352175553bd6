# The two commands: `make run` (install, migrate, demo data, serve) and `make test`.
# `make static` rebuilds the committed browser bundle (static/dist) from static/src; needs Node.
# `make widget` rebuilds the committed notification widget (static/widget/dist); needs Node.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck install clean static widget bench bench-smoke bench-soak bench-jobs

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
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2 --dist loadscope

static:
	cd static && npm ci --no-audit --no-fund && npm run build

widget:
	cd static/widget && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (bench/, docs/benchmarks.md): peers and Node packages install into bench/ only.
# `make bench` runs the whole matrix (hours); `make bench-smoke` proves every server and
# adapter in a few minutes (CI). BENCH_ARGS passes options to bench/run.py.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

bench/node_modules/.installed-full: bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund
	touch $@ bench/node_modules/.installed-smoke

bench/node_modules/.installed-smoke: bench/package-lock.json
	cd bench && npm ci --omit=optional --no-audit --no-fund
	touch $@

bench: $(STAMP) $(BENCH_STAMP) bench/node_modules/.installed-full
	$(BENCH_VENV)/bin/python bench/run.py --profile full $(BENCH_ARGS)

bench-smoke: $(STAMP) $(BENCH_STAMP) bench/node_modules/.installed-smoke
	$(BENCH_VENV)/bin/python bench/run.py --profile smoke $(BENCH_ARGS)
	$(BIN)/python bench/jobs/run.py --smoke

# Memory soak (bench/soak/run.py, docs/benchmarks.md): editors type, join and leave for
# MINUTES; prints the server's RSS slope against a floor. BENCH_ARGS passes more options.
MINUTES ?= 10
bench-soak: $(STAMP)
	$(BIN)/python bench/soak/run.py --minutes $(MINUTES) $(BENCH_ARGS)

# Job system (bench/jobs/run.py, docs/benchmarks.md "Jobs"): no-op jobs/s through 1 and 3
# worker processes, enqueue and wake-up latency, on SQLite and a throwaway MariaDB + Redis;
# py-spy profiles a missed floor. BENCH_ARGS passes more options (--jobs, --backends ...).
$(BIN)/py-spy: | $(BIN)/python
	$(BIN)/pip install --quiet py-spy

bench-jobs: $(STAMP) $(BIN)/py-spy
	$(BIN)/python bench/jobs/run.py $(BENCH_ARGS)
