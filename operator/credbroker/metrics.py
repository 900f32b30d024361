"""Prometheus metrics: what the operator issued, renewed, revoked, rejected and swept.

``Metrics`` owns a ``CollectorRegistry`` of its own instead of the
prometheus_client default, so every test builds a fresh one and the
exposition contains only credbroker's metrics. The pipeline calls its
methods. A component built without a ``Metrics`` makes its own unserved
instance, which costs a few dictionaries.

Every label value comes from a closed set: ``target_type`` is a
CredentialTarget ``spec.type`` (or ``unknown`` when the target could not be
read), ``reason`` is a ``Reason`` value and ``object`` is ``credential`` or
``secret``. No pod, binding, credential id or secret value is a label, so
the number of series does not grow with the cluster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from credbroker.reasons import Reason
from credbroker.settings import DEFAULT_METRICS_ADDRESS

logger = logging.getLogger(__name__)

UNKNOWN_TARGET_TYPE = "unknown"

# From 10 ms to 30 s: after a pod appears, issuance needs a TokenRequest, a
# TokenReview and one call to the target, and a retry after a failure waits
# the retry delay (10 s by default).
ISSUANCE_LATENCY_BUCKETS_SECONDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip
# A sweep makes a few list calls plus one call per removal, so a backlog of
# expired credentials moves it into the upper buckets.
SWEEP_DURATION_BUCKETS_SECONDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class JWKSCounters(Protocol):
    """The fetch counters of a ``JWKSCache``."""

    @property
    def fetch_count(self) -> int: ...

    @property
    def fetch_failure_count(self) -> int: ...


class JWKSCollector(Collector):
    """Exposes a JWKS cache's fetch counters as Prometheus counters at scrape time."""

    def __init__(self, jwks: JWKSCounters) -> None:
        self._jwks = jwks

    def collect(self) -> Iterable[Metric]:
        """Read the counters now; the cache counts attempts itself."""
        fetches = CounterMetricFamily(
            "credbroker_jwks_fetches",
            "JWKS refresh attempts (OIDC discovery plus the JWKS request count as one).",
        )
        fetches.add_metric([], float(self._jwks.fetch_count))
        failures = CounterMetricFamily(
            "credbroker_jwks_fetch_failures",
            "JWKS refresh attempts that failed; the cache kept its last good keys.",
        )
        failures.add_metric([], float(self._jwks.fetch_failure_count))
        return [fetches, failures]


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """The HTTP server that serves ``/metrics``, running in a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port the server listens on (the bound one when 0 was requested)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5.0)


class Metrics:
    """credbroker's metrics in one registry, with one method per event the pipeline reports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("target_type", "reason")
        self._issued = Counter(
            "credbroker_credentials_issued",
            "Credentials issued to a binding that held none.",
            labels,
            registry=self.registry,
        )
        self._renewed = Counter(
            "credbroker_credentials_renewed",
            "Credentials issued to replace a binding's current credential.",
            labels,
            registry=self.registry,
        )
        self._revoked = Counter(
            "credbroker_credentials_revoked",
            "Credentials removed from the target by a binding or its deletion.",
            labels,
            registry=self.registry,
        )
        self._rejected = Counter(
            "credbroker_credentials_rejected",
            "Pods rejected by identity verification or binding policy, and bindings "
            "refused by their target's policy.",
            labels,
            registry=self.registry,
        )
        self._reconcile_failures = Counter(
            "credbroker_reconcile_failures",
            "Binding passes that ended in an error; the binding is retried.",
            labels,
            registry=self.registry,
        )
        self._issuance_latency = Histogram(
            "credbroker_issuance_latency_seconds",
            "Time from the operator first seeing a verified pod (or the binding, if later) "
            "to writing the Secret with the binding's first credential.",
            buckets=ISSUANCE_LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._active = Gauge(
            "credbroker_active_credentials",
            "Bindings whose Secret currently holds a credential.",
            ("target_type",),
            registry=self.registry,
        )
        self._sweep_duration = Histogram(
            "credbroker_sweep_duration_seconds",
            "Duration of one completed sweep of one target.",
            ("target_type",),
            buckets=SWEEP_DURATION_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._swept = Counter(
            "credbroker_swept",
            "Credentials revoked and Secrets deleted by the sweeper.",
            ("target_type", "reason", "object"),
            registry=self.registry,
        )
        self._identity_failures = Counter(
            "credbroker_identity_verification_failures",
            "Pod identity verifications that failed (token request, signature, claims, "
            "TokenReview).",
            ("reason",),
            registry=self.registry,
        )
        self._holders: dict[str, str] = {}
        self._holders_lock = threading.Lock()

    def credential_issued(self, *, target_type: str, reason: Reason = Reason.ISSUED) -> None:
        """Count a first credential of a binding."""
        self._issued.labels(target_type, reason.value).inc()

    def credential_renewed(self, *, target_type: str, reason: Reason = Reason.RENEWED) -> None:
        """Count a credential that replaced a binding's current one."""
        self._renewed.labels(target_type, reason.value).inc()

    def credential_revoked(self, *, target_type: str, reason: Reason) -> None:
        """Count a credential removed from the target, with why it was revoked."""
        self._revoked.labels(target_type, reason.value).inc()

    def credential_rejected(self, *, target_type: str, reason: Reason) -> None:
        """Count a rejected pod or a binding refused by policy."""
        self._rejected.labels(target_type, reason.value).inc()

    def reconcile_failed(self, *, target_type: str, reason: Reason) -> None:
        """Count a binding pass that ended in an error."""
        self._reconcile_failures.labels(target_type, reason.value).inc()

    def identity_verification_failed(self, reason: Reason) -> None:
        """Count a pod whose proof of identity failed verification."""
        self._identity_failures.labels(reason.value).inc()

    def observe_issuance_latency(self, seconds: float) -> None:
        """Record the wait of a binding for its first credential."""
        self._issuance_latency.observe(max(0.0, seconds))

    def set_credential_held(self, *, binding: str, target_type: str, held: bool) -> None:
        """Record whether the Secret of binding ``namespace/name`` references a credential now.

        The binding key stays in this object's memory only; the gauge carries
        just the count per target type.
        """
        with self._holders_lock:
            previous = self._holders.pop(binding, None)
            if previous is not None:
                self._active.labels(previous).dec()
            if held:
                self._holders[binding] = target_type
                self._active.labels(target_type).inc()
            elif previous is None:
                # Create the series at 0, so the gauge exists before any credential.
                self._active.labels(target_type)

    def forget_binding(self, binding: str) -> None:
        """Drop a deleted binding from the active-credentials gauge."""
        with self._holders_lock:
            previous = self._holders.pop(binding, None)
            if previous is not None:
                self._active.labels(previous).dec()

    def credential_swept(self, *, target_type: str, reason: Reason) -> None:
        """Count a credential the sweeper revoked on the target."""
        self._swept.labels(target_type, reason.value, "credential").inc()

    def secret_swept(self, *, target_type: str, reason: Reason) -> None:
        """Count a Secret the sweeper deleted."""
        self._swept.labels(target_type, reason.value, "secret").inc()

    def observe_sweep(self, *, target_type: str, seconds: float) -> None:
        """Record the duration of a completed sweep."""
        self._sweep_duration.labels(target_type).observe(seconds)

    def watch_jwks(self, jwks: JWKSCounters) -> None:
        """Expose the fetch counters of ``jwks``; call once per registry."""
        self.registry.register(JWKSCollector(jwks))


def start_metrics_server(
    *, port: int, registry: CollectorRegistry, address: str = DEFAULT_METRICS_ADDRESS
) -> MetricsServer:
    """Serve ``registry`` at ``http://address:port/metrics`` from a daemon thread.

    Raises ``OSError`` when the port cannot be bound.
    """
    server, thread = start_http_server(port, addr=address, registry=registry)
    metrics_server = MetricsServer(server=server, thread=thread)
    logger.info("Serving Prometheus metrics on %s:%d/metrics", address, metrics_server.port)
    return metrics_server
