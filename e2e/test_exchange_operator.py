"""End to end: ``credbroker run --exchange-port`` serves the exchange endpoint.

The operator runs as a child process with its TLS certificate taken from a
Secret, as in production; a workload exchanges its pod's projected token
for a PostgreSQL login over HTTPS that it verifies against the Secret's CA.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from localcluster import ClusterAccess
from operator_harness import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    apply_crds,
    binding_body,
    ensure_namespace,
    install_postgres_target,
    wait_for,
)
from pgserver import PostgresServer
from test_exchange import log_in, start_pod

GROUP, VERSION = "credbroker.dev", "v1alpha1"
LABELS = {"app": "orders"}
TLS_SECRET = "exchange-tls"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_certificate() -> tuple[bytes, bytes, bytes]:
    """Return (CA PEM, server certificate PEM, server key PEM) for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exchange test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "credbroker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        ca.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.PEM),
        key_pem,
    )


def test_operator_serves_exchange(
    cluster: ClusterAccess, postgres: PostgresServer, namespace: str, tmp_path: Path
) -> None:
    apply_crds(cluster.kubectl)
    ca_pem, certificate_pem, key_pem = _server_certificate()
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        ensure_namespace(core, OPERATOR_NAMESPACE)
        core.delete_collection_namespaced_secret(
            OPERATOR_NAMESPACE, field_selector=f"metadata.name={TLS_SECRET}"
        )
        core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=TLS_SECRET),
                type="kubernetes.io/tls",
                string_data={"tls.crt": certificate_pem.decode(), "tls.key": key_pem.decode()},
            ),
        )
        target = f"pg-{namespace}"
        install_postgres_target(
            api,
            name=target,
            postgres=postgres,
            allowed_namespaces=[namespace],
            roles=["orders_rw"],
        )
        body = binding_body(
            name="orders",
            namespace=namespace,
            target=target,
            secret_name="orders-db",
            service_accounts=["orders"],
            labels=LABELS,
        )
        body["spec"]["delivery"] = {"exchange": {"returnCredential": True}}
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "credentialbindings", body
        )
        token = start_pod(api, namespace, name="orders-0", service_account="orders")

        port = _free_port()
        operator = OperatorProcess(
            kubeconfig=cluster.kubeconfig,
            log_path=tmp_path / "operator.log",
            extra_args=[
                "--namespace",
                namespace,
                "--exchange-port",
                str(port),
                "--exchange-host",
                "127.0.0.1",
                "--exchange-tls-secret",
                TLS_SECRET,
            ],
        )
        with operator:
            context = ssl.create_default_context(cadata=ca_pem.decode())

            async def post() -> tuple[int, dict[str, object]]:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        f"https://127.0.0.1:{port}/v1/exchange",
                        json={"namespace": namespace, "binding": "orders"},
                        headers={"Authorization": f"Bearer {token}"},
                        ssl=context,
                    ) as response,
                ):
                    return response.status, await response.json()

            def attempt() -> tuple[int, dict[str, object]] | None:
                try:
                    return asyncio.run(post())
                except aiohttp.ClientConnectorError:
                    return None

            status, answer = wait_for(attempt, timeout_seconds=60, what="the exchange endpoint")

            assert status == 200, answer
            credential = answer["credential"]
            assert isinstance(credential, dict)
            assert log_in(postgres, credential) >= 1
            assert token not in operator.log_text()
            assert str(credential["password"]) not in operator.log_text()
