"""Run credbroker against a cluster and PostgreSQL, for the e2e suite, demo and benchmarks.

``prepare_postgres`` creates the demo roles and table, and ``install_target``
writes the admin Secret and the CredentialTarget. ``OperatorProcess`` runs
``python -m credbroker run`` as a child process with its log in a file, so
that tests can search the log for leaked secrets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import sql

from pgserver import PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent
CRDS_DIR = REPO_ROOT / "crds"
OPERATOR_NAMESPACE = "credbroker"
ADMIN_SECRET_NAME = "orders-postgres-admin"

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.1,
) -> T:
    """Call ``probe`` until it returns something other than ``None``; time out naming ``what``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(interval_seconds)


def prepare_postgres(admin_dsn: str, *, roles: Iterable[str] = ("orders_rw", "orders_ro")) -> None:
    """Create the group roles a target offers, and an ``orders`` table granted to them."""
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        for role in roles:
            exists = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        connection.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text)")
        connection.execute("GRANT SELECT, INSERT ON orders TO orders_rw")
        connection.execute("GRANT USAGE ON SEQUENCE orders_id_seq TO orders_rw")
        connection.execute("GRANT SELECT ON orders TO orders_ro")


def apply_crds(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Apply the CRDs and wait until the API server serves them."""
    kubectl("apply", "-f", str(CRDS_DIR))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/credentialtargets.credbroker.dev",
        "crd/credentialbindings.credbroker.dev",
    )


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    """Create a namespace unless it exists."""
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


def install_target(
    api_client: client.ApiClient,
    *,
    name: str,
    host: str,
    port: int,
    database: str,
    admin_user: str,
    admin_password: str,
    allowed_namespaces: list[str],
    roles: list[str],
    max_ttl: str = "1h",
) -> None:
    """Write the admin Secret in the operator's namespace and create or replace the target."""
    core = client.CoreV1Api(api_client)
    ensure_namespace(core, OPERATOR_NAMESPACE)
    secret_name = f"{name}-admin"
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret_name, namespace=OPERATOR_NAMESPACE),
        string_data={"username": admin_user, "password": admin_password},
    )
    try:
        core.create_namespaced_secret(OPERATOR_NAMESPACE, secret)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(secret_name, OPERATOR_NAMESPACE, secret)

    body = {
        "apiVersion": "credbroker.dev/v1alpha1",
        "kind": "CredentialTarget",
        "metadata": {"name": name},
        "spec": {
            "type": "postgresql",
            "postgresql": {
                "host": host,
                "port": port,
                "database": database,
                "sslMode": "disable",
                "adminSecretRef": {"name": secret_name},
            },
            "allowedNamespaces": allowed_namespaces,
            "allowedRoles": roles,
            "maxTTL": max_ttl,
        },
    }
    custom = client.CustomObjectsApi(api_client)
    try:
        custom.create_cluster_custom_object("credbroker.dev", "v1alpha1", "credentialtargets", body)
    except ApiException as error:
        if error.status != 409:
            raise
        current = custom.get_cluster_custom_object(
            "credbroker.dev", "v1alpha1", "credentialtargets", name
        )
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        custom.replace_cluster_custom_object(
            "credbroker.dev", "v1alpha1", "credentialtargets", name, body
        )


def install_postgres_target(
    api_client: client.ApiClient,
    *,
    name: str,
    postgres: PostgresServer,
    allowed_namespaces: list[str],
    roles: list[str],
    database: str = "shop",
) -> str:
    """Install a target whose admin is the test server's superuser; return the target's name."""
    install_target(
        api_client,
        name=name,
        host=postgres.host,
        port=postgres.port,
        database=database,
        admin_user=postgres.admin_user,
        admin_password=postgres.admin_password,
        allowed_namespaces=allowed_namespaces,
        roles=roles,
    )
    return name


def binding_body(
    *,
    name: str,
    namespace: str,
    target: str,
    secret_name: str,
    service_accounts: list[str],
    labels: Mapping[str, str],
    role: str = "orders_rw",
    ttl: str = "15m",
    renew_after: str | None = None,
    grace_period: str | None = None,
) -> dict[str, Any]:
    """Return a CredentialBinding object."""
    spec: dict[str, Any] = {
        "targetRef": {"name": target},
        "role": role,
        "podSelector": {"matchLabels": dict(labels)},
        "serviceAccounts": service_accounts,
        "ttl": ttl,
        "secretName": secret_name,
    }
    if renew_after:
        spec["renewAfter"] = renew_after
    if grace_period:
        spec["gracePeriod"] = grace_period
    return {
        "apiVersion": "credbroker.dev/v1alpha1",
        "kind": "CredentialBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod_body(*, name: str, labels: Mapping[str, str], service_account: str) -> dict[str, Any]:
    """Return a Pod object; with no scheduler or kubelet it stays Pending, which is enough."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }


def create_service_account(core: client.CoreV1Api, *, namespace: str, name: str) -> None:
    """Create a ServiceAccount unless it exists."""
    try:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as error:
        if error.status != 409:
            raise


class OperatorProcess:
    """``credbroker run`` as a child process, logging to ``log_path``."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        log_path: Path,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        """Start the operator; its output is appended to the log file."""
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        command = [
            sys.executable,
            "-m",
            "credbroker",
            "run",
            "--operator-namespace",
            OPERATOR_NAMESPACE,
            "--liveness",
            "",
            "--log-format",
            "json",
            # Several operators may run at once in tests, so none takes the
            # default metrics port unless a test requests one.
            *([] if "--metrics-port" in self.extra_args else ["--metrics-port", "0"]),
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        return self

    def log_text(self) -> str:
        """Return everything the operator logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """Kill the operator with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the operator with SIGTERM, then SIGKILL after 15 seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def dump_yaml(obj: Any) -> str:
    """Render an object as YAML for ``kubectl apply -f -``."""
    return yaml.safe_dump(obj, sort_keys=False)
