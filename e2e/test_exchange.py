"""End to end: workloads exchange their own proof at the exchange endpoint for a PostgreSQL login.

The exchange server runs in the test process on 127.0.0.1, built from the
same pieces as the operator (KubeGateway, TargetRegistry, the JWKS of the
local control plane), because ``credbroker run`` has no exchange flag yet.
Tokens come from real TokenRequests and are checked by real TokenReviews,
the bundle lives in a ConfigMap, and the logins are checked by logging in.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from credbroker.exchange import (
    ExchangeServer,
    ExchangeSettings,
    KubeExchangeCluster,
    SelfIssuedTlsSource,
)
from credbroker.identity.jwks import KUBERNETES_JWKS_PATH, JWKSCache, fetcher_from_kube_config
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.kube import KubeGateway
from credbroker.targets.registry import TargetRegistry
from localcluster import ClusterAccess
from operator_harness import (
    OPERATOR_NAMESPACE,
    apply_crds,
    create_service_account,
    install_postgres_target,
    pod_body,
    wait_for,
)
from pgserver import PostgresServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "spiffe"))
from spiffe_ca import SpiffeCA, bundle_document

GROUP, VERSION = "credbroker.dev", "v1alpha1"
AUDIENCE = "credbroker.dev"
TRUST_DOMAIN = "e2e.example.org"
LABELS = {"app": "orders"}
WORKLOAD_ID = f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/web"


@pytest.fixture(scope="module")
def spiffe_ca() -> SpiffeCA:
    return SpiffeCA.create(TRUST_DOMAIN)


@pytest.fixture
def api(cluster: ClusterAccess) -> Iterator[client.ApiClient]:
    apply_crds(cluster.kubectl)
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def binding(
    api: client.ApiClient, postgres: PostgresServer, namespace: str, spiffe_ca: SpiffeCA
) -> Iterator[str]:
    """A target, a bundle ConfigMap and a binding that accepts SA orders and the workload ID."""
    target = f"pg-{namespace}"
    install_postgres_target(
        api,
        name=target,
        postgres=postgres,
        allowed_namespaces=[namespace],
        roles=["orders_rw"],
    )
    core = client.CoreV1Api(api)
    bundle_name = f"bundle-{namespace}"
    document = bundle_document(authorities=[spiffe_ca.certificate])
    core.create_namespaced_config_map(
        OPERATOR_NAMESPACE,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=bundle_name),
            data={"bundle.spiffe": json.dumps(document)},
        ),
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CredentialBinding",
        "metadata": {"name": "orders", "namespace": namespace},
        "spec": {
            "targetRef": {"name": target},
            "role": "orders_rw",
            "podSelector": {"matchLabels": LABELS},
            "serviceAccounts": ["orders"],
            "spiffe": {
                "trustDomain": TRUST_DOMAIN,
                "allowedIDs": [{"exact": WORKLOAD_ID}],
                "bundleRef": {"kind": "ConfigMap", "name": bundle_name},
            },
            "ttl": "10m",
            "secretName": "orders-db",
            "delivery": {"exchange": {"returnCredential": True}},
        },
    }
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "credentialbindings", body)
    yield "orders"
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", "orders"
    )
    core.delete_namespaced_config_map(bundle_name, OPERATOR_NAMESPACE)
    custom.delete_cluster_custom_object(GROUP, VERSION, "credentialtargets", target)


@pytest.fixture
async def server(api: client.ApiClient, binding: str) -> AsyncIterator[ExchangeServer]:
    host = api.configuration.host.rstrip("/")
    fetcher = fetcher_from_kube_config(api.configuration)
    discovery = await fetcher(host + "/.well-known/openid-configuration")
    jwks = JWKSCache(
        issuer=str(discovery["issuer"]),
        fetcher=fetcher,
        discovery_base_url=host,
        jwks_uri=host + KUBERNETES_JWKS_PATH,
    )
    tokens = ServiceAccountTokenVerifier(issuer=jwks.issuer, audience=AUDIENCE, jwks=jwks)
    kube = KubeGateway(api)
    targets = TargetRegistry(kube=kube, operator_namespace=OPERATOR_NAMESPACE)
    exchange_server = ExchangeServer(
        settings=ExchangeSettings(
            tls=SelfIssuedTlsSource(hostnames=("127.0.0.1",)), host="127.0.0.1", port=0
        ),
        cluster=KubeExchangeCluster(
            kube=kube, targets=targets, operator_namespace=OPERATOR_NAMESPACE
        ),
        tokens=tokens,
    )
    await exchange_server.start()
    try:
        yield exchange_server
    finally:
        await exchange_server.stop()
        await targets.close()


def start_pod(api: client.ApiClient, namespace: str, *, name: str, service_account: str) -> str:
    """Create a pod and return a projected token bound to it, as the kubelet would mount."""
    core = client.CoreV1Api(api)
    create_service_account(core, namespace=namespace, name=service_account)
    pod = core.create_namespaced_pod(
        namespace, pod_body(name=name, labels=LABELS, service_account=service_account)
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[AUDIENCE],
            expiration_seconds=600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=name, uid=pod.metadata.uid
            ),
        )
    )
    response = core.create_namespaced_service_account_token(service_account, namespace, request)
    return str(response.status.token)


async def exchange(
    server: ExchangeServer,
    namespace: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send one exchange request as a workload would."""
    assert server.ca_certificate_pem is not None
    context = ssl_context or ssl.create_default_context(cadata=server.ca_certificate_pem.decode())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{server.port}/v1/exchange",
            json={"namespace": namespace, "binding": "orders"},
            headers=headers,
            ssl=context,
        ) as response,
    ):
        return response.status, await response.json()


