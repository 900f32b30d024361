"""Sweep: one ``sweep_target`` pass over many live credentials and a few expired ones.

Roles are created directly in PostgreSQL with the marker that
``PostgresTarget`` writes, and a managed Secret that references each live
role is created directly in the cluster. The live roles carry no password,
because the sweep never logs in with them, and the Secrets contain
placeholder values. The sweep runs in this process with the real
``PostgresTarget`` and ``SecretStore``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import timedelta
from typing import Any

import psycopg
from kubernetes import client
from psycopg import sql

from bench.kubeops import run_parallel
from bench.stack import ROLE, Stack
from credbroker.delivery import (
    BINDING_LABEL,
    CREDENTIAL_ID_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    TARGET_ANNOTATION,
    SecretStore,
)
from credbroker.ids import new_credential_id
from credbroker.lifecycle.sweeper import sweep_target
from credbroker.targets.postgres import CredentialMarker, PostgresTarget, login_name
from credbroker.timestamps import format_timestamp, utcnow

ROLES_PER_TRANSACTION = 500
ORPHAN_MIN_AGE = timedelta(minutes=2)
LIVE_FOR = timedelta(hours=1)
EXPIRED_FOR = timedelta(hours=1)
# Placeholder data of the size of a real credential's Secret; no value is a secret.
PLACEHOLDER_DATA = {
    "username": "credbroker_" + "0" * 20,
    "password": "placeholder-" + "0" * 31,
    "host": "127.0.0.1",
    "port": "5432",
    "database": "bench",
    "uri": "postgresql://placeholder@127.0.0.1:5432/bench?sslmode=disable",
}


class SweepBench:
    """Credentials planted for the sweep benchmark, and the sweeps timed over them."""

    def __init__(self, stack: Stack, *, namespace: str, workers: int) -> None:
        self._stack = stack
        self._namespace = namespace
        self._workers = workers
        self._target_name = f"{stack.target_name}-sweep"
        self._secret_count = 0
        self.live = 0
        self.expired = 0

    def plant(self, *, live: int, expired: int) -> float:
        """Add ``live`` referenced and ``expired`` expired credentials; return the seconds taken."""
        started = time.perf_counter()
        now = utcnow().replace(microsecond=0)
        live_markers = [
            self._marker(now - timedelta(minutes=10), now + LIVE_FOR) for _ in range(live)
        ]
        expired_markers = [
            self._marker(now - EXPIRED_FOR * 2, now - EXPIRED_FOR) for _ in range(expired)
        ]
        self._create_roles(live_markers + expired_markers)
        first_index = self._secret_count
        self._secret_count += live
        run_parallel(
            self._create_secret,
            [(first_index + offset, marker) for offset, marker in enumerate(live_markers)],
            workers=self._workers,
        )
        self.live += live
        self.expired += expired
        return time.perf_counter() - started

    def sweep(self) -> dict[str, Any]:
        """Run ``sweep_target`` once, as the operator does cluster-wide, and report its cost."""
        postgres = self._stack.postgres
        target = PostgresTarget(
            target_name=self._target_name,
            host=postgres.host,
            port=postgres.port,
            database=self._stack.database,
            ssl_mode="disable",
            admin_user=postgres.admin_user,
            admin_password=postgres.admin_password,
            allowed_roles=[ROLE],
            connect_timeout_seconds=10.0,
        )
        secrets = SecretStore(client.CoreV1Api(self._stack.api_client))
        started = time.perf_counter()
        report = asyncio.run(
            sweep_target(
                target_name=self._target_name,
                target=target,
                secrets=secrets,
                namespaces=None,
                now=utcnow(),
                orphan_min_age=ORPHAN_MIN_AGE,
            )
        )
        seconds = time.perf_counter() - started
        if report.revoked_expired != self.expired or report.revoked_orphaned != 0:
            raise RuntimeError(
                f"the sweep revoked {report.revoked_expired} expired and "
                f"{report.revoked_orphaned} orphaned credentials, expected {self.expired} and 0"
            )
        result = {
            "live": self.live,
            "expired": self.expired,
            "seconds": round(seconds, 3),
            "api_calls": report.api_calls,
            "target_calls": report.target_calls,
            "credentials_seen": report.credentials_seen,
            "secrets_seen": report.secrets_seen,
            "revoked_expired": report.revoked_expired,
        }
        # The expired credentials are gone now; the next run plants new ones.
        self.expired = 0
        return result

    def _marker(self, created_at: Any, expires_at: Any) -> CredentialMarker:
        return CredentialMarker(
            credential_id=new_credential_id(),
            binding_namespace=self._namespace,
            binding_name="sweep",
            secret_name="sweep",
            expires_at=expires_at,
            created_at=created_at,
            target_name=self._target_name,
        )

    def _create_roles(self, markers: list[CredentialMarker]) -> None:
        dsn = self._stack.postgres.admin_dsn(self._stack.database)
        with psycopg.connect(dsn, autocommit=True) as connection:
            for first in range(0, len(markers), ROLES_PER_TRANSACTION):
                with connection.transaction():
                    for marker in markers[first : first + ROLES_PER_TRANSACTION]:
                        login = sql.Identifier(login_name(marker.credential_id))
                        connection.execute(
                            sql.SQL("CREATE ROLE {} LOGIN VALID UNTIL {}").format(
                                login, sql.Literal(marker.expires_at.isoformat())
                            )
                        )
                        connection.execute(
                            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                                login, sql.Literal(marker.to_comment())
                            )
                        )

    def _create_secret(self, item: tuple[int, CredentialMarker]) -> None:
        index, marker = item
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": f"sweep-{index:05d}",
                "namespace": self._namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, BINDING_LABEL: "sweep"},
                "annotations": {
                    CREDENTIAL_ID_ANNOTATION: marker.credential_id,
                    EXPIRES_AT_ANNOTATION: format_timestamp(marker.expires_at),
                    ISSUED_AT_ANNOTATION: format_timestamp(marker.created_at),
                    TARGET_ANNOTATION: self._target_name,
                },
            },
            "data": {
                key: base64.b64encode(value.encode()).decode()
                for key, value in PLACEHOLDER_DATA.items()
            },
        }
        client.CoreV1Api(self._stack.api_client).create_namespaced_secret(self._namespace, body)
