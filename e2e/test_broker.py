"""End to end: a verified pod gets an expiring PostgreSQL login in a Secret.

The operator runs as a child process against the local control plane (real
TokenRequest, TokenReview, RBAC and garbage collection) and a real
PostgreSQL server. Every test gets its own namespace and target.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import sql

from localcluster import ClusterAccess
from operator_harness import (
    OperatorProcess,
    apply_crds,
    binding_body,
    create_service_account,
    install_postgres_target,
    pod_body,
    wait_for,
)
from pgserver import PostgresServer

GROUP, VERSION = "credbroker.dev", "v1alpha1"
ISSUE_TIMEOUT_SECONDS = 60.0
LABELS = {"app": "orders"}


@pytest.fixture(scope="module")
def crds(cluster: ClusterAccess) -> None:
    apply_crds(cluster.kubectl)


@pytest.fixture(scope="module")
def operator(
    cluster: ClusterAccess,
    crds: None,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_path=log_path,
        extra_args=["--sweep-interval", "2", "--orphan-min-age", "3", "--retry-delay", "2"],
    )
    with process:
        yield process


@pytest.fixture
def api(cluster: ClusterAccess) -> Iterator[client.ApiClient]:
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def target(
    api: client.ApiClient, crds: None, postgres: PostgresServer, namespace: str
) -> Iterator[str]:
    name = f"pg-{namespace}"
    install_postgres_target(
        api,
        name=name,
        postgres=postgres,
        allowed_namespaces=[namespace],
        roles=["orders_rw", "orders_ro"],
    )
    yield name
    client.CustomObjectsApi(api).delete_cluster_custom_object(
        GROUP, VERSION, "credentialtargets", name
    )


def _read_secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _decoded(secret: client.V1Secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def _binding(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", name
    )
    return dict(result)


def _create_binding(api: client.ApiClient, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, body["metadata"]["namespace"], "credentialbindings", body
    )


def _delete_binding(api: client.ApiClient, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", name
    )


def _condition(binding: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (binding.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _roles_of(postgres: PostgresServer) -> set[str]:
    with psycopg.connect(postgres.admin_dsn()) as connection:
        rows = connection.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'credbroker\\_%'"
        )
        return {row[0] for row in rows}


def _start_story(
    api: client.ApiClient,
    *,
    namespace: str,
    target: str,
    service_account: str = "orders",
    pod_service_account: str = "orders",
    **binding_options: Any,
) -> client.V1Secret:
    core = client.CoreV1Api(api)
    create_service_account(core, namespace=namespace, name=pod_service_account)
    _create_binding(
        api,
        binding_body(
            name="orders",
            namespace=namespace,
            target=target,
            secret_name="orders-db",
            service_accounts=[service_account],
            labels=LABELS,
            **binding_options,
        ),
    )
    core.create_namespaced_pod(
        namespace, pod_body(name="orders-0", labels=LABELS, service_account=pod_service_account)
    )
    return wait_for(
        lambda: _read_secret(core, namespace, "orders-db"),
        timeout_seconds=ISSUE_TIMEOUT_SECONDS,
        what=f"Secret {namespace}/orders-db",
    )


def test_verified_pod_gets_working_login(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    secret = _start_story(api, namespace=namespace, target=target)
    data = _decoded(secret)

    assert set(data) == {"username", "password", "host", "port", "database", "uri"}
    assert data["database"] == "shop"
    assert len(data["password"]) >= 32
    owner = secret.metadata.owner_references[0]
    assert owner.kind == "CredentialBinding"
    assert owner.controller is True
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "credbroker"
    annotations = secret.metadata.annotations
    assert annotations["credbroker.dev/expires-at"].endswith("Z")
    assert annotations["credbroker.dev/credential-id"] in data["username"]

    with psycopg.connect(data["uri"]) as connection:
        user = connection.execute("SELECT current_user").fetchone()
        connection.execute("INSERT INTO orders (item) VALUES ('book')")
        member = connection.execute(
            "SELECT pg_has_role(current_user, 'orders_rw', 'member')"
        ).fetchone()
        not_member = connection.execute(
            "SELECT pg_has_role(current_user, 'orders_ro', 'member')"
        ).fetchone()
    assert user == (data["username"],)
    assert member == (True,)
    assert not_member == (False,)

    def ready_binding() -> dict[str, Any] | None:
        binding = _binding(api, namespace, "orders")
        ready = _condition(binding, "Ready") or {}
        return binding if ready.get("status") == "True" else None

    binding = wait_for(ready_binding, timeout_seconds=30, what="binding Ready=True")
    status = binding["status"]
    assert status["credentialId"] == annotations["credbroker.dev/credential-id"]
    assert status["expiresAt"] == annotations["credbroker.dev/expires-at"]
    assert status["verifiedPods"] == 1
    assert status["observedGeneration"] == binding["metadata"]["generation"]


def test_binding_delete_revokes_everything(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    secret = _start_story(api, namespace=namespace, target=target)
    username = _decoded(secret)["username"]
    assert username in _roles_of(postgres)

    _delete_binding(api, namespace, "orders")
    core = client.CoreV1Api(api)

    wait_for(
        lambda: True if _read_secret(core, namespace, "orders-db") is None else None,
        timeout_seconds=30,
        what="the Secret to be deleted",
    )
    wait_for(
        lambda: True if username not in _roles_of(postgres) else None,
        timeout_seconds=30,
        what=f"role {username} to be dropped",
    )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_decoded(secret)["uri"], connect_timeout=5).close()


def test_wrong_service_account_rejected(
    api: client.ApiClient,
    operator: OperatorProcess,
    namespace: str,
    target: str,
) -> None:
    core = client.CoreV1Api(api)
    create_service_account(core, namespace=namespace, name="intruder")
    _create_binding(
        api,
        binding_body(
            name="orders",
            namespace=namespace,
            target=target,
            secret_name="orders-db",
            service_accounts=["orders"],
            labels=LABELS,
        ),
    )
    core.create_namespaced_pod(
        namespace, pod_body(name="intruder-0", labels=LABELS, service_account="intruder")
    )

    def rejected() -> dict[str, Any] | None:
        status = _binding(api, namespace, "orders").get("status") or {}
        return status if status.get("rejectedPods") else None

    status = wait_for(
        rejected, timeout_seconds=ISSUE_TIMEOUT_SECONDS, what="a rejected pod in status"
    )
    assert status["rejected"][0]["pod"] == "intruder-0"
    assert status["rejected"][0]["reason"] == "ServiceAccountNotAllowed"
    assert status.get("credentialId") is None
    assert _read_secret(core, namespace, "orders-db") is None

    def pod_event() -> client.CoreV1Event | None:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=Pod,involvedObject.name=intruder-0"
        ).items
        return next((event for event in events if event.reason == "ServiceAccountNotAllowed"), None)

    event = wait_for(pod_event, timeout_seconds=30, what="a Warning event on the rejected pod")
    assert event.type == "Warning"


def test_renewal_replaces_and_revokes_old(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    secret = _start_story(
        api, namespace=namespace, target=target, ttl="1m", renew_after="5s", grace_period="3s"
    )
    first_id = secret.metadata.annotations["credbroker.dev/credential-id"]
    first_user = _decoded(secret)["username"]
    core = client.CoreV1Api(api)

    def renewed() -> client.V1Secret | None:
        current = _read_secret(core, namespace, "orders-db")
        if current and current.metadata.annotations["credbroker.dev/credential-id"] != first_id:
            return current
        return None

    second = wait_for(renewed, timeout_seconds=60, what="a renewed credential")
    assert second.metadata.annotations.get("credbroker.dev/previous-credential-id") in (
        first_id,
        None,
    )
    with psycopg.connect(_decoded(second)["uri"]) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)

    wait_for(
        lambda: True if first_user not in _roles_of(postgres) else None,
        timeout_seconds=60,
        what=f"the replaced role {first_user} to be dropped after the grace period",
    )


def test_pod_gone_revokes_after_grace(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    secret = _start_story(api, namespace=namespace, target=target, grace_period="3s")
    username = _decoded(secret)["username"]
    core = client.CoreV1Api(api)

    core.delete_namespaced_pod("orders-0", namespace, grace_period_seconds=0)

    wait_for(
        lambda: True if _read_secret(core, namespace, "orders-db") is None else None,
        timeout_seconds=60,
        what="the Secret to be deleted once no verified pod remains",
    )
    assert username not in _roles_of(postgres)


def test_sweep_drops_crash_leftover(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    # A role marked as credbroker's whose Secret was never written: what a
    # crash between CREATE ROLE and the Secret write leaves behind.
    leftover_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20))
    leftover = f"credbroker_{leftover_id}"
    comment = "credbroker:" + json.dumps(
        {
            "id": leftover_id,
            "binding": f"{namespace}/ghost",
            "secret": "ghost-db",
            "expires": "2099-01-01T00:00:00Z",
            "created": "2020-01-01T00:00:00Z",
            "target": target,
        }
    )
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(leftover)))
        connection.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(leftover), sql.Literal(comment)
            )
        )
    assert leftover in _roles_of(postgres)

    wait_for(
        lambda: True if leftover not in _roles_of(postgres) else None,
        timeout_seconds=60,
        what=f"the sweeper to drop the orphaned role {leftover}",
    )


def test_no_secret_in_logs_events_status(
    api: client.ApiClient,
    operator: OperatorProcess,
    postgres: PostgresServer,
    namespace: str,
    target: str,
) -> None:
    secret = _start_story(api, namespace=namespace, target=target)
    password = _decoded(secret)["password"]
    time.sleep(2)

    core = client.CoreV1Api(api)
    events = core.list_namespaced_event(namespace).items
    event_text = "\n".join(f"{event.reason} {event.message}" for event in events)
    binding_text = json.dumps(_binding(api, namespace, "orders"))
    secret_metadata = json.dumps(client.ApiClient().sanitize_for_serialization(secret.metadata))

    assert event_text
    assert password not in event_text
    assert password not in binding_text
    assert password not in secret_metadata
    assert password not in operator.log_text()
    assert postgres.admin_password not in operator.log_text()
