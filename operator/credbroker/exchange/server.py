"""``ExchangeServer``: the exchange endpoint's HTTPS listener inside the operator process.

``start`` loads the TLS certificate (from a Secret or self-issued), adds
the X.509 authorities of every binding's SPIFFE bundle to the client CAs,
starts listening, and starts a task that repeats the certificate and
bundle loads every ``refresh_interval_seconds``. ``stop`` ends both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

from credbroker.errors import CredbrokerError
from credbroker.exchange.app import create_app
from credbroker.exchange.cluster import ExchangeCluster
from credbroker.exchange.ratelimit import TokenBucketLimiter
from credbroker.exchange.service import ExchangeService
from credbroker.exchange.settings import ExchangeSettings, SecretTlsSource
from credbroker.exchange.tls import ServerTls, issue_self_signed
from credbroker.exchange.verify import ProofVerifier
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 5.0


class ExchangeServer:
    """The HTTPS server of ``POST /v1/exchange``."""

    def __init__(
        self,
        *,
        settings: ExchangeSettings,
        cluster: ExchangeCluster,
        tokens: ServiceAccountTokenVerifier,
        wake_binding: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``tokens`` verifies service-account tokens, and its audience is also the JWT-SVID one.

        ``wake_binding`` receives ``namespace/name`` of a binding whose
        Secret an exchange requests a refresh of; the operator passes
        ``PodRegistry.wake``.
        """
        self.settings = settings
        self._cluster = cluster
        self._tls = ServerTls()
        verifier = ProofVerifier(
            cluster=cluster, tokens=tokens, on_bundle_loaded=self._tls.trust_bundle
        )
        self.service = ExchangeService(
            cluster=cluster,
            verifier=verifier,
            limiter=TokenBucketLimiter(settings.rate, monotonic=monotonic),
            wake_binding=wake_binding,
        )
        self.app = create_app(self.service, max_body_bytes=settings.max_body_bytes)
        self.ca_certificate_pem: bytes | None = None
        self._tls_version: str | None = None
        self._runner: web.AppRunner | None = None
        self._refresher: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port the server listens on; known after ``start``."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the exchange server is not started")
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Load the certificate and the client CAs, then listen. Raises on a bad certificate."""
        if self._runner is not None:
            raise RuntimeError("the exchange server is already started")
        await self._load_certificate()
        await self._trust_bundles()

        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        site = web.TCPSite(
            runner,
            host=self.settings.host,
            port=self.settings.port,
            ssl_context=self._tls.context,
        )
        await site.start()
        self._runner = runner
        self._refresher = asyncio.create_task(self._refresh_forever(), name="exchange-refresh")
        logger.info(
            "Exchange endpoint listening on https://%s:%d/v1/exchange",
            self.settings.host,
            self.port,
        )

    async def stop(self) -> None:
        """Stop listening and stop the refresh task."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            logger.info("Exchange endpoint stopped")

    async def _load_certificate(self) -> None:
        source = self.settings.tls
        if not isinstance(source, SecretTlsSource):
            if self._tls_version is None:
                issued = issue_self_signed(source.hostnames)
                self._tls.load_pair(issued.pair)
                self.ca_certificate_pem = issued.ca_pem
                self._tls_version = "self-issued"
                logger.info(
                    "Exchange endpoint uses a self-issued certificate for %s", source.hostnames
                )
            return
        version, pair = await self._cluster.read_tls_pair(
            namespace=source.namespace,
            name=source.name,
            cert_key=source.cert_key,
            key_key=source.key_key,
        )
        if version == self._tls_version:
            return
        self._tls.load_pair(pair)
        self._tls_version = version
        logger.info(
            "Exchange endpoint loaded its certificate from Secret %s/%s (resourceVersion %s)",
            source.namespace,
            source.name,
            version,
        )

    async def _trust_bundles(self) -> None:
        for source in await self._cluster.list_bundle_sources():
            try:
                bundle = await self._cluster.load_bundle(source)
            except CredbrokerError as error:
                logger.warning(
                    "Bundle %s %s of trust domain %s not loaded: %s",
                    source.ref.kind,
                    source.ref.name,
                    source.trust_domain,
                    error,
                )
                continue
            self._tls.trust_bundle(bundle)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval_seconds)
            try:
                await self._load_certificate()
                await self._trust_bundles()
            except (CredbrokerError, OSError, ValueError) as error:
                # ssl.SSLError is an OSError. The previous certificate stays in use.
                logger.warning("Exchange endpoint refresh failed, retrying later: %s", error)
