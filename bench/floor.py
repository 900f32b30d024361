"""The floor: the operator's API calls and SQL statements made by a minimal script.

For every pod: a TokenRequest bound to the pod, PyJWT verification of the
token against the JWKS fetched once at the start, and a TokenReview. For
every binding: one transaction with CREATE ROLE, GRANT and COMMENT ON ROLE
(the statements ``PostgresTarget.issue`` runs, without its check of the
granted role's reach), then one Secret create. Bindings are spread over
``workers`` threads, each keeping one PostgreSQL connection open, so the
floor has no reconcile loop, no status writes, no events and no connection
set-up per credential.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta
from typing import Any

import jwt
import psycopg
from kubernetes import client
from psycopg import sql

from bench.kubeops import run_parallel
from bench.stack import ROLE, SERVICE_ACCOUNT, Stack
from bench.throughput import PodsByBinding
from credbroker.delivery import render_secret
from credbroker.identity.attestation import POD_UID_EXTRA
from credbroker.ids import new_credential_id
from credbroker.settings import DEFAULT_AUDIENCE, DEFAULT_TOKEN_EXPIRATION_SECONDS
from credbroker.targets.base import IssuedCredential
from credbroker.targets.postgres import (
    PASSWORD_ALGORITHM,
    PASSWORD_ENTROPY_BYTES,
    CredentialMarker,
    connection_uri,
    login_name,
)
from credbroker.timestamps import utcnow

JWKS_PATH = "/openid/v1/jwks"
FLOOR_TTL = timedelta(hours=1)


class FloorRun:
    """One run of the floor script over a set of pods, and the cleanup of what it created."""

    def __init__(self, stack: Stack, *, namespace: str, workers: int) -> None:
        self._stack = stack
        self._namespace = namespace
        self._workers = workers
        self._core = client.CoreV1Api(stack.api_client)
        self._authn = client.AuthenticationV1Api(stack.api_client)
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self.logins: list[str] = []
        self.secret_names: list[str] = []

    def run(self, pods: PodsByBinding) -> dict[str, Any]:
        """Run the floor for every binding in ``pods``; return the counts and the seconds taken."""
        started = time.perf_counter()
        self._keys = self._fetch_keys()
        try:
            run_parallel(self._serve_binding, sorted(pods.items()), workers=self._workers)
        finally:
            for connection in self._connections:
                connection.close()
        seconds = time.perf_counter() - started
        attested = sum(len(binding_pods) for binding_pods in pods.values())
        return {
            "seconds": round(seconds, 3),
            "workers": self._workers,
            "token_requests": attested,
            "jwt_verifications": attested,
            "token_reviews": attested,
            "roles_created": len(self.logins),
            "secrets_created": len(self.secret_names),
        }

    def clean_up(self) -> None:
        """Drop the floor's roles and delete its Secrets."""
        with psycopg.connect(self._stack.postgres.admin_dsn(self._stack.database)) as connection:
            for login in self.logins:
                connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))

        def delete(name: str) -> None:
            self._core.delete_namespaced_secret(name, self._namespace)

        run_parallel(delete, self.secret_names, workers=self._workers)

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        host = self._stack.api_client.configuration.host.rstrip("/")
        response = self._stack.api_client.call_api(
            "GET",
            host + JWKS_PATH,
            header_params={"Accept": "application/json, application/jwk-set+json"},
        )
        if response.status != 200:
            raise RuntimeError(f"GET {JWKS_PATH} returned HTTP {response.status}")
        document = json.loads(response.read())
        return {key.key_id: key for key in jwt.PyJWKSet.from_dict(document).keys if key.key_id}

    def _connection(self) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = psycopg.connect(
                self._stack.postgres.admin_dsn(self._stack.database), autocommit=True
            )
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _serve_binding(self, item: tuple[str, list[tuple[str, str]]]) -> None:
        binding, binding_pods = item
        for pod_name, pod_uid in binding_pods:
            self._attest(pod_name, pod_uid)
        self._issue(binding)

    def _attest(self, pod_name: str, pod_uid: str) -> None:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[DEFAULT_AUDIENCE],
                expiration_seconds=DEFAULT_TOKEN_EXPIRATION_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod_name, uid=pod_uid
                ),
            )
        )
        response = self._core.create_namespaced_service_account_token(
            SERVICE_ACCOUNT, self._namespace, request
        )
        token = response.status.token
        header = jwt.get_unverified_header(token)
        key = self._keys[header["kid"]]
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[header["alg"]],
            audience=DEFAULT_AUDIENCE,
            issuer=self._stack.cluster.issuer,
        )
        if claims["kubernetes.io"]["pod"]["uid"] != pod_uid:
            raise RuntimeError(f"the token for pod {pod_name} is bound to another pod")

        review = self._authn.create_token_review(
            client.V1TokenReview(
                spec=client.V1TokenReviewSpec(token=token, audiences=[DEFAULT_AUDIENCE])
            )
        )
        status = review.status
        if not status.authenticated or (status.user.extra or {}).get(POD_UID_EXTRA) != [pod_uid]:
            raise RuntimeError(f"the TokenReview did not confirm the token of pod {pod_name}")

    def _issue(self, binding: str) -> None:
        postgres = self._stack.postgres
        credential_id = new_credential_id()
        login = login_name(credential_id)
        password = secrets.token_urlsafe(PASSWORD_ENTROPY_BYTES)
        now = utcnow().replace(microsecond=0)
        expires_at = now + FLOOR_TTL
        marker = CredentialMarker(
            credential_id=credential_id,
            binding_namespace=self._namespace,
            binding_name=binding,
            secret_name=f"floor-{binding}-db",
            expires_at=expires_at,
            created_at=now,
            target_name=self._stack.target_name,
        )
        connection = self._connection()
        verifier = connection.pgconn.encrypt_password(
            password.encode(), login.encode(), PASSWORD_ALGORITHM
        ).decode()
        with connection.transaction():
            connection.execute(
                sql.SQL(
                    "CREATE ROLE {login} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS PASSWORD {verifier} VALID UNTIL {expires}"
                ).format(
                    login=sql.Identifier(login),
                    verifier=sql.Literal(verifier),
                    expires=sql.Literal(expires_at.isoformat()),
                )
            )
            connection.execute(
                sql.SQL("GRANT {role} TO {login}").format(
                    role=sql.Identifier(ROLE), login=sql.Identifier(login)
                )
            )
            connection.execute(
                sql.SQL("COMMENT ON ROLE {login} IS {comment}").format(
                    login=sql.Identifier(login), comment=sql.Literal(marker.to_comment())
                )
            )
        with self._lock:
            self.logins.append(login)

        credential = IssuedCredential(
            credential_id=credential_id,
            username=login,
            expires_at=expires_at,
            data={
                "username": login,
                "password": password,
                "host": postgres.host,
                "port": str(postgres.port),
                "database": self._stack.database,
                "uri": connection_uri(
                    user=login,
                    password=password,
                    host=postgres.host,
                    port=postgres.port,
                    database=self._stack.database,
                    ssl_mode="disable",
                ),
            },
        )
        body = render_secret(
            binding_namespace=self._namespace,
            binding_name=binding,
            binding_uid="00000000-0000-0000-0000-000000000000",
            secret_name=f"floor-{binding}-db",
            target_name=self._stack.target_name,
            credential=credential,
            issued_at=now,
        )
        # No binding owns this Secret, and the garbage collector would delete a
        # Secret whose owner does not exist, so the reference is removed.
        del body["metadata"]["ownerReferences"]
        self._core.create_namespaced_secret(self._namespace, body)
        with self._lock:
            self.secret_names.append(f"floor-{binding}-db")
