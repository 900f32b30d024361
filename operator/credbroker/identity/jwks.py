"""The JWKS cache: the issuer's public signing keys, found through OIDC discovery.

The Kubernetes API server publishes the keys that sign service-account tokens
at ``/openid/v1/jwks`` and names that URL in ``/.well-known/openid-configuration``.
``JWKSCache`` loads them once, refetches when a token names an unknown ``kid``
(key rotation) or when the keys are older than ``max_age_seconds``, and keeps
the last good keys when a fetch fails. Fetching goes through an injected
``JSONFetcher``. ``HTTPFetcher`` is the aiohttp one the operator uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWTError
from kubernetes.client import Configuration

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason

logger = logging.getLogger(__name__)

ALLOWED_SIGNING_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
"""Asymmetric JWS algorithms accepted for service-account tokens (never ``none`` or HMAC)."""

DISCOVERY_PATH = "/.well-known/openid-configuration"
KUBERNETES_JWKS_PATH = "/openid/v1/jwks"

JWKS_REFETCH_COOLDOWN_SECONDS = 30.0
JWKS_MAX_AGE_SECONDS = 300.0
HTTP_FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024

JSONFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Fetch a URL and return its JSON object. Raises ``FetchError`` on any failure."""


class FetchError(Exception):
    """A discovery or JWKS document could not be fetched or was not usable.

    The message names the URL and the cause, and never contains a credential.
    """


