"""Readiness probes: free loopback ports and HTTP(S) GETs against starting components."""

from __future__ import annotations

import http.client
import socket
import ssl

from .pki import ClusterPKI

PROBE_TIMEOUT_SECONDS = 5.0


def free_loopback_port() -> int:
    # NOTE: the port is free when this returns, but another process can take
    # it before the component binds it. The component then fails to start and
    # LocalCluster.start reports its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_loopback_port())
    return sorted(ports)


class AdminConnection:
    """HTTPS GETs to the apiserver with the admin client certificate, for readiness probes."""

    def __init__(self, *, port: int, pki: ClusterPKI) -> None:
        self._port = port
        self._context = ssl.create_default_context(cafile=str(pki.ca.cert))
        self._context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))

    def get(self, path: str) -> tuple[int, bytes]:
        """Return the status and body of GET ``path``, or status 0 if the connection failed."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._port, context=self._context, timeout=PROBE_TIMEOUT_SECONDS
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()


def http_get(url: str) -> tuple[int, bytes]:
    host_port = url.removeprefix("http://").split("/", 1)[0]
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/" + url.removeprefix("http://").split("/", 1)[1])
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()
