"""Fixtures for the identity tests: signing keys, a local issuer, a pod and a verifier."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from identity_issuer import AUDIENCE, LocalIssuer, SigningKey, ec_key, rsa_key
from identity_tls import TLSFiles, make_tls_files

from credbroker.identity.jwks import HTTPFetcher, JWKSCache
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier


@pytest.fixture(scope="session")
def rsa_signing_key() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="session")
def ec_signing_key() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture(scope="session")
def rogue_signing_key() -> SigningKey:
    """A key the issuer never publishes."""
    return rsa_key("rogue-1")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def issuer(
    rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> AsyncIterator[LocalIssuer]:
    local_issuer = LocalIssuer(keys=[rsa_signing_key, ec_signing_key])
    await local_issuer.start()
    yield local_issuer
    await local_issuer.close()


@pytest.fixture
def pod() -> PodRef:
    return PodRef(
        namespace="shop",
        name="api-7f9c",
        uid="0b5e7c1a-6f1d-4a7e-9c39-3f2d1f4b8a10",
        service_account="api",
        node_name="node-1",
    )


@pytest.fixture
def jwks_cache(issuer: LocalIssuer) -> JWKSCache:
    assert issuer.issuer is not None
    return JWKSCache(issuer=issuer.issuer, fetcher=HTTPFetcher())


@pytest.fixture
def verifier(issuer: LocalIssuer, jwks_cache: JWKSCache) -> ServiceAccountTokenVerifier:
    assert issuer.issuer is not None
    return ServiceAccountTokenVerifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=jwks_cache)
