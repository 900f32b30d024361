"""Operator settings: every knob of a running credbroker, read from flags and environment.

The values are plain data, so the pipeline and its tests build them directly
and only the command line reads flags and environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_AUDIENCE = "credbroker.dev"
DEFAULT_SWEEP_INTERVAL_SECONDS = 60.0
DEFAULT_ORPHAN_MIN_AGE_SECONDS = 120.0
DEFAULT_API_THREADS = 32
DEFAULT_VERIFY_CONCURRENCY = 16
DEFAULT_TOKEN_EXPIRATION_SECONDS = 600
DEFAULT_LIVENESS_ENDPOINT = "http://0.0.0.0:8080/healthz"
DEFAULT_METRICS_PORT = 9090
# Prometheus scrapes the operator's pod from other pods, so the default is
# every interface; 127.0.0.1 suits a proxy sidecar in front of the metrics.
DEFAULT_METRICS_ADDRESS = "0.0.0.0"  # noqa: S104
DEFAULT_WATCH_SERVER_TIMEOUT_SECONDS = 300.0
DEFAULT_WATCH_CLIENT_TIMEOUT_SECONDS = 330.0
DEFAULT_RETRY_DELAY_SECONDS = 10.0
OPERATOR_NAMESPACE_ENV = "CREDBROKER_NAMESPACE"
DEFAULT_EXCHANGE_HOST = "0.0.0.0"  # noqa: S104 - the endpoint serves pods of the cluster
DEFAULT_EXCHANGE_BURST = 20
DEFAULT_EXCHANGE_REFILL_PER_SECOND = 2.0


@dataclass(frozen=True, kw_only=True)
class OperatorSettings:
    """The settings of one credbroker process.

    ``namespace`` is the operator's own namespace: the only place where admin
    Secrets of targets are read. ``watch_namespaces`` empty means
    cluster-wide. ``issuer`` empty means "ask the API server's OIDC
    discovery document". ``metrics_port`` ``None`` means no metrics server.
    """

    namespace: str
    audience: str = DEFAULT_AUDIENCE
    watch_namespaces: tuple[str, ...] = ()
    issuer: str | None = None
    jwks_uri: str | None = None
    sweep_interval_seconds: float = DEFAULT_SWEEP_INTERVAL_SECONDS
    orphan_min_age_seconds: float = DEFAULT_ORPHAN_MIN_AGE_SECONDS
    token_expiration_seconds: int = DEFAULT_TOKEN_EXPIRATION_SECONDS
    api_threads: int = DEFAULT_API_THREADS
    verify_concurrency: int = DEFAULT_VERIFY_CONCURRENCY
    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS
    pod_label_selector: str | None = None
    liveness_endpoint: str | None = DEFAULT_LIVENESS_ENDPOINT
    metrics_port: int | None = None
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    exchange_port: int | None = None
    exchange_host: str = DEFAULT_EXCHANGE_HOST
    exchange_tls_secret: str | None = None
    exchange_burst: int = DEFAULT_EXCHANGE_BURST
    exchange_refill_per_second: float = DEFAULT_EXCHANGE_REFILL_PER_SECOND
    watch_server_timeout_seconds: float = DEFAULT_WATCH_SERVER_TIMEOUT_SECONDS
    watch_client_timeout_seconds: float = DEFAULT_WATCH_CLIENT_TIMEOUT_SECONDS
    peering_name: str | None = None
    priority: int = 0
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def clusterwide(self) -> bool:
        """Whether the operator serves bindings in every namespace."""
        return not self.watch_namespaces


def operator_namespace_from_env(default: str = "credbroker") -> str:
    """Return the operator's namespace from ``CREDBROKER_NAMESPACE`` or the pod's mount."""
    from_env = os.environ.get(OPERATOR_NAMESPACE_ENV)
    if from_env:
        return from_env
    mounted = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(mounted, encoding="utf-8") as handle:
            return handle.read().strip() or default
    except OSError:
        return default
