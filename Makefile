# Developer entry points for credbroker. Run `make help` for the list.

PYTHON ?= python3
# State of the local control plane started by `make cluster`: certificates,
# etcd data, logs and pids.
CLUSTER_STATE_DIR ?= .cluster
LOCALCLUSTER = PYTHONPATH=e2e $(PYTHON) -m localcluster --state-dir $(CLUSTER_STATE_DIR)

.DEFAULT_GOAL := help
.PHONY: help cluster cluster-down

help: ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

## --- Local control plane (e2e/localcluster) ---

cluster: ## Start the local control plane in the background; use it with: eval "$(make -s cluster)"
	@$(LOCALCLUSTER) up

cluster-down: ## Stop the local control plane started by `make cluster`.
	@$(LOCALCLUSTER) down
