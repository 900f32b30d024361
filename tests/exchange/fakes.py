"""Fakes for the exchange tests: a cluster in memory, a target that mints random passwords."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from credbroker.errors import IdentityRejected, PolicyRejected
from credbroker.exchange.cluster import BundleSource, ResolvedTarget
from credbroker.exchange.tls import CertificatePair
from credbroker.identity.pods import PodRef
from credbroker.reasons import Reason
from credbroker.resources import parse_target
from credbroker.spiffe.bundle import Bundle
from credbroker.targets.base import CredentialRequest, FoundCredential, IssuedCredential

NAMESPACE = "shop"
BINDING = "orders"
TARGET_NAME = "orders-postgres"
ROLE = "orders_rw"
SECRET_NAME = "orders-db"
TRUST_DOMAIN = "example.org"
POD_NAME = "orders-1"
POD_UID = "0b5e7c1a-6f1d-4a7e-9c39-3f2d1f4b8a10"
SERVICE_ACCOUNT = "orders"

TARGET_SPEC: dict[str, Any] = {
    "type": "postgresql",
    "postgresql": {
        "host": "127.0.0.1",
        "database": "shop",
        "adminSecretRef": {"name": "admin"},
    },
    "allowedNamespaces": [NAMESPACE],
    "allowedRoles": [ROLE],
    "maxTTL": "1h",
}


def binding_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"name": TARGET_NAME},
        "role": ROLE,
        "podSelector": {"matchLabels": {"app": "orders"}},
        "serviceAccounts": [SERVICE_ACCOUNT],
        "ttl": "10m",
        "secretName": SECRET_NAME,
        "delivery": {"exchange": {"returnCredential": True, "refreshSecret": True}},
    }
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def pod_body(
    name: str = POD_NAME,
    *,
    uid: str = POD_UID,
    service_account: str = SERVICE_ACCOUNT,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": NAMESPACE,
            "name": name,
            "uid": uid,
            "labels": dict(labels if labels is not None else {"app": "orders"}),
        },
        "spec": {"serviceAccountName": service_account, "nodeName": "node-1"},
        "status": {"phase": "Running"},
    }


@dataclass
class FakeTarget:
    """A target that mints logins with random passwords and lists them back."""

    kind: str = "fake"
    requests: list[CredentialRequest] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)

    async def issue(self, request: CredentialRequest) -> IssuedCredential:
        password = secrets.token_urlsafe(24)
        self.passwords.append(password)
        self.requests.append(request)
        username = f"credbroker_{request.credential_id}"
        return IssuedCredential(
            credential_id=request.credential_id,
            username=username,
            expires_at=request.expires_at,
            data={"username": username, "password": password, "host": "127.0.0.1"},
        )

    async def revoke(self, credential_id: str) -> bool:
        return False

    async def list_credentials(self) -> Sequence[FoundCredential]:
        return []

    async def close(self) -> None:
        return None


@dataclass
class FakeCluster:
    """An ``ExchangeCluster`` in memory. ``review_failure`` makes TokenReview reject."""

    bindings: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    bundles: dict[str, Bundle] = field(default_factory=dict)
    target: FakeTarget = field(default_factory=FakeTarget)
    review_failure: IdentityRejected | None = None
    reviewed: list[PodRef] = field(default_factory=list)
    tls_pairs: dict[str, tuple[str, CertificatePair]] = field(default_factory=dict)

    def put_binding(self, spec: dict[str, Any], *, name: str = BINDING) -> None:
        self.bindings[(NAMESPACE, name)] = {
            "metadata": {"namespace": NAMESPACE, "name": name, "uid": "binding-uid"},
            "spec": spec,
        }

    def put_pod(self, body: dict[str, Any]) -> None:
        metadata = body["metadata"]
        self.pods[(metadata["namespace"], metadata["name"])] = body

    async def get_binding(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.bindings.get((namespace, name))

    async def get_pod(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.pods.get((namespace, name))

    async def review_token(self, token: str, *, pod: PodRef, audience: str) -> None:
        self.reviewed.append(pod)
        if self.review_failure is not None:
            raise self.review_failure

    async def load_bundle(self, source: BundleSource) -> Bundle:
        bundle = self.bundles.get(source.ref.name)
        if bundle is None:
            raise IdentityRejected(Reason.BUNDLE_INVALID, f"bundle {source.ref.name} not found")
        return bundle

    async def list_bundle_sources(self) -> list[BundleSource]:
        return []

    async def resolve_target(self, name: str) -> ResolvedTarget:
        if name != TARGET_NAME:
            raise PolicyRejected(Reason.TARGET_NOT_FOUND, f"CredentialTarget {name} not found")
        return ResolvedTarget(name=name, spec=parse_target(TARGET_SPEC), target=self.target)

    async def read_tls_pair(
        self, *, namespace: str, name: str, cert_key: str, key_key: str
    ) -> tuple[str, CertificatePair]:
        return self.tls_pairs[name]
