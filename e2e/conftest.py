"""Fixtures for the end-to-end suite: ``cluster`` (session) and ``namespace`` (function).

``cluster`` starts the local control plane once per session, or, when
``CREDBROKER_E2E_KUBECONFIG`` names an admin kubeconfig, uses that cluster.
Every test collected under ``e2e/`` is marked ``e2e``.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

# Makes `import localcluster` work for every test under e2e/.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from localcluster import ClusterAccess, ExternalCluster, LocalCluster
from operator_harness import prepare_postgres
from pgserver import PostgresServer

logger = logging.getLogger(__name__)

EXTERNAL_KUBECONFIG_ENV = "CREDBROKER_E2E_KUBECONFIG"
DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS = 60.0
_E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under e2e/ with ``e2e``."""
    for item in items:
        if _E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterAccess]:
    """The cluster under test, with admin rights: local, or the one in CREDBROKER_E2E_KUBECONFIG."""
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    if external:
        yield ExternalCluster.connect(Path(external))
        return

    local = LocalCluster.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def namespace(cluster: ClusterAccess) -> Iterator[str]:
    """A new namespace with a random suffix and its default ServiceAccount, deleted afterwards."""
    name = f"e2e-{secrets.token_hex(4)}"
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        # Pods are rejected by admission until the serviceaccount controller
        # has created the namespace's default ServiceAccount.
        deadline = time.monotonic() + DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                break
            except ApiException as error:
                if error.status != 404:
                    raise
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS:.0f} s waiting for "
                    f"ServiceAccount {name}/default: is kube-controller-manager running?"
                )
            time.sleep(0.1)

        try:
            yield name
        finally:
            try:
                core.delete_namespace(name)
            except ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session, prepared by ``prepare_postgres``."""
    with PostgresServer(database="shop") as server:
        prepare_postgres(server.admin_dsn())
        yield server
