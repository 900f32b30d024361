"""End to end: the operator is killed and restarted, and nothing is lost or leaked.

This module runs its own operator processes, so it must not share a module
with the long-running operator of ``test_broker.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from kubernetes import client

from localcluster import ClusterAccess
from operator_harness import OperatorProcess
from pgserver import PostgresServer
from test_broker import (  # the fixtures are reused, not redefined
    _decoded,
    _read_secret,
    _roles_of,
    _start_story,
    api,
    crds,
    target,
)

__all__ = ["api", "crds", "target"]


def test_restart_keeps_credential(
    api: client.ApiClient,
    cluster: ClusterAccess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "operator.log"
    first = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_path=log_path,
        extra_args=["--namespace", namespace, "--sweep-interval", "2", "--orphan-min-age", "3"],
    ).start()
    try:
        secret = _start_story(api, namespace=namespace, target=target)
    finally:
        first.kill()
    credential_id = secret.metadata.annotations["credbroker.dev/credential-id"]

    with OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_path=log_path,
        extra_args=["--namespace", namespace, "--sweep-interval", "2", "--orphan-min-age", "3"],
    ):
        time.sleep(8)
        core = client.CoreV1Api(api)
        current = _read_secret(core, namespace, "orders-db")
        assert current is not None
        assert current.metadata.annotations["credbroker.dev/credential-id"] == credential_id
        assert _decoded(secret)["username"] in _roles_of(postgres)
        with psycopg.connect(_decoded(current)["uri"]) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
