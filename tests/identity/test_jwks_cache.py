"""JWKSCache: discovery, refetch on unknown kid, cooldown, stale keys, one fetch for many misses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from identity_issuer import LocalIssuer, SigningKey, ec_key

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import (
    JWKS_REFETCH_COOLDOWN_SECONDS,
    FetchError,
    HTTPFetcher,
    JWKSCache,
)
from credbroker.reasons import Reason

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_SERVER = "https://127.0.0.1:6443"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeFetcher:
    """Fake fetcher that returns documents by URL and records every request.

    A document that is an exception is raised instead.
    """

    def __init__(self, documents: dict[str, Mapping[str, Any] | Exception]) -> None:
        self.documents = documents
        self.requests: list[str] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, url: str) -> Mapping[str, Any]:
        self.requests.append(url)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        document = self.documents.get(url)
        if document is None:
            raise FetchError(f"GET {url} returned HTTP 404 Not Found")
        if isinstance(document, Exception):
            raise document
        return document

    def count(self, url: str) -> int:
        return self.requests.count(url)


def jwks_document(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher(rsa_signing_key: SigningKey) -> FakeFetcher:
    return FakeFetcher({API_SERVER + "/openid/v1/jwks": jwks_document(rsa_signing_key)})


@pytest.fixture
def cache(fetcher: FakeFetcher, clock: FakeClock) -> JWKSCache:
    return JWKSCache.for_api_server(issuer=ISSUER, api_server_url=API_SERVER, fetcher=fetcher)


def make_cache(fetcher: FakeFetcher, clock: FakeClock, **options: Any) -> JWKSCache:
    return JWKSCache(
        issuer=ISSUER,
        fetcher=fetcher,
        jwks_uri=API_SERVER + "/openid/v1/jwks",
        clock=clock,
        **options,
    )


JWKS_URL = API_SERVER + "/openid/v1/jwks"


async def test_discovery_on_issuer_url(issuer: LocalIssuer, rsa_signing_key: SigningKey) -> None:
    assert issuer.issuer is not None
    cache = JWKSCache(issuer=issuer.issuer, fetcher=HTTPFetcher())

    key = await cache.get_signing_key(rsa_signing_key.kid)

    assert key.key_id == rsa_signing_key.kid
    assert cache.discovery_url == issuer.url + "/.well-known/openid-configuration"
    assert cache.jwks_uri == issuer.jwks_uri
    assert issuer.discovery_requests == 1
    assert issuer.jwks_requests == 1
    assert cache.fetch_count == 1


async def test_discovery_base_url(rsa_signing_key: SigningKey) -> None:
    """The issuer name does not resolve, so discovery goes to the API server URL."""
    local = LocalIssuer(keys=[rsa_signing_key], issuer=ISSUER)
    await local.start()
    try:
        cache = JWKSCache(issuer=ISSUER, fetcher=HTTPFetcher(), discovery_base_url=local.url + "/")
        key = await cache.get_signing_key(rsa_signing_key.kid)
    finally:
        await local.close()

    assert key.key_id == rsa_signing_key.kid
    assert cache.discovery_url == local.url + "/.well-known/openid-configuration"
    assert local.discovery_requests == 1


async def test_jwks_uri_skips_discovery(
    cache: JWKSCache, fetcher: FakeFetcher, rsa_signing_key: SigningKey
) -> None:
    await cache.get_signing_key(rsa_signing_key.kid)

    assert fetcher.requests == [JWKS_URL]
    assert cache.discovery_url is None


async def test_discovery_issuer_mismatch(rsa_signing_key: SigningKey) -> None:
    discovery = API_SERVER + "/.well-known/openid-configuration"
    fetcher = FakeFetcher(
        {
            discovery: {"issuer": "https://other.invalid", "jwks_uri": JWKS_URL},
            JWKS_URL: jwks_document(rsa_signing_key),
        }
    )
    cache = JWKSCache(issuer=ISSUER, fetcher=fetcher, discovery_base_url=API_SERVER)

    with pytest.raises(IdentityRejected) as caught:
        await cache.get_signing_key(rsa_signing_key.kid)

    assert caught.value.reason == Reason.JWKS_UNAVAILABLE
    assert "https://other.invalid" in caught.value.message
    assert fetcher.count(JWKS_URL) == 0


async def test_discovery_without_jwks_uri(rsa_signing_key: SigningKey) -> None:
    discovery = API_SERVER + "/.well-known/openid-configuration"
    fetcher = FakeFetcher({discovery: {"issuer": ISSUER}})
    cache = JWKSCache(issuer=ISSUER, fetcher=fetcher, discovery_base_url=API_SERVER)

    with pytest.raises(IdentityRejected) as caught:
        await cache.get_signing_key(rsa_signing_key.kid)

    assert caught.value.reason == Reason.JWKS_UNAVAILABLE
    assert "jwks_uri" in caught.value.message


async def test_unknown_kid_cooldown(
    fetcher: FakeFetcher, clock: FakeClock, rsa_signing_key: SigningKey
) -> None:
    cache = make_cache(fetcher, clock)
    await cache.get_signing_key(rsa_signing_key.kid)

    clock.advance(1)
    with pytest.raises(IdentityRejected) as first:
        await cache.get_signing_key("rotated")
    assert first.value.reason == Reason.UNKNOWN_KEY_ID
    assert "after a refetch" in first.value.message
    assert fetcher.count(JWKS_URL) == 2

    clock.advance(JWKS_REFETCH_COOLDOWN_SECONDS - 2)
    with pytest.raises(IdentityRejected) as second:
        await cache.get_signing_key("rotated")
    assert second.value.reason == Reason.UNKNOWN_KEY_ID
    assert "cooldown" in second.value.message
    assert fetcher.count(JWKS_URL) == 2

    clock.advance(2)
    with pytest.raises(IdentityRejected):
        await cache.get_signing_key("rotated")
    assert fetcher.count(JWKS_URL) == 3


async def test_cooldown_is_configurable(
    fetcher: FakeFetcher, clock: FakeClock, rsa_signing_key: SigningKey
) -> None:
    cache = make_cache(fetcher, clock, refetch_cooldown_seconds=5)
    await cache.get_signing_key(rsa_signing_key.kid)
    with pytest.raises(IdentityRejected):
        await cache.get_signing_key("rotated")

    clock.advance(5)
    with pytest.raises(IdentityRejected):
        await cache.get_signing_key("rotated")

    assert fetcher.count(JWKS_URL) == 3


async def test_first_load_counts_as_refetch(fetcher: FakeFetcher, clock: FakeClock) -> None:
    cache = make_cache(fetcher, clock)

    with pytest.raises(IdentityRejected) as caught:
        await cache.get_signing_key("rotated")

    assert caught.value.reason == Reason.UNKNOWN_KEY_ID
    assert fetcher.count(JWKS_URL) == 1


async def test_keeps_last_good_keys(
    issuer: LocalIssuer,
    rsa_signing_key: SigningKey,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert issuer.issuer is not None
    cache = JWKSCache(
        issuer=issuer.issuer, fetcher=HTTPFetcher(), jwks_uri=issuer.jwks_uri, clock=clock
    )
    await cache.get_signing_key(rsa_signing_key.kid)
    issuer.fail_status = 500
    clock.advance(cache.max_age_seconds)

    with caplog.at_level(logging.WARNING, logger="credbroker.identity.jwks"):
        key = await cache.get_signing_key(rsa_signing_key.kid)

    assert key.key_id == rsa_signing_key.kid
    assert issuer.jwks_requests == 2
    assert cache.fetch_count == 2
    assert cache.fetch_failure_count == 1
    assert cache.last_fetch_error is not None
    assert "HTTP 500" in cache.last_fetch_error
    assert issuer.jwks_uri in caplog.text
    assert "HTTP 500" in caplog.text


async def test_stale_keys_not_refetched_in_cooldown(
    fetcher: FakeFetcher, clock: FakeClock, rsa_signing_key: SigningKey
) -> None:
    cache = make_cache(fetcher, clock)
    await cache.get_signing_key(rsa_signing_key.kid)
    fetcher.documents[JWKS_URL] = FetchError("GET failed: connection refused")
    clock.advance(cache.max_age_seconds)
    await cache.get_signing_key(rsa_signing_key.kid)

    clock.advance(1)
    await cache.get_signing_key(rsa_signing_key.kid)

    assert fetcher.count(JWKS_URL) == 2
    assert cache.fetch_failure_count == 1


async def test_stale_keys_replaced(
    fetcher: FakeFetcher, clock: FakeClock, rsa_signing_key: SigningKey
) -> None:
    cache = make_cache(fetcher, clock)
    await cache.get_signing_key(rsa_signing_key.kid)
    rotated = ec_key("ec-rotated")
    fetcher.documents[JWKS_URL] = jwks_document(rotated)

    clock.advance(cache.max_age_seconds - 1)
    await cache.get_signing_key(rsa_signing_key.kid)
    assert fetcher.count(JWKS_URL) == 1

    clock.advance(1)
    with pytest.raises(IdentityRejected) as caught:
        await cache.get_signing_key(rsa_signing_key.kid)

    assert caught.value.reason == Reason.UNKNOWN_KEY_ID
    assert cache.key_ids == frozenset({"ec-rotated"})


async def test_never_loaded_raises_unavailable(clock: FakeClock) -> None:
    fetcher = FakeFetcher({JWKS_URL: FetchError(f"GET {JWKS_URL} failed: connection refused")})
    cache = make_cache(fetcher, clock)

    with pytest.raises(IdentityRejected) as first:
        await cache.get_signing_key("rsa-1")
    clock.advance(1)
    with pytest.raises(IdentityRejected) as second:
        await cache.get_signing_key("rsa-1")

    assert first.value.reason == Reason.JWKS_UNAVAILABLE
    assert second.value.reason == Reason.JWKS_UNAVAILABLE
    assert "connection refused" in first.value.message
    assert JWKS_URL in first.value.message
    assert fetcher.count(JWKS_URL) == 1
    assert cache.fetch_failure_count == 1


async def test_recovers_after_cooldown(clock: FakeClock, rsa_signing_key: SigningKey) -> None:
    fetcher = FakeFetcher({JWKS_URL: FetchError("GET failed: connection refused")})
    cache = make_cache(fetcher, clock)
    with pytest.raises(IdentityRejected):
        await cache.get_signing_key(rsa_signing_key.kid)

    fetcher.documents[JWKS_URL] = jwks_document(rsa_signing_key)
    clock.advance(JWKS_REFETCH_COOLDOWN_SECONDS)
    key = await cache.get_signing_key(rsa_signing_key.kid)

    assert key.key_id == rsa_signing_key.kid
    assert cache.last_fetch_error is None


async def test_concurrent_misses_one_fetch(
    fetcher: FakeFetcher, clock: FakeClock, rsa_signing_key: SigningKey
) -> None:
    cache = make_cache(fetcher, clock)
    await cache.get_signing_key(rsa_signing_key.kid)
    rotated = ec_key("ec-rotated")
    fetcher.documents[JWKS_URL] = jwks_document(rsa_signing_key, rotated)
    fetcher.gate = asyncio.Event()
    fetcher.entered.clear()

    lookups = [asyncio.create_task(cache.get_signing_key("ec-rotated")) for _ in range(20)]
    await fetcher.entered.wait()
    # Let every other lookup reach the lock while the first fetch is held at the gate.
    for _ in range(10):
        await asyncio.sleep(0)
    fetcher.gate.set()
    keys = await asyncio.gather(*lookups)

    assert {key.key_id for key in keys} == {"ec-rotated"}
    assert fetcher.count(JWKS_URL) == 2


async def test_concurrent_cold_start_one_fetch(
    issuer: LocalIssuer, rsa_signing_key: SigningKey
) -> None:
    assert issuer.issuer is not None
    issuer.jwks_delay_seconds = 0.2
    cache = JWKSCache(issuer=issuer.issuer, fetcher=HTTPFetcher(), jwks_uri=issuer.jwks_uri)

    keys = await asyncio.gather(*(cache.get_signing_key(rsa_signing_key.kid) for _ in range(20)))

    assert {key.key_id for key in keys} == {rsa_signing_key.kid}
    assert issuer.jwks_requests == 1
    assert cache.fetch_count == 1


async def test_refresh_at_startup(
    cache: JWKSCache, fetcher: FakeFetcher, rsa_signing_key: SigningKey
) -> None:
    await cache.refresh()

    assert cache.key_ids == frozenset({rsa_signing_key.kid})
    await cache.get_signing_key(rsa_signing_key.kid)
    assert fetcher.count(JWKS_URL) == 1


async def test_refresh_without_keys_raises(clock: FakeClock) -> None:
    cache = make_cache(FakeFetcher({}), clock)

    with pytest.raises(IdentityRejected) as caught:
        await cache.refresh()

    assert caught.value.reason == Reason.JWKS_UNAVAILABLE
    assert "404" in caught.value.message


async def test_unusable_keys_dropped(
    clock: FakeClock, rsa_signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    document = jwks_document(rsa_signing_key)
    document["keys"] += [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
        {**ec_key("enc").public_jwk(), "use": "enc"},
        {k: v for k, v in ec_key("x").public_jwk().items() if k != "kid"},
        {**ec_key("dup").public_jwk(), "kid": rsa_signing_key.kid},
        "not a key",
    ]
    cache = make_cache(FakeFetcher({JWKS_URL: document}), clock)

    with caplog.at_level(logging.WARNING, logger="credbroker.identity.jwks"):
        await cache.refresh()

    assert cache.key_ids == frozenset({rsa_signing_key.kid})
    key = await cache.get_signing_key(rsa_signing_key.kid)
    assert key.algorithm_name == "RS256"
    assert "HS256 is not allowed" in caplog.text
    assert "repeats kid" in caplog.text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"keys": "none"}, "no 'keys' list"),
        ({"keys": []}, "no usable keys"),
        ({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, "no signing key"),
    ],
    ids=["keys-not-list", "keys-empty", "only-hmac"],
)
async def test_invalid_jwks_document(
    clock: FakeClock, document: dict[str, Any], message: str
) -> None:
    cache = make_cache(FakeFetcher({JWKS_URL: document}), clock)

    with pytest.raises(IdentityRejected) as caught:
        await cache.refresh()

    assert caught.value.reason == Reason.JWKS_UNAVAILABLE
    assert message in caught.value.message


def test_for_api_server_urls(fetcher: FakeFetcher) -> None:
    cache = JWKSCache.for_api_server(
        issuer=ISSUER, api_server_url=API_SERVER + "/", fetcher=fetcher
    )

    assert cache.jwks_uri == JWKS_URL
    assert cache.discovery_url is None
    assert ISSUER in repr(cache)


@pytest.mark.parametrize(
    "options",
    [{"refetch_cooldown_seconds": -1}, {"max_age_seconds": 0}],
    ids=["negative-cooldown", "zero-max-age"],
)
def test_invalid_options(fetcher: FakeFetcher, options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        JWKSCache(issuer=ISSUER, fetcher=fetcher, **options)
