"""What every benchmark runs against: the cluster, PostgreSQL, the target and the operator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from bench.kubeops import pooled_api_client
from localcluster import ClusterAccess
from operator_harness import OperatorProcess, binding_body, install_target, wait_for
from pgserver import PostgresServer

SERVICE_ACCOUNT = "app"
ROLE = "orders_rw"
BINDING_TTL = "1h"
STARTED_LOG_TEXT = "credbroker started"
ATTESTED_LOG_TEXT = "Attested pod"
OPERATOR_START_TIMEOUT_SECONDS = 60.0
# A sweep inside the operator would race the sweep benchmark, so the
# operator's own sweep interval is set far beyond any benchmark's length.
OPERATOR_ARGS = ("--sweep-interval", "86400", "--retry-delay", "2")


@dataclass
class Stack:
    """One benchmark run's cluster, PostgreSQL server, CredentialTarget and operator process.

    Namespaces are named ``bench-<run id>-<purpose>`` so that a run on a
    shared cluster touches nothing else. ``operator_starts`` counts started
    processes, each logging to its own file in ``work_dir``.
    """

    cluster: ClusterAccess
    postgres: PostgresServer
    database: str
    work_dir: Path
    pool_size: int
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    operator: OperatorProcess | None = None
    operator_starts: int = 0
    created_namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api_client = pooled_api_client(self.cluster.kubeconfig, pool_size=self.pool_size)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    @property
    def target_name(self) -> str:
        """The CredentialTarget that every benchmark binding uses."""
        return f"bench-{self.run_id}"

    def namespace(self, purpose: str) -> str:
        """Return the namespace name of one benchmark."""
        return f"bench-{self.run_id}-{purpose}"

    def install_target(self, purposes: list[str]) -> None:
        """Create the admin Secret and the CredentialTarget, allowing the benchmark namespaces."""
        install_target(
            self.api_client,
            name=self.target_name,
            host=self.postgres.host,
            port=self.postgres.port,
            database=self.database,
            admin_user=self.postgres.admin_user,
            admin_password=self.postgres.admin_password,
            allowed_namespaces=[self.namespace(purpose) for purpose in purposes],
            roles=[ROLE],
        )

    def create_binding(self, *, namespace: str, name: str, label_key: str) -> None:
        """Create binding ``name`` for pods labelled ``label_key=name``, into Secret ``name-db``."""
        self.custom.create_namespaced_custom_object(
            "credbroker.dev",
            "v1alpha1",
            namespace,
            "credentialbindings",
            binding_body(
                name=name,
                namespace=namespace,
                target=self.target_name,
                secret_name=f"{name}-db",
                service_accounts=[SERVICE_ACCOUNT],
                labels={label_key: name},
                role=ROLE,
                ttl=BINDING_TTL,
            ),
        )

    def start_operator(self) -> OperatorProcess:
        """Start a new operator process and wait until its startup handler has finished."""
        if self.operator is not None:
            raise RuntimeError("an operator process is already running; stop it first")
        self.operator_starts += 1
        log_path = self.work_dir / f"operator-{self.operator_starts}.log"
        process = OperatorProcess(
            kubeconfig=self.cluster.kubeconfig, log_path=log_path, extra_args=OPERATOR_ARGS
        )
        process.start()
        self.operator = process

        def started() -> bool | None:
            if process.process is not None and process.process.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with code {process.process.returncode}; see {log_path}"
                )
            return True if STARTED_LOG_TEXT in process.log_text() else None

        wait_for(started, timeout_seconds=OPERATOR_START_TIMEOUT_SECONDS, what="operator startup")
        return process

    def stop_operator(self) -> None:
        """Stop the running operator process, if any."""
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def operator_pid(self) -> int:
        """Return the process id of the running operator."""
        if self.operator is None or self.operator.process is None:
            raise RuntimeError("no operator process is running")
        return self.operator.process.pid

    def attestations_logged(self) -> int:
        """Return how many pods the running operator has attested, counted in its log."""
        if self.operator is None:
            return 0
        return self.operator.log_text().count(ATTESTED_LOG_TEXT)

    def close(self) -> None:
        """Stop the operator and close the API client."""
        self.stop_operator()
        self.api_client.close()


def operator_rss(pid: int) -> dict[str, int]:
    """Return ``rss_bytes`` (VmRSS) and ``peak_rss_bytes`` (VmHWM) of a process."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            values["rss_bytes"] = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            values["peak_rss_bytes"] = int(line.split()[1]) * 1024
    return values
