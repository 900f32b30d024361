"""The exchange endpoint: workloads present their own proof over HTTPS and get a credential.

``POST /v1/exchange`` accepts a projected service-account token or a
JWT-SVID as a bearer token, or an X.509-SVID as the TLS client certificate.
docs/exchange.md describes the request, the response and the errors.
"""

from credbroker.exchange.cluster import ExchangeCluster, KubeExchangeCluster
from credbroker.exchange.server import ExchangeServer
from credbroker.exchange.settings import (
    ExchangeSettings,
    RateLimit,
    SecretTlsSource,
    SelfIssuedTlsSource,
)

__all__ = [
    "ExchangeCluster",
    "ExchangeServer",
    "ExchangeSettings",
    "KubeExchangeCluster",
    "RateLimit",
    "SecretTlsSource",
    "SelfIssuedTlsSource",
]
