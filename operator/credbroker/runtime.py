"""The operator's object graph: one instance of each service, built once at startup.

Handlers reach these through kopf's ``memo``; tests build a ``Runtime``
with their own API client and fakes, without kopf.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client as k8s

from credbroker.delivery import SecretStore
from credbroker.exchange import (
    ExchangeServer,
    ExchangeSettings,
    KubeExchangeCluster,
    RateLimit,
    SecretTlsSource,
    SelfIssuedTlsSource,
)
from credbroker.identity.attestation import PodAttestor
from credbroker.identity.jwks import (
    DISCOVERY_PATH,
    KUBERNETES_JWKS_PATH,
    JWKSCache,
    fetcher_from_kube_config,
)
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.kube import EventRecorder, KubeGateway
from credbroker.lifecycle.binding import BindingReconciler
from credbroker.metrics import Metrics, MetricsServer
from credbroker.pods import PodRegistry
from credbroker.podwatch import PodWatcher
from credbroker.settings import OperatorSettings
from credbroker.targets.registry import TargetRegistry

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """Every long-lived service of one operator process."""

    settings: OperatorSettings
    api_client: k8s.ApiClient
    kube: KubeGateway
    pods: PodRegistry
    jwks: JWKSCache
    attestor: PodAttestor
    targets: TargetRegistry
    secrets: SecretStore
    reconciler: BindingReconciler
    metrics: Metrics = field(default_factory=Metrics)
    metrics_server: MetricsServer | None = None
    exchange_server: ExchangeServer | None = None
    pod_watcher: PodWatcher | None = None
    seen_generations: dict[str, int] = field(default_factory=dict)

    async def close(self) -> None:
        """Stop the servers and the pod watch, close target connections and the API client."""
        if self.pod_watcher is not None:
            self.pod_watcher.stop()
        if self.exchange_server is not None:
            await self.exchange_server.stop()
            self.exchange_server = None
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)
            self.metrics_server = None
        await self.targets.close()
        await asyncio.to_thread(self.api_client.close)


async def discover_issuer(api_client: k8s.ApiClient) -> str:
    """Return the service-account issuer from the API server's OIDC discovery document."""
    fetch = fetcher_from_kube_config(api_client.configuration)
    document = await fetch(api_client.configuration.host.rstrip("/") + DISCOVERY_PATH)
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise RuntimeError(
            "the API server's OIDC discovery document has no issuer; set --issuer explicitly"
        )
    return issuer


async def build_runtime(
    *, settings: OperatorSettings, api_client: k8s.ApiClient, recorder: EventRecorder
) -> Runtime:
    """Build the services, discovering the token issuer from the API server when not configured."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="credbroker-api")
    )

    host = api_client.configuration.host.rstrip("/")
    issuer = settings.issuer or await discover_issuer(api_client)
    jwks = JWKSCache(
        issuer=issuer,
        fetcher=fetcher_from_kube_config(api_client.configuration),
        discovery_base_url=host,
        jwks_uri=settings.jwks_uri or host + KUBERNETES_JWKS_PATH,
    )
    verifier = ServiceAccountTokenVerifier(issuer=issuer, audience=settings.audience, jwks=jwks)
    kube = KubeGateway(api_client)
    attestor = PodAttestor(
        core_api=cast(Any, kube.core),
        authn_api=cast(Any, kube.authn),
        verifier=verifier,
        audience=settings.audience,
        token_expiration_seconds=settings.token_expiration_seconds,
    )
    metrics = Metrics()
    metrics.watch_jwks(jwks)
    pods = PodRegistry()
    targets = TargetRegistry(kube=kube, operator_namespace=settings.namespace)
    secrets = SecretStore(cast(Any, kube.core))
    reconciler = BindingReconciler(
        settings=settings,
        kube=kube,
        pods=pods,
        attestor=attestor,
        targets=targets,
        secrets=secrets,
        recorder=recorder,
        metrics=metrics,
    )
    exchange_server = _build_exchange_server(
        settings=settings, kube=kube, targets=targets, verifier=verifier, pods=pods
    )
    logger.info(
        "credbroker runtime ready: issuer %s, audience %s, operator namespace %s, scope %s",
        issuer,
        settings.audience,
        settings.namespace,
        "cluster-wide" if settings.clusterwide else ",".join(settings.watch_namespaces),
    )
    return Runtime(
        settings=settings,
        api_client=api_client,
        kube=kube,
        pods=pods,
        jwks=jwks,
        attestor=attestor,
        targets=targets,
        secrets=secrets,
        reconciler=reconciler,
        metrics=metrics,
        exchange_server=exchange_server,
        pod_watcher=PodWatcher(
            core_api=kube.core,
            registry=pods,
            namespaces=settings.watch_namespaces,
            label_selector=settings.pod_label_selector,
        ),
    )


def _build_exchange_server(
    *,
    settings: OperatorSettings,
    kube: KubeGateway,
    targets: TargetRegistry,
    verifier: ServiceAccountTokenVerifier,
    pods: PodRegistry,
) -> ExchangeServer | None:
    if settings.exchange_port is None:
        return None
    tls: SecretTlsSource | SelfIssuedTlsSource
    if settings.exchange_tls_secret:
        tls = SecretTlsSource(namespace=settings.namespace, name=settings.exchange_tls_secret)
    else:
        tls = SelfIssuedTlsSource()
    return ExchangeServer(
        settings=ExchangeSettings(
            tls=tls,
            host=settings.exchange_host,
            port=settings.exchange_port,
            rate=RateLimit(
                burst=settings.exchange_burst,
                refill_per_second=settings.exchange_refill_per_second,
            ),
        ),
        cluster=KubeExchangeCluster(
            kube=kube,
            targets=targets,
            operator_namespace=settings.namespace,
            served_namespaces=settings.watch_namespaces,
        ),
        tokens=verifier,
        wake_binding=pods.wake,
    )
