"""ExchangeServer over real TLS on 127.0.0.1: X.509-SVID client certificates and bearer tokens."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from credbroker.exchange.cluster import BundleSource
from credbroker.exchange.server import ExchangeServer
from credbroker.exchange.settings import ExchangeSettings, RateLimit, SelfIssuedTlsSource
from credbroker.resources import SpiffeBundleRef

from .conftest import BUNDLE_NAME
from .fakes import TRUST_DOMAIN, FakeCluster, binding_spec

SPIFFE_SPEC = {
    "trustDomain": TRUST_DOMAIN,
    "allowedIDs": [{"exact": "spiffe://example.org/ns/shop/sa/web"}],
    "bundleRef": {"kind": "ConfigMap", "name": BUNDLE_NAME},
}


class BundledCluster(FakeCluster):
    async def list_bundle_sources(self) -> list[BundleSource]:
        ref = SpiffeBundleRef(kind="ConfigMap", name=BUNDLE_NAME)
        return [BundleSource(ref=ref, trust_domain=TRUST_DOMAIN)]


@pytest.fixture
async def server(spiffe_bundle, token_verifier) -> AsyncIterator[ExchangeServer]:
    cluster = BundledCluster()
    cluster.bundles[BUNDLE_NAME] = spiffe_bundle
    cluster.put_binding(binding_spec(spiffe=SPIFFE_SPEC))
    settings = ExchangeSettings(
        tls=SelfIssuedTlsSource(hostnames=("127.0.0.1",)),
        host="127.0.0.1",
        port=0,
        rate=RateLimit(burst=10, refill_per_second=1.0),
    )
    exchange_server = ExchangeServer(settings=settings, cluster=cluster, tokens=token_verifier)
    await exchange_server.start()
    try:
        yield exchange_server
    finally:
        await exchange_server.stop()


def client_context(server: ExchangeServer, cert: Path | None = None, key: Path | None = None):
    assert server.ca_certificate_pem is not None
    context = ssl.create_default_context(cadata=server.ca_certificate_pem.decode())
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def write_svid(tmp_path: Path, ca, path: str) -> tuple[Path, Path]:
    leaf, key = ca.issue(path=path)
    cert_file = tmp_path / "svid.pem"
    key_file = tmp_path / "svid.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def post(
    server: ExchangeServer, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    url = f"https://127.0.0.1:{server.port}/v1/exchange"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json={"namespace": "shop", "binding": "orders"}, headers=headers, ssl=context
        ) as response,
    ):
        return response.status, await response.json()


async def test_x509_svid_returns_credential(server, spiffe_ca, tmp_path):
    cert, key = write_svid(tmp_path, spiffe_ca, "/ns/shop/sa/web")

    status, body = await post(server, client_context(server, cert, key))

    assert status == 200
    assert body["spiffe_id"] == "spiffe://example.org/ns/shop/sa/web"
    assert len(body["credential"]["password"]) > 20


async def test_x509_svid_other_id_403(server, spiffe_ca, tmp_path):
    cert, key = write_svid(tmp_path, spiffe_ca, "/ns/shop/sa/batch")

    status, body = await post(server, client_context(server, cert, key))

    assert status == 403
    assert body["error"] == "SPIFFEIDNotAllowed"


async def test_no_client_cert_401(server):
    status, body = await post(server, client_context(server))

    assert status == 401
    assert body["error"] == "ProofMissing"


async def test_cert_and_bearer_401(server, spiffe_ca, tmp_path, sa_token):
    cert, key = write_svid(tmp_path, spiffe_ca, "/ns/shop/sa/web")
    headers = {"Authorization": f"Bearer {sa_token()}"}

    status, body = await post(server, client_context(server, cert, key), headers)

    assert status == 401
    assert body["error"] == "ProofAmbiguous"


async def test_untrusted_ca_fails_handshake(server, tmp_path):
    from spiffe_ca import SpiffeCA

    rogue = SpiffeCA.create(TRUST_DOMAIN)
    cert, key = write_svid(tmp_path, rogue, "/ns/shop/sa/web")

    with pytest.raises(aiohttp.ClientError):
        await post(server, client_context(server, cert, key))
