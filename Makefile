# cdrflow: `make run` starts the whole system on embedded infrastructure; `make test` checks it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast fuzz lint deploy-check bench docs clean help

help:
	@echo "make run    - start ingest :8081, rater :8082, notifier :8083 on embedded PostgreSQL + Tansu"
	@echo "make test   - lint and run every test (unit, integration, end-to-end, crash)"
	@echo "make bench  - measure throughput, write docs/benchmarks.md"
	@echo "make fuzz   - the fuzz tier ten times deeper than make test draws it"
	@echo "make docs   - regenerate the configuration reference in docs/operations.md"
	@echo "make lint   - ruff, mypy and the import-linter contracts"
	@echo "make deploy-check - lint deploy/Dockerfile, render and validate deploy/k8s (offline)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,embedded]"
	@touch $(STAMP)

# checkov in a venv of its own: it requires packaging<24, pytest 9 packaging>=24.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

$(CHECKOV_STAMP): deploy/checkov-constraints.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -c deploy/checkov-constraints.txt checkov
	@touch $(CHECKOV_STAMP)

install: $(STAMP) $(CHECKOV_STAMP)

run: $(STAMP)
	$(BIN)/cdrflow dev

MYPY_PATHS := libs/cdrmodel/src libs/devstack/src services/ingest/src services/rater/src services/notifier/src

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory deploy-check
	$(BIN)/pytest -n 2 --durations=15 --cov --cov-report=term-missing:skip-covered --cov-report=json
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

# The image and the manifests, checked without a Docker engine or a cluster: hadolint, every
# COPY source present, both overlays rendered and validated (deploy/check.py), then checkov's
# Dockerfile and Kubernetes checks (skips and their reasons: deploy/checkov.yaml, inline).
RENDERED := build/deploy

deploy-check: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/hadolint --failure-threshold style deploy/Dockerfile
	$(BIN)/python deploy/check.py copies deploy/Dockerfile
	@mkdir -p $(RENDERED)
	$(BIN)/kubectl kustomize deploy/k8s/overlays/dev > $(RENDERED)/dev.yaml
	$(BIN)/kubectl kustomize deploy/k8s/overlays/prod > $(RENDERED)/prod.yaml
	$(BIN)/python deploy/check.py manifests $(RENDERED)/dev.yaml $(RENDERED)/prod.yaml
	$(CHECKOV_VENV)/bin/checkov --config-file deploy/checkov.yaml --framework dockerfile kubernetes \
		-f deploy/Dockerfile -f $(RENDERED)/dev.yaml -f $(RENDERED)/prod.yaml

docs: $(STAMP)
	$(BIN)/python -m cdrflow_dev.config_reference --write

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
