"""Fixtures for the exchange tests: signing keys, a SPIFFE CA, a fake cluster and a test client."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from credbroker.exchange.app import create_app
from credbroker.exchange.ratelimit import TokenBucketLimiter
from credbroker.exchange.service import ExchangeService
from credbroker.exchange.settings import RateLimit
from credbroker.exchange.verify import ProofVerifier
from credbroker.identity.jwks import JWKSCache
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.spiffe import bundle as bundles
from credbroker.spiffe.bundle import Bundle

from .fakes import (
    NAMESPACE,
    POD_NAME,
    POD_UID,
    SERVICE_ACCOUNT,
    TRUST_DOMAIN,
    FakeCluster,
    binding_spec,
    pod_body,
)

# The identity and SPIFFE tests keep their key and CA helpers next to their own conftest.
for helper_dir in ("identity", "spiffe"):
    path = str(Path(__file__).resolve().parents[1] / helper_dir)
    if path not in sys.path:
        sys.path.insert(0, path)

from identity_issuer import SigningKey, rsa_key  # noqa: E402
from spiffe_ca import JwtSigner, SpiffeCA, bundle_document  # noqa: E402

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "credbroker.dev"
JWKS_URI = ISSUER + "/openid/v1/jwks"
BUNDLE_NAME = "example-org-bundle"
TOKEN_LIFETIME_SECONDS = 600


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return rsa_key("sa-key-1")


@pytest.fixture(scope="session")
def spiffe_ca() -> SpiffeCA:
    return SpiffeCA.create(TRUST_DOMAIN)


@pytest.fixture(scope="session")
def jwt_signer() -> JwtSigner:
    return JwtSigner.create("jwt-1")


@pytest.fixture(scope="session")
def spiffe_bundle(spiffe_ca: SpiffeCA, jwt_signer: JwtSigner) -> Bundle:
    document = bundle_document(authorities=[spiffe_ca.certificate], signers=[jwt_signer])
    return bundles.from_json(document, trust_domain=TRUST_DOMAIN)


def sa_claims(
    *,
    pod_name: str = POD_NAME,
    pod_uid: str = POD_UID,
    service_account: str = SERVICE_ACCOUNT,
    audience: str = AUDIENCE,
) -> dict[str, Any]:
    """Claims of a projected token the API server would issue for a pod in the namespace."""
    now = int(datetime.now(UTC).timestamp())
    return {
        "aud": [audience],
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": NAMESPACE,
            "node": {"name": "node-1", "uid": str(uuid.uuid4())},
            "pod": {"name": pod_name, "uid": pod_uid},
            "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
        },
        "sub": f"system:serviceaccount:{NAMESPACE}:{service_account}",
    }


def sign(claims: Mapping[str, Any], key: SigningKey) -> str:
    return jwt.encode(dict(claims), key.private_key, algorithm=key.alg, headers={"kid": key.kid})


@pytest.fixture
def sa_token(signing_key: SigningKey) -> Callable[..., str]:
    def mint(**changes: Any) -> str:
        return sign(sa_claims(**changes), signing_key)

    return mint


@pytest.fixture
def token_verifier(signing_key: SigningKey) -> ServiceAccountTokenVerifier:
    async def fetch(url: str) -> Mapping[str, Any]:
        assert url == JWKS_URI
        return {"keys": [signing_key.public_jwk()]}

    jwks = JWKSCache(issuer=ISSUER, fetcher=fetch, jwks_uri=JWKS_URI)
    return ServiceAccountTokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)


@pytest.fixture
def cluster(spiffe_bundle: Bundle) -> FakeCluster:
    fake = FakeCluster()
    fake.put_binding(binding_spec())
    fake.put_pod(pod_body())
    fake.bundles[BUNDLE_NAME] = spiffe_bundle
    return fake


@dataclass
class Exchange:
    """A test client of the exchange app, with what the app called back."""

    client: TestClient[Any, Any]
    cluster: FakeCluster
    woken: list[str] = field(default_factory=list)

    async def post(
        self,
        *,
        token: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = body if body is not None else {"namespace": NAMESPACE, "binding": "orders"}
        response = await self.client.post("/v1/exchange", json=payload, headers=all_headers)
        return response.status, await response.json(), response.headers


@pytest.fixture
def rate() -> RateLimit:
    return RateLimit(burst=5, refill_per_second=0.5)


@pytest.fixture
async def exchange(
    cluster: FakeCluster, token_verifier: ServiceAccountTokenVerifier, rate: RateLimit
) -> AsyncIterator[Exchange]:
    woken: list[str] = []
    verifier = ProofVerifier(cluster=cluster, tokens=token_verifier)
    service = ExchangeService(
        cluster=cluster,
        verifier=verifier,
        limiter=TokenBucketLimiter(rate, monotonic=lambda: 1000.0),
        wake_binding=woken.append,
    )
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(service, max_body_bytes=4096), host="127.0.0.1")
    )
    await client.start_server()
    try:
        yield Exchange(client=client, cluster=cluster, woken=woken)
    finally:
        await client.close()