def log_in(postgres: PostgresServer, credential: dict[str, str]) -> int:
    """Log in with the credential, insert a row and count the rows it can see."""
    with psycopg.connect(
        host=credential["host"],
        port=int(credential["port"]),
        dbname=credential["database"],
        user=credential["username"],
        password=credential["password"],
        sslmode="disable",
    ) as connection:
        connection.execute("INSERT INTO orders (item) VALUES ('exchange')")
        row = connection.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def pod_gone(api: client.ApiClient, namespace: str, name: str) -> bool | None:
    names = [
        pod.metadata.name for pod in client.CoreV1Api(api).list_namespaced_pod(namespace).items
    ]
    return True if name not in names else None


async def test_token_exchange_login(api, namespace, server, postgres):
    token = start_pod(api, namespace, name="orders-1", service_account="orders")

    status, body = await exchange(server, namespace, token=token)

    assert status == 200, body
    credential = body["credential"]
    assert credential["expires_at"].endswith("Z")
    assert log_in(postgres, credential) >= 1


async def test_x509_svid_exchange_login(namespace, server, postgres, spiffe_ca, tmp_path):
    leaf, key = spiffe_ca.issue(path="/ns/shop/sa/web")
    cert_file, key_file = tmp_path / "svid.pem", tmp_path / "svid.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert server.ca_certificate_pem is not None
    context = ssl.create_default_context(cadata=server.ca_certificate_pem.decode())
    context.load_cert_chain(cert_file, key_file)

    status, body = await exchange(server, namespace, ssl_context=context)

    assert status == 200, body
    assert body["spiffe_id"] == WORKLOAD_ID
    assert log_in(postgres, body["credential"]) >= 1


async def test_bad_identity_rejected(api, namespace, server, caplog):
    caplog.set_level(logging.INFO, logger="credbroker.audit")
    intruder = start_pod(api, namespace, name="intruder-1", service_account="intruder")

    status, body = await exchange(server, namespace, token=intruder)
    assert status == 403
    assert body["error"] == "ServiceAccountNotAllowed"
    assert "intruder" in body["message"]

    client.CoreV1Api(api).delete_namespaced_pod("intruder-1", namespace, grace_period_seconds=0)
    wait_for(
        lambda: pod_gone(api, namespace, "intruder-1"),
        timeout_seconds=30,
        what="pod intruder-1 to be deleted",
    )
    status, body = await exchange(server, namespace, token=intruder)
    assert status == 401
    assert body["error"] in {"PodNotFound", "TokenReviewRejected"}

    records = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "credbroker.audit"
    ]
    assert [record["outcome"] for record in records] == ["failure", "failure"]
    assert records[0]["reason"] == "ServiceAccountNotAllowed"
    assert records[0]["pod_name"] == "intruder-1"
    assert all(intruder not in json.dumps(record) for record in records)
