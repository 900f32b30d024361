"""HTTPFetcher over TLS with a client certificate and a bearer token, and its failure messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from identity_issuer import LocalIssuer, SigningKey
from identity_tls import TLSFiles
from kubernetes.client import Configuration

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import (
    MAX_DOCUMENT_BYTES,
    FetchError,
    HTTPFetcher,
    JWKSCache,
    fetcher_from_kube_config,
)

BEARER_TOKEN = "operator-bearer-7d1c0f2e9a4b"


@pytest.fixture
async def tls_issuer(
    tls_files: TLSFiles, rsa_signing_key: SigningKey
) -> AsyncIterator[LocalIssuer]:
    """A JWKS server that requires a client certificate and the bearer token."""
    local_issuer = LocalIssuer(
        keys=[rsa_signing_key],
        ssl_context=tls_files.server_context(require_client_cert=True),
        required_bearer_token=BEARER_TOKEN,
    )
    await local_issuer.start()
    yield local_issuer
    await local_issuer.close()


def full_fetcher(tls_files: TLSFiles, **options: object) -> HTTPFetcher:
    settings: dict[str, object] = {
        "ca_file": str(tls_files.ca_file),
        "cert_file": str(tls_files.client_cert_file),
        "key_file": str(tls_files.client_key_file),
        "bearer_token": BEARER_TOKEN,
        **options,
    }
    return HTTPFetcher(**settings)  # type: ignore[arg-type]


async def test_fetch_over_mutual_tls(tls_issuer: LocalIssuer, tls_files: TLSFiles) -> None:
    document = await full_fetcher(tls_files)(tls_issuer.jwks_uri)

    assert tls_issuer.url.startswith("https://127.0.0.1:")
    assert [key["kid"] for key in document["keys"]] == ["rsa-1"]


async def test_discovery_over_tls(
    tls_issuer: LocalIssuer, tls_files: TLSFiles, rsa_signing_key: SigningKey
) -> None:
    assert tls_issuer.issuer is not None
    cache = JWKSCache(issuer=tls_issuer.issuer, fetcher=full_fetcher(tls_files))

    key = await cache.get_signing_key(rsa_signing_key.kid)

    assert key.key_id == rsa_signing_key.kid
    assert tls_issuer.discovery_requests == 1


async def test_untrusted_server_certificate(tls_issuer: LocalIssuer, tls_files: TLSFiles) -> None:
    fetcher = full_fetcher(tls_files, ca_file=None)

    with pytest.raises(FetchError) as caught:
        await fetcher(tls_issuer.jwks_uri)

    assert tls_issuer.jwks_uri in str(caught.value)
    assert "Certificate" in str(caught.value)


async def test_missing_client_certificate(tls_issuer: LocalIssuer, tls_files: TLSFiles) -> None:
    fetcher = full_fetcher(tls_files, cert_file=None, key_file=None)

    with pytest.raises(FetchError) as caught:
        await fetcher(tls_issuer.jwks_uri)

    assert tls_issuer.jwks_uri in str(caught.value)
    assert tls_issuer.jwks_requests == 0


async def test_wrong_bearer_token(
    tls_issuer: LocalIssuer, tls_files: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_token = "wrong-token-5f0e3b9d"
    fetcher = full_fetcher(tls_files, bearer_token=wrong_token)
    cache = JWKSCache(issuer="unused", fetcher=fetcher, jwks_uri=tls_issuer.jwks_uri)

    with caplog.at_level(logging.DEBUG), pytest.raises(FetchError) as caught:
        await fetcher(tls_issuer.jwks_uri)
    with caplog.at_level(logging.DEBUG), pytest.raises(IdentityRejected) as rejected:
        await cache.refresh()

    assert "HTTP 401" in str(caught.value)
    for text in (str(caught.value), str(rejected.value), caplog.text, repr(fetcher)):
        assert wrong_token not in text
    assert "bearer_token=<set>" in repr(fetcher)


async def test_kube_config_credentials(tls_issuer: LocalIssuer, tls_files: TLSFiles) -> None:
    configuration = Configuration(
        host=tls_issuer.url,
        api_key={"BearerToken": f"Bearer {BEARER_TOKEN}"},
    )
    configuration.ssl_ca_cert = str(tls_files.ca_file)
    configuration.cert_file = str(tls_files.client_cert_file)
    configuration.key_file = str(tls_files.client_key_file)
    fetcher = fetcher_from_kube_config(configuration)

    document = await fetcher(tls_issuer.jwks_uri)

    assert [key["kid"] for key in document["keys"]] == ["rsa-1"]
    assert BEARER_TOKEN not in repr(fetcher)


async def test_kube_config_token_refresh(tls_issuer: LocalIssuer, tls_files: TLSFiles) -> None:
    """The in-cluster loader rotates the token through refresh_api_key_hook."""
    configuration = Configuration(host=tls_issuer.url, api_key={"BearerToken": "Bearer stale"})
    configuration.ssl_ca_cert = str(tls_files.ca_file)
    configuration.cert_file = str(tls_files.client_cert_file)
    configuration.key_file = str(tls_files.client_key_file)

    def refresh(config: Configuration) -> None:
        config.api_key["BearerToken"] = f"Bearer {BEARER_TOKEN}"

    configuration.refresh_api_key_hook = refresh
    fetcher = fetcher_from_kube_config(configuration)

    document = await fetcher(tls_issuer.jwks_uri)

    assert "keys" in document


async def test_token_not_sent_over_http(issuer: LocalIssuer) -> None:
    fetcher = HTTPFetcher(bearer_token=BEARER_TOKEN)

    with pytest.raises(FetchError, match="plain HTTP"):
        await fetcher(issuer.jwks_uri)

    assert issuer.jwks_requests == 0


async def test_http_error_status(issuer: LocalIssuer) -> None:
    issuer.fail_status = 503

    with pytest.raises(FetchError) as caught:
        await HTTPFetcher()(issuer.jwks_uri)

    assert "HTTP 503" in str(caught.value)
    assert issuer.jwks_uri in str(caught.value)


async def test_connection_refused(issuer: LocalIssuer) -> None:
    url = issuer.jwks_uri
    await issuer.close()

    with pytest.raises(FetchError) as caught:
        await HTTPFetcher()(url)

    assert url in str(caught.value)


async def serve(routes: list[web.RouteDef]) -> TestServer:
    app = web.Application()
    app.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_timeout() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    server = await serve([web.get("/jwks", stall)])
    try:
        with pytest.raises(FetchError, match=r"timed out after 0\.2 s"):
            await HTTPFetcher(timeout_seconds=0.2)(str(server.make_url("/jwks")))
    finally:
        release.set()
        await server.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "expected an object"),
        (b" " * (MAX_DOCUMENT_BYTES + 1), "byte limit"),
    ],
    ids=["invalid-json", "json-array", "oversized"],
)
async def test_unusable_body(body: bytes, message: str) -> None:
    async def document(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    server = await serve([web.get("/jwks", document)])
    try:
        with pytest.raises(FetchError, match=message):
            await HTTPFetcher()(str(server.make_url("/jwks")))
    finally:
        await server.close()


async def test_redirect_not_followed() -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    server = await serve([web.get("/jwks", redirect)])
    try:
        with pytest.raises(FetchError, match="HTTP 302"):
            await HTTPFetcher()(str(server.make_url("/jwks")))
    finally:
        await server.close()


def test_missing_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"

    with pytest.raises(ValueError, match=r"missing-ca\.pem"):
        HTTPFetcher(ca_file=str(missing))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bearer_token": "a", "bearer_token_provider": lambda: "b"}, "not both"),
        ({"cert_file": "client.pem"}, "together"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
    ids=["two-token-sources", "cert-without-key", "zero-timeout"],
)
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HTTPFetcher(**options)  # type: ignore[arg-type]