class JWKSCache:
    """The signing keys of one issuer, cached and refetched on demand.

    Fetch rules: the first lookup loads the keys. An unknown ``kid`` triggers
    at most one refetch per ``refetch_cooldown_seconds``. Keys older than
    ``max_age_seconds`` are refetched on the next lookup. After a failed fetch,
    no fetch is attempted for ``refetch_cooldown_seconds`` and the last good
    keys stay in use. Concurrent lookups that need a fetch share one fetch.

    ``fetch_count`` and ``fetch_failure_count`` count refresh attempts, where a
    discovery request plus a JWKS request count as one attempt.
    """

    def __init__(
        self,
        *,
        issuer: str,
        fetcher: JSONFetcher,
        discovery_base_url: str | None = None,
        jwks_uri: str | None = None,
        refetch_cooldown_seconds: float = JWKS_REFETCH_COOLDOWN_SECONDS,
        max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure where the keys come from.

        With ``jwks_uri`` the keys are fetched from it directly. Otherwise the
        discovery document at ``{discovery_base_url or issuer}/.well-known/openid-configuration``
        names the ``jwks_uri``, and its ``issuer`` must equal ``issuer``.
        ``clock`` is a monotonic clock in seconds.
        """
        if not issuer:
            raise ValueError("issuer must be the token issuer URL, got an empty string")
        if refetch_cooldown_seconds < 0:
            raise ValueError(
                f"refetch_cooldown_seconds must be >= 0, got {refetch_cooldown_seconds}"
            )
        if max_age_seconds <= 0:
            raise ValueError(f"max_age_seconds must be > 0, got {max_age_seconds}")

        self.issuer = issuer
        self.discovery_url: str | None = None
        if jwks_uri is None:
            base_url = discovery_base_url if discovery_base_url is not None else issuer
            self.discovery_url = base_url.rstrip("/") + DISCOVERY_PATH
        self.refetch_cooldown_seconds = refetch_cooldown_seconds
        self.max_age_seconds = max_age_seconds

        self.fetch_count = 0
        self.fetch_failure_count = 0
        self.last_fetch_error: str | None = None

        self._fetcher = fetcher
        self._configured_jwks_uri = jwks_uri
        self._discovered_jwks_uri: str | None = None
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at: float | None = None
        self._last_attempt_at: float | None = None
        self._last_miss_refetch_at: float | None = None

    @classmethod
    def for_api_server(
        cls,
        *,
        issuer: str,
        api_server_url: str,
        fetcher: JSONFetcher,
        refetch_cooldown_seconds: float = JWKS_REFETCH_COOLDOWN_SECONDS,
        max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
    ) -> JWKSCache:
        """Create a cache that reads the keys from the API server's ``/openid/v1/jwks``.

        Use it when the issuer name (often ``https://kubernetes.default.svc...``)
        does not resolve from where the operator runs.
        """
        return cls(
            issuer=issuer,
            fetcher=fetcher,
            jwks_uri=api_server_url.rstrip("/") + KUBERNETES_JWKS_PATH,
            refetch_cooldown_seconds=refetch_cooldown_seconds,
            max_age_seconds=max_age_seconds,
        )

    @property
    def jwks_uri(self) -> str | None:
        """The JWKS URL in use: the configured one, else the discovered one, else None."""
        return self._configured_jwks_uri or self._discovered_jwks_uri

    @property
    def key_ids(self) -> frozenset[str]:
        """The ``kid`` values of the cached keys."""
        return frozenset(self._keys)

    async def get_signing_key(self, kid: str) -> PyJWK:
        """Return the key with this ``kid``, fetching the JWKS when needed.

        Raises IdentityRejected with JWKS_UNAVAILABLE when no keys were ever
        loaded, and with UNKNOWN_KEY_ID when the key is still missing after the
        allowed refetch.
        """
        attempts_seen = self.fetch_count
        # Without keys, wait for a fetch in flight rather than fail while it runs.
        if self._needs_scheduled_fetch() or (not self._keys and self._lock.locked()):
            await self._fetch_unless_done(attempts_seen=attempts_seen)
        self._raise_if_no_keys()

        key = self._keys.get(kid)
        if key is not None:
            return key

        # A fetch made by this lookup, or by a concurrent one, counts as the refetch.
        refetched = await self._refetch_for_unknown_kid(attempts_seen=attempts_seen)
        key = self._keys.get(kid)
        if key is not None:
            return key

        known = ", ".join(sorted(self._keys)) or "none"
        if refetched and self.last_fetch_error is not None:
            when = f"and the refetch failed ({self.last_fetch_error})"
        elif refetched:
            when = "after a refetch"
        else:
            when = (
                f"and a refetch is not allowed yet (cooldown {self.refetch_cooldown_seconds:g} s)"
            )
        raise IdentityRejected(
            Reason.UNKNOWN_KEY_ID,
            f"no key with kid {kid!r} in the JWKS of issuer {self.issuer} {when}. "
            f"Known kids: {known}. The token was signed by a key this issuer does not "
            "publish, so check that the issuer and JWKS URL belong to the cluster that issued it",
        )

    async def refresh(self) -> None:
        """Fetch the keys now, for example at startup, under the same lock as lookups.

        A failure keeps the last good keys. Raises IdentityRejected with
        JWKS_UNAVAILABLE only when there are no keys at all.
        """
        async with self._lock:
            await self._fetch_and_store()
        self._raise_if_no_keys()

    async def _fetch_unless_done(self, *, attempts_seen: int) -> None:
        async with self._lock:
            # Another lookup may have fetched while this one waited for the lock.
            if self.fetch_count == attempts_seen and self._needs_scheduled_fetch():
                await self._fetch_and_store()

    def _needs_scheduled_fetch(self) -> bool:
        now = self._clock()
        if self._last_attempt_at is None:
            return True
        if now - self._last_attempt_at < self.refetch_cooldown_seconds:
            return False
        if self._loaded_at is None:
            return True
        return now - self._loaded_at >= self.max_age_seconds

    async def _refetch_for_unknown_kid(self, *, attempts_seen: int) -> bool:
        """Refetch once per cooldown on a miss, and return whether a fetch ran.

        No new fetch runs when one completed after ``attempts_seen`` was read.
        """
        async with self._lock:
            if self.fetch_count != attempts_seen:
                return True
            now = self._clock()
            if (
                self._last_miss_refetch_at is not None
                and now - self._last_miss_refetch_at < self.refetch_cooldown_seconds
            ):
                return False
            self._last_miss_refetch_at = now
            await self._fetch_and_store()
            return True

    async def _fetch_and_store(self) -> None:
        """Fetch discovery and JWKS, and replace the keys on success. Call with the lock held.

        ``fetch_count`` grows when the attempt ends, so a lookup that read it
        while this fetch ran finds it changed and does not fetch again.
        """
        self._last_attempt_at = self._clock()
        try:
            jwks_uri = await self._resolve_jwks_uri()
            keys = _parse_jwks(await self._fetcher(jwks_uri), url=jwks_uri)
        except FetchError as exc:
            self.fetch_failure_count += 1
            self.last_fetch_error = str(exc)
            # The discovered URL may be what went stale, so discover it again next time.
            self._discovered_jwks_uri = None
            logger.warning(
                "JWKS fetch for issuer %s failed, keeping %d cached keys: %s",
                self.issuer,
                len(self._keys),
                exc,
            )
        else:
            self._keys = keys
            self._loaded_at = self._clock()
            self.last_fetch_error = None
            logger.info(
                "Loaded %d JWKS keys for issuer %s from %s (kids: %s)",
                len(keys),
                self.issuer,
                jwks_uri,
                ", ".join(sorted(keys)),
            )
        finally:
            self.fetch_count += 1

    async def _resolve_jwks_uri(self) -> str:
        if self._configured_jwks_uri is not None:
            return self._configured_jwks_uri
        if self._discovered_jwks_uri is not None:
            return self._discovered_jwks_uri

        assert self.discovery_url is not None  # set whenever no jwks_uri is configured
        document = await self._fetcher(self.discovery_url)
        discovered_issuer = document.get("issuer")
        if discovered_issuer != self.issuer:
            raise FetchError(
                f"discovery document {self.discovery_url} names issuer {discovered_issuer!r}, "
                f"expected {self.issuer!r}. Set the issuer to the API server's "
                "--service-account-issuer"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise FetchError(
                f"discovery document {self.discovery_url} has no http(s) jwks_uri "
                f"(found {jwks_uri!r}). Configure the JWKS URL explicitly"
            )
        self._discovered_jwks_uri = jwks_uri
        return jwks_uri

    def _raise_if_no_keys(self) -> None:
        if self._keys:
            return
        source = self.jwks_uri or self.discovery_url
        raise IdentityRejected(
            Reason.JWKS_UNAVAILABLE,
            f"no signing keys for issuer {self.issuer} could be loaded from {source}: "
            f"{self.last_fetch_error or 'no fetch attempted yet'}. Next attempt after the "
            f"{self.refetch_cooldown_seconds:g} s cooldown. Check the URL, the CA and "
            "the operator's access to the issuer's discovery endpoints",
        )

    def __repr__(self) -> str:
        return (
            f"JWKSCache(issuer={self.issuer!r}, jwks_uri={self.jwks_uri!r}, "
            f"kids={sorted(self._keys)!r})"
        )


def _parse_jwks(document: Mapping[str, Any], *, url: str) -> dict[str, PyJWK]:
    """Return the usable signing keys of a JWKS document by ``kid``.

    Keys without a ``kid``, with ``use`` other than ``sig`` or with an
    algorithm outside ALLOWED_SIGNING_ALGORITHMS are dropped. If a ``kid``
    repeats, the first key wins and a warning is logged.
    """
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise FetchError(f"JWKS document {url} has no 'keys' list")
    try:
        key_set = PyJWKSet(raw_keys)
    except PyJWTError as exc:
        raise FetchError(f"JWKS document {url} has no usable keys: {exc}") from exc

    keys: dict[str, PyJWK] = {}
    for key in key_set:
        kid = key.key_id
        if not isinstance(kid, str) or not kid:
            logger.warning("Ignoring a %s key without kid in JWKS %s", key.key_type, url)
            continue
        if key.public_key_use not in (None, "sig"):
            logger.debug("Ignoring key %s in JWKS %s: use is %s", kid, url, key.public_key_use)
            continue
        if key.algorithm_name not in ALLOWED_SIGNING_ALGORITHMS:
            logger.warning(
                "Ignoring key %s in JWKS %s: algorithm %s is not allowed",
                kid,
                url,
                key.algorithm_name,
            )
            continue
        if kid in keys:
            logger.warning(
                "JWKS %s repeats kid %s, so only the first key with it is used", url, kid
            )
            continue
        keys[kid] = key

    if not keys:
        raise FetchError(
            f"JWKS document {url} has no signing key with a kid and an allowed algorithm"
        )
    return keys


class HTTPFetcher:
    """A ``JSONFetcher`` over HTTPS with aiohttp, with the API server's TLS and credentials.

    The bearer token is sent in the ``Authorization`` header and never appears
    in ``repr``, logs or error messages. Each call opens its own session,
    because JWKS fetches are rare and this keeps no connection open between them.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        ca_data: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        bearer_token: str | None = None,
        bearer_token_provider: Callable[[], str | None] | None = None,
        verify_tls: bool = True,
        tls_server_name: str | None = None,
        timeout_seconds: float = HTTP_FETCH_TIMEOUT_SECONDS,
    ) -> None:
        """Build the TLS context now, so a bad CA or client-certificate file fails early.

        ``bearer_token_provider`` is called before each request, for tokens that
        rotate on disk. It is an alternative to ``bearer_token``, not an addition.
        """
        if bearer_token is not None and bearer_token_provider is not None:
            raise ValueError("pass bearer_token or bearer_token_provider, not both")
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")

        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.verify_tls = verify_tls
        self.tls_server_name = tls_server_name
        self.timeout_seconds = timeout_seconds
        self._bearer_token = bearer_token
        self._bearer_token_provider = bearer_token_provider
        self._ssl_context = _build_ssl_context(
            ca_file=ca_file,
            ca_data=ca_data,
            cert_file=cert_file,
            key_file=key_file,
            verify_tls=verify_tls,
        )
        if not verify_tls:
            logger.warning("TLS verification is off for JWKS fetches, which is safe only in tests")

    async def __call__(self, url: str) -> Mapping[str, Any]:
        """GET ``url`` and return its JSON object. Raises FetchError naming the URL."""
        headers = {"Accept": "application/json, application/jwk-set+json"}
        token = self._current_bearer_token()
        if token:
            if not url.startswith("https://"):
                raise FetchError(
                    f"refusing to send the bearer token to {url} over plain HTTP. Use an "
                    "https:// URL"
                )
            headers["Authorization"] = f"Bearer {token}"
        del token

        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    url,
                    headers=headers,
                    ssl=self._ssl_context,
                    server_hostname=self.tls_server_name,
                    allow_redirects=False,
                ) as response,
            ):
                if response.status != 200:
                    status = f"{response.status} {response.reason or ''}".rstrip()
                    raise FetchError(f"GET {url} returned HTTP {status}")
                body = await _read_limited(response, url=url)
        except TimeoutError as exc:
            raise FetchError(f"GET {url} timed out after {self.timeout_seconds:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            # Its own message shows the SSL context object, which is of no use to a reader.
            raise FetchError(
                f"GET {url} failed: {type(exc).__name__}: cannot connect to "
                f"{exc.host}:{exc.port}: {exc.os_error}"
            ) from exc
        except aiohttp.ClientError as exc:
            # aiohttp 3.14 messages name the URL or host and the cause, not the request headers.
            raise FetchError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc

        try:
            document = json.loads(body)
        except ValueError as exc:
            raise FetchError(f"GET {url} returned invalid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise FetchError(
                f"GET {url} returned JSON {type(document).__name__}, expected an object"
            )
        return document

    def _current_bearer_token(self) -> str | None:
        if self._bearer_token_provider is not None:
            return self._bearer_token_provider()
        return self._bearer_token

    def __repr__(self) -> str:
        has_token = self._bearer_token is not None or self._bearer_token_provider is not None
        return (
            f"HTTPFetcher(ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"bearer_token={'<set>' if has_token else None}, verify_tls={self.verify_tls}, "
            f"timeout_seconds={self.timeout_seconds:g})"
        )


def fetcher_from_kube_config(
    configuration: Configuration,
    *,
    timeout_seconds: float = HTTP_FETCH_TIMEOUT_SECONDS,
) -> HTTPFetcher:
    """Create an HTTPFetcher with the TLS settings and credentials of a kubernetes client.

    ``configuration`` is a loaded ``kubernetes.client.Configuration``. The
    bearer token is read through it before each request, so tokens that the
    client refreshes (in-cluster, exec plugins) stay current.
    """

    # NOTE: the client's proxy settings are not applied to these fetches.
    def bearer_token() -> str | None:
        value = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if not value:
            return None
        scheme, _, credentials = str(value).partition(" ")
        if credentials and scheme.lower() == "bearer":
            return credentials
        return str(value)

    return HTTPFetcher(
        ca_file=configuration.ssl_ca_cert or None,
        ca_data=getattr(configuration, "ca_cert_data", None) or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        bearer_token_provider=bearer_token,
        verify_tls=bool(configuration.verify_ssl),
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        timeout_seconds=timeout_seconds,
    )


def _build_ssl_context(
    *,
    ca_file: str | None,
    ca_data: str | None,
    cert_file: str | None,
    key_file: str | None,
    verify_tls: bool,
) -> ssl.SSLContext:
    try:
        if ca_file is not None or ca_data is not None:
            context = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
        else:
            context = ssl.create_default_context()
        if cert_file is not None and key_file is not None:
            context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot load TLS files (CA {ca_file!r}, client certificate {cert_file!r}, "
            f"client key {key_file!r}): {exc}"
        ) from exc
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _read_limited(response: aiohttp.ClientResponse, *, url: str) -> bytes:
    if response.content_length is not None and response.content_length > MAX_DOCUMENT_BYTES:
        raise FetchError(
            f"GET {url} returned {response.content_length} bytes, "
            f"more than the {MAX_DOCUMENT_BYTES} byte limit"
        )
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        body.extend(chunk)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"GET {url} returned more than the {MAX_DOCUMENT_BYTES} byte limit")
    return bytes(body)
