# Developer entry points for credbroker. Run `make help` for the list.

PYTHON ?= python3
# State of the local control plane started by `make cluster`: certificates,
# etcd data, logs and pids.
CLUSTER_STATE_DIR ?= .cluster
LOCALCLUSTER = PYTHONPATH=e2e $(PYTHON) -m localcluster --state-dir $(CLUSTER_STATE_DIR)

.DEFAULT_GOAL := help
.PHONY: help cluster cluster-down

help: ## List the targets.
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

## --- Local control plane (e2e/localcluster) ---

cluster: ## Start the local control plane in the background; use it with: eval "$(make -s cluster)"
	@$(LOCALCLUSTER) up

cluster-down: ## Stop the local control plane started by `make cluster`.
	@$(LOCALCLUSTER) down

## --- Project ---

.PHONY: install lint test test-unit test-e2e demo

install: ## Install credbroker and its test dependencies into the current Python.
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[test]'

lint: ## Run ruff and mypy --strict.
	$(PYTHON) -m ruff check operator tests e2e bench
	$(PYTHON) -m mypy

test: install lint ## Lint, then run every test: unit, PostgreSQL and end-to-end.
	$(PYTHON) -m pytest -v -ra

test-unit: ## Run the tests that need neither a cluster nor PostgreSQL.
	$(PYTHON) -m pytest -q -m "not e2e and not postgres"

test-e2e: ## Run only the end-to-end suite (starts the local control plane).
	$(PYTHON) -m pytest -v -ra -m e2e

demo: install ## Run the whole story: control plane, PostgreSQL, operator, examples, and a login.
	$(PYTHON) e2e/demo.py $(DEMO_ARGS)

## --- Benchmarks ---

# Benchmark sizes: tiny, small or full (bench/scales.py).
BENCH_SCALE ?= full

.PHONY: bench

bench: install ## Run the benchmarks (BENCH_SCALE=full); write bench/results/ and docs/benchmarks.md.
	$(PYTHON) -m bench --scale $(BENCH_SCALE)
