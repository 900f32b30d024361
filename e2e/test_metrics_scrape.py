"""End to end: the operator's /metrics endpoint counts a real issuance and leaks no secret.

This module runs its own operator process with ``--metrics-port``, so it must
not share a module with the long-running operator of ``test_broker.py``.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from localcluster import ClusterAccess
from operator_harness import OperatorProcess, wait_for
from pgserver import PostgresServer
from test_broker import (  # the fixtures are reused, not redefined
    _decoded,
    _start_story,
    api,
    crds,
    target,
)

__all__ = ["api", "crds", "target"]

LOOPBACK = "127.0.0.1"
SCRAPE_TIMEOUT_SECONDS = 5.0
METRICS_TIMEOUT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://{LOOPBACK}:{port}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS
        ) as response:
            return str(response.read().decode("utf-8"))
    except (urllib.error.URLError, ConnectionError):
        return None


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_scrape_counts_issuance(
    api: client.ApiClient,
    cluster: ClusterAccess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
    tmp_path: Path,
) -> None:
    port = _free_port()
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_path=tmp_path / "operator.log",
        extra_args=[
            "--namespace",
            namespace,
            "--metrics-port",
            str(port),
            "--metrics-address",
            LOOPBACK,
        ],
    )
    with process:
        before = wait_for(
            lambda: _scrape(port),
            timeout_seconds=METRICS_TIMEOUT_SECONDS,
            what=f"the metrics endpoint on {LOOPBACK}:{port}",
        )
        assert _sample(before, "credbroker_credentials_issued_total") == 0
        assert "credbroker_issuance_latency_seconds_count 0.0" in before

        secret = _start_story(api, namespace=namespace, target=target)

        # The counter moves just after the Secret is written, so poll briefly.
        after = wait_for(
            lambda: (
                text
                if (text := _scrape(port))
                and _sample(text, "credbroker_credentials_issued_total") >= 1
                else None
            ),
            timeout_seconds=METRICS_TIMEOUT_SECONDS,
            what="credbroker_credentials_issued_total to reach 1",
        )

    issued = _sample(
        after,
        "credbroker_credentials_issued_total",
        target_type="postgresql",
        reason="Issued",
    )
    assert issued == 1
    assert _sample(after, "credbroker_issuance_latency_seconds_count") == 1
    assert _sample(after, "credbroker_issuance_latency_seconds_sum") > 0
    assert _sample(after, "credbroker_active_credentials", target_type="postgresql") == 1
    assert _sample(after, "credbroker_jwks_fetches_total") >= 1

    data = _decoded(secret)
    assert data["password"] not in after
    assert data["uri"] not in after
    assert postgres.admin_password not in after
    assert namespace not in after
    assert secret.metadata.annotations["credbroker.dev/credential-id"] not in after
