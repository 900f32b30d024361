"""Settings of the exchange endpoint: where it listens, its TLS certificate and its rate limit."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EXCHANGE_PORT = 8443
DEFAULT_LISTEN_HOST = "0.0.0.0"  # noqa: S104 (pods reach the endpoint through a Service)
DEFAULT_BURST_REQUESTS = 20
DEFAULT_REFILL_PER_SECOND = 2.0
DEFAULT_REFRESH_INTERVAL_SECONDS = 60.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024
DEFAULT_TLS_CERT_KEY = "tls.crt"
DEFAULT_TLS_KEY_KEY = "tls.key"


@dataclass(frozen=True, kw_only=True)
class SecretTlsSource:
    """A ``kubernetes.io/tls`` Secret with ``tls.crt`` and ``tls.key``, as cert-manager writes it.

    The server reloads the pair when the Secret's resourceVersion changes.
    """

    namespace: str
    name: str
    cert_key: str = DEFAULT_TLS_CERT_KEY
    key_key: str = DEFAULT_TLS_KEY_KEY


@dataclass(frozen=True, kw_only=True)
class SelfIssuedTlsSource:
    """A certificate the server issues to itself at start, from a CA it creates in memory.

    For tests and local runs: clients trust ``ExchangeServer.ca_certificate_pem``.
    """

    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")


TlsSource = SecretTlsSource | SelfIssuedTlsSource


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A token bucket per identity: ``burst`` requests at once, then ``refill_per_second``."""

    burst: int = DEFAULT_BURST_REQUESTS
    refill_per_second: float = DEFAULT_REFILL_PER_SECOND

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 request, got {self.burst}")
        if not self.refill_per_second > 0:
            raise ValueError(f"refill_per_second must be positive, got {self.refill_per_second}")


@dataclass(frozen=True, kw_only=True)
class ExchangeSettings:
    """The settings of the exchange endpoint.

    ``port`` 0 picks a free port (see ``ExchangeServer.port``).
    ``refresh_interval_seconds`` is how often the server reloads its TLS
    certificate Secret and the SPIFFE bundles that client certificates are
    checked against during the TLS handshake.
    """

    tls: TlsSource = field(default_factory=SelfIssuedTlsSource)
    host: str = DEFAULT_LISTEN_HOST
    port: int = DEFAULT_EXCHANGE_PORT
    rate: RateLimit = field(default_factory=RateLimit)
    refresh_interval_seconds: float = DEFAULT_REFRESH_INTERVAL_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
