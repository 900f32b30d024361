"""The credbroker demo: a verified pod gets an expiring PostgreSQL login, end to end.

Run it with ``make demo``. It starts the local control plane and a
PostgreSQL server, installs the CRDs, runs the operator, applies
``examples/``, waits for the Secret, logs into PostgreSQL with it, prints
each step, and stops everything it started.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import psycopg
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localcluster import LocalCluster
from operator_harness import (
    OPERATOR_NAMESPACE,
    REPO_ROOT,
    OperatorProcess,
    apply_crds,
    ensure_namespace,
    prepare_postgres,
    wait_for,
)
from pgserver import PostgresServer

EXAMPLES_DIR = REPO_ROOT / "examples"
SECRET_TIMEOUT_SECONDS = 60.0


def step(message: str) -> None:
    """Print one step of the demo."""
    print(f"==> {message}", flush=True)


def _load(name: str) -> list[dict[str, object]]:
    with (EXAMPLES_DIR / name).open(encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document]


def _apply(cluster: LocalCluster, documents: list[dict[str, object]]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))


def run(*, work_dir: Path) -> int:
    """Run the demo; return the process exit code."""
    started = time.monotonic()
    step("starting the local control plane (the first run builds it from Go modules)")
    cluster = LocalCluster.start()
    postgres = PostgresServer(database="shop")
    operator: OperatorProcess | None = None
    try:
        step(f"control plane ready at {cluster.server}; kubeconfig {cluster.kubeconfig}")
        postgres.start()
        step(f"PostgreSQL {postgres.version} ready at {postgres.host}:{postgres.port}")
        prepare_postgres(postgres.admin_dsn())
        step("created group roles orders_rw and orders_ro and table orders in database shop")

        apply_crds(cluster.kubectl)
        step("installed the CRDs from crds/")

        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            ensure_namespace(core, OPERATOR_NAMESPACE)
            admin = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name="orders-postgres-admin", namespace=OPERATOR_NAMESPACE
                ),
                string_data={"username": postgres.admin_user, "password": postgres.admin_password},
            )
            try:
                core.create_namespaced_secret(OPERATOR_NAMESPACE, admin)
            except ApiException as error:
                if error.status != 409:
                    raise
            step(f"stored the admin login in Secret {OPERATOR_NAMESPACE}/orders-postgres-admin")

            log_path = work_dir / "operator.log"
            operator = OperatorProcess(kubeconfig=cluster.kubeconfig, log_path=log_path).start()
            step(f"started the operator; its log is {log_path}")

            _apply(cluster, _load("namespace-shop.yaml") + _load("serviceaccount-orders.yaml"))
            target = _load("target-postgres.yaml")
            for document in target:
                spec = document["spec"]
                assert isinstance(spec, dict)
                spec["postgresql"]["port"] = postgres.port
                spec["postgresql"]["sslMode"] = "disable"
            _apply(cluster, target + _load("binding-orders.yaml") + _load("pod-orders.yaml"))
            step("applied examples/: namespace shop, ServiceAccount orders, target, binding, pod")

            secret = wait_for(
                lambda: _read_secret(core, "shop", "orders-db"),
                timeout_seconds=SECRET_TIMEOUT_SECONDS,
                what="Secret shop/orders-db",
            )
            annotations = secret.metadata.annotations or {}
            data = {key: base64.b64decode(value).decode() for key, value in secret.data.items()}
            step(
                f"Secret shop/orders-db holds login {data['username']} "
                f"(credential {annotations.get('credbroker.dev/credential-id')}, "
                f"expires {annotations.get('credbroker.dev/expires-at')})"
            )

            with psycopg.connect(data["uri"]) as connection:
                user, member = connection.execute(
                    "SELECT current_user, pg_has_role(current_user, 'orders_rw', 'member')"
                ).fetchone() or (None, None)
                connection.execute("INSERT INTO orders (item) VALUES ('demo')")
                count = connection.execute("SELECT count(*) FROM orders").fetchone()
            step(
                f"logged into PostgreSQL as {user}: member of orders_rw={member}, "
                f"inserted a row, orders has {count[0] if count else '?'} row(s)"
            )

            binding = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "credbroker.dev", "v1alpha1", "shop", "credentialbindings", "orders"
            )
            ready = next(
                (
                    c
                    for c in binding.get("status", {}).get("conditions", [])
                    if c["type"] == "Ready"
                ),
                {},
            )
            step(f"binding shop/orders: Ready={ready.get('status')} ({ready.get('message', '')})")
        step(f"done in {time.monotonic() - started:.1f} s")
        return 0
    finally:
        if operator is not None:
            operator.stop()
        postgres.stop()
        cluster.stop()
        step("stopped the operator, PostgreSQL and the control plane")


def _read_secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work-dir", type=Path, default=REPO_ROOT / ".demo", help="folder for the operator's log"
    )
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return run(work_dir=args.work_dir)


if __name__ == "__main__":
    sys.exit(main())
