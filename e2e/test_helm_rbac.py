"""End to end: the Helm chart's RBAC is enough for the broker story, and no more.

The chart is installed with ``helm install`` on the local control plane. Its
StatefulSet never starts (there is no kubelet), so the operator runs as a
child process with the rendered container arguments and a kubeconfig whose
token belongs to the chart's ServiceAccount. Every test runs twice: with one
served namespace (per-namespace Roles) and cluster-wide (ClusterRoles), both
with two replicas, so kopf peering is exercised too. The last test
uninstalls the release and checks what remains, as docs/helm.md describes.

The release enables the exchange endpoint with a TLS Secret and a bundle
ConfigMap created by the test; the operator process serves it on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from psycopg import sql

from credbroker.exchange.tls import issue_self_signed
from localcluster import ClusterAccess
from operator_harness import (
    OPERATOR_NAMESPACE,
    REPO_ROOT,
    OperatorProcess,
    binding_body,
    create_service_account,
    ensure_namespace,
    install_postgres_target,
    pod_body,
    wait_for,
)
from pgserver import PostgresServer

CHART_DIR = REPO_ROOT / "charts" / "credbroker"
# The harness writes admin Secrets into OPERATOR_NAMESPACE, so the release goes there too.
RELEASE = "credbroker"
SERVICE_ACCOUNT = "credbroker"
PEERING_NAME = "credbroker"
GROUP, VERSION = "credbroker.dev", "v1alpha1"
LABELS = {"app": "orders"}
ISSUE_TIMEOUT_SECONDS = 60.0
FINALIZER = "credbroker.dev/finalizer"
# Flags that the test replaces: the harness disables the liveness server, and
# a metrics server on the chart's fixed port could clash with other tests, so
# metrics are switched off with --metrics-port=0.
DROPPED_FLAGS = ("--liveness=", "--metrics-port=", "--log-format=")
# The chart lets the exchange endpoint bind every interface, but the test binds loopback.
REPLACEMENT_FLAGS = ("--metrics-port=0", "--exchange-host=127.0.0.1")
EXCHANGE_TLS_SECRET = "credbroker-exchange-tls"
BUNDLE_CONFIG_MAP = "example-org-bundle"
# Words in the operator's log that mean the API server rejected a call.
DENIAL_MARKERS = ("(403)", "Forbidden", "forbidden", "Not enough permissions")


@dataclass
class Release:
    """One installed release of the chart and the namespaces around it."""

    cluster: ClusterAccess
    scope: str
    served_namespace: str
    outside_namespace: str
    target: str
    exchange_port: int
    exchange_ca_pem: bytes
    installed: bool = True

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.cluster.helm), *args],
            capture_output=True,
            text=True,
            env=self.cluster.env(),
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def manifest(self) -> list[dict[str, Any]]:
        text = self.helm("get", "manifest", RELEASE, "--namespace", OPERATOR_NAMESPACE).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def uninstall(self) -> None:
        if self.installed:
            self.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait")
            self.installed = False


@pytest.fixture(scope="module")
def api(cluster: ClusterAccess) -> Iterator[client.ApiClient]:
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module", params=["namespaced", "clusterwide"])
def release(
    request: pytest.FixtureRequest,
    cluster: ClusterAccess,
    api: client.ApiClient,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    core = client.CoreV1Api(api)
    suffix = secrets.token_hex(4)
    served = f"e2e-helm-{suffix}"
    outside = f"e2e-outside-{suffix}"
    for name in (served, outside):
        ensure_namespace(core, name)
    target = f"pg-helm-{suffix}"
    exchange_port = _free_port()
    certificate = issue_self_signed(("127.0.0.1",))

    values = {
        "replicas": 2,
        "watchNamespaces": [served] if request.param == "namespaced" else [],
        "peering": {"name": PEERING_NAME},
        "serviceAccount": {"name": SERVICE_ACCOUNT},
        "rbac": {"adminSecretNames": [f"{target}-admin"], "bundleConfigMaps": [BUNDLE_CONFIG_MAP]},
        "operator": {"sweepIntervalSeconds": 2, "orphanMinAgeSeconds": 3, "retryDelaySeconds": 2},
        "exchange": {
            "enabled": True,
            "port": exchange_port,
            "tlsSecretName": EXCHANGE_TLS_SECRET,
        },
    }
    values_file = tmp_path_factory.mktemp("helm") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    state = Release(
        cluster=cluster,
        scope=request.param,
        served_namespace=served,
        outside_namespace=outside,
        target=target,
        exchange_port=exchange_port,
        exchange_ca_pem=certificate.ca_pem,
    )
    # The Pods never run, so there is nothing for --wait to wait for.
    state.helm(
        "install",
        RELEASE,
        str(CHART_DIR),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--values",
        str(values_file),
    )
    try:
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/credentialtargets.credbroker.dev",
            "crd/credentialbindings.credbroker.dev",
            "crd/kopfpeerings.kopf.dev",
        )
        # What cert-manager and a SPIFFE bundle publisher would write.
        core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=EXCHANGE_TLS_SECRET),
                type="kubernetes.io/tls",
                data={
                    "tls.crt": base64.b64encode(certificate.pair.cert_pem).decode(),
                    "tls.key": base64.b64encode(certificate.pair.key_pem).decode(),
                },
            ),
        )
        core.create_namespaced_config_map(
            OPERATOR_NAMESPACE,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=BUNDLE_CONFIG_MAP),
                data={"bundle.spiffe": json.dumps({"keys": []})},
            ),
        )
        install_postgres_target(
            api,
            name=target,
            postgres=postgres,
            allowed_namespaces=[served],
            roles=["orders_rw", "orders_ro"],
        )
        yield state
    finally:
        state.uninstall()
        custom = client.CustomObjectsApi(api)
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, "credentialtargets", target)
        except ApiException as error:
            if error.status != 404:
                raise
        for delete, name in (
            (core.delete_namespaced_secret, EXCHANGE_TLS_SECRET),
            (core.delete_namespaced_config_map, BUNDLE_CONFIG_MAP),
        ):
            try:
                delete(name, OPERATOR_NAMESPACE)
            except ApiException as error:
                if error.status != 404:
                    raise
        for name in (served, outside):
            core.delete_namespace(name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _service_account_kubeconfig(cluster: ClusterAccess, api: client.ApiClient, path: Path) -> Path:
    """Write a kubeconfig that authenticates as the chart's ServiceAccount (TokenRequest)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    response = client.CoreV1Api(api).create_namespaced_service_account_token(
        SERVICE_ACCOUNT, OPERATOR_NAMESPACE, request
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": base64.b64encode(
                        cluster.ca_file.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": response.status.token}}],
        "contexts": [
            {
                "name": SERVICE_ACCOUNT,
                "context": {
                    "cluster": "e2e",
                    "user": SERVICE_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                },
            }
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _operator_args(manifest: list[dict[str, Any]]) -> list[str]:
    """Return the StatefulSet's container arguments after ``run``, as replica 0 would get them."""
    workloads = [doc for doc in manifest if doc["kind"] == "StatefulSet"]
    assert len(workloads) == 1, f"expected one StatefulSet in the release, got {len(workloads)}"
    container = workloads[0]["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    assert args[0] == "run", f"container args must start with 'run', got {args[:1]}"
    kept = [arg for arg in args[1:] if not arg.startswith(DROPPED_FLAGS)]
    return [*(arg.replace("$(POD_INDEX)", "0") for arg in kept), *REPLACEMENT_FLAGS]


@pytest.fixture(scope="module")
def operator(
    cluster: ClusterAccess,
    api: client.ApiClient,
    release: Release,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator-sa")
    kubeconfig = _service_account_kubeconfig(cluster, api, workdir / "kubeconfig")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_path=workdir / "operator.log",
        extra_args=_operator_args(release.manifest()),
    )
    with process:
        yield process


def _read_secret(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _password_roles(postgres: PostgresServer) -> dict[str, Any]:
    """Return credbroker's login roles on the server and their VALID UNTIL."""
    with psycopg.connect(postgres.admin_dsn()) as connection:
        rows = connection.execute(
            "SELECT rolname, rolvaliduntil FROM pg_roles WHERE rolname LIKE 'credbroker\\_%'"
        ).fetchall()
    return {name: valid_until for name, valid_until in rows}


def _issue(api: client.ApiClient, namespace: str, target: str, *, name: str) -> client.V1Secret:
    """Create a ServiceAccount, a binding and a matching pod; return the delivered Secret."""
    core = client.CoreV1Api(api)
    create_service_account(core, namespace=namespace, name="orders")
    body = binding_body(
        name=name,
        namespace=namespace,
        target=target,
        secret_name=f"{name}-db",
        service_accounts=["orders"],
        labels={**LABELS, "binding": name},
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", body
    )
    core.create_namespaced_pod(
        namespace,
        pod_body(name=f"{name}-0", labels={**LABELS, "binding": name}, service_account="orders"),
    )
    return wait_for(
        lambda: _read_secret(core, namespace, f"{name}-db"),
        timeout_seconds=ISSUE_TIMEOUT_SECONDS,
        what=f"Secret {namespace}/{name}-db written by the operator with the chart's RBAC",
    )


def _decoded(secret: client.V1Secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def _denials(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(mark in line for mark in DENIAL_MARKERS)]


def test_story_with_chart_rbac(
    api: client.ApiClient,
    operator: OperatorProcess,
    release: Release,
    postgres: PostgresServer,
) -> None:
    namespace = release.served_namespace
    secret = _issue(api, namespace, release.target, name="orders")
    data = _decoded(secret)

    with psycopg.connect(data["uri"]) as connection:
        user = connection.execute("SELECT current_user").fetchone()
        connection.execute("INSERT INTO orders (item) VALUES ('chart')")
    assert user == (data["username"],)

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", "orders"
    )
    core = client.CoreV1Api(api)
    wait_for(
        lambda: True if _read_secret(core, namespace, "orders-db") is None else None,
        timeout_seconds=30,
        what="the Secret to be deleted on binding delete",
    )
    wait_for(
        lambda: True if data["username"] not in _password_roles(postgres) else None,
        timeout_seconds=30,
        what=f"role {data['username']} to be dropped on binding delete",
    )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(data["uri"], connect_timeout=5).close()

    log = operator.log_text()
    assert _denials(log) == [], "the operator hit RBAC denials with the chart's ServiceAccount"
    assert data["password"] not in log


def test_peering_object_has_replica(
    api: client.ApiClient, operator: OperatorProcess, release: Release
) -> None:
    custom = client.CustomObjectsApi(api)

    def peers() -> dict[str, Any] | None:
        if release.scope == "namespaced":
            peering = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", release.served_namespace, "kopfpeerings", PEERING_NAME
            )
        else:
            peering = custom.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", PEERING_NAME
            )
        return peering.get("status") or None

    status = wait_for(peers, timeout_seconds=30, what="the operator's keep-alive in KopfPeering")
    assert [entry["priority"] for entry in status.values()] == [0]


def _unsigned_token(namespace: str) -> str:
    """Return a JWS-shaped service-account token with a signature that cannot verify."""

    def encode(part: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    header = encode({"alg": "RS256", "kid": "e2e"})
    payload = encode({"sub": f"system:serviceaccount:{namespace}:orders"})
    return f"{header}.{payload}.c2lnbmF0dXJl"


def _post_exchange(release: Release, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST an exchange request with a token that cannot verify; return status and JSON body.

    The endpoint reads the binding after it parses the token and before it
    verifies the signature, so the status shows whether that read succeeded:
    401 for an existing binding, 404 for a missing one, 503 if RBAC denied it.
    """
    context = ssl.create_default_context(cadata=release.exchange_ca_pem.decode())
    request = urllib.request.Request(
        f"https://127.0.0.1:{release.exchange_port}/v1/exchange",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {_unsigned_token(body['namespace'])}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _exchange_listening(release: Release) -> bool | None:
    try:
        with socket.create_connection(("127.0.0.1", release.exchange_port), timeout=1):
            return True
    except OSError:
        return None


def test_exchange_endpoint_with_chart_rbac(
    api: client.ApiClient, operator: OperatorProcess, release: Release
) -> None:
    # The server listens only after start-up read the TLS Secret and listed the
    # bindings' bundle references with the chart's RBAC.
    wait_for(
        lambda: _exchange_listening(release),
        timeout_seconds=30,
        what=f"the exchange endpoint on 127.0.0.1:{release.exchange_port}",
    )
    namespace = release.served_namespace
    _issue(api, namespace, release.target, name="exchange-probe")

    status, body = _post_exchange(release, {"namespace": namespace, "binding": "exchange-probe"})
    assert status == 401, body
    assert body["error"] != "BindingNotFound"
    status, body = _post_exchange(release, {"namespace": namespace, "binding": "missing"})
    assert status == 404, body
    assert body["error"] == "BindingNotFound"

    # Delete the binding while this operator runs, so that its finalizer does
    # not keep the namespace in Terminating for the next release's operator.
    custom = client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", "exchange-probe"
    )

    def binding_gone() -> bool | None:
        try:
            custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "credentialbindings", "exchange-probe"
            )
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return None

    wait_for(binding_gone, timeout_seconds=30, what="binding exchange-probe to be deleted")

    log = operator.log_text()
    assert _denials(log) == [], "the exchange endpoint hit RBAC denials with the chart's RBAC"


def _allowed(
    api: client.ApiClient,
    *,
    verb: str,
    resource: str,
    namespace: str | None,
    group: str = "",
    subresource: str | None = None,
    name: str | None = None,
) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{OPERATOR_NAMESPACE}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                resource=resource,
                group=group,
                namespace=namespace,
                subresource=subresource,
                name=name,
            ),
        )
    )
    result = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(result.status.allowed)


def test_service_account_scope(api: client.ApiClient, release: Release) -> None:
    served = release.served_namespace
    outside = release.outside_namespace
    admin_secret = f"{release.target}-admin"
    rbac_group = {"group": "rbac.authorization.k8s.io"}
    token = {"subresource": "token"}
    # (verb, resource, namespace, extra attributes, allowed namespaced, allowed cluster-wide)
    cases: list[tuple[str, str, str | None, dict[str, str], bool, bool]] = [
        # What the operator needs, so that the check itself can fail.
        ("get", "secrets", served, {}, True, True),
        ("create", "serviceaccounts", served, token, True, True),
        ("create", "tokenreviews", None, {"group": "authentication.k8s.io"}, True, True),
        ("get", "secrets", OPERATOR_NAMESPACE, {"name": admin_secret}, True, True),
        # The exchange endpoint: its TLS Secret and the bundle ConfigMap in the
        # release namespace, and pods and bindings where bindings are served.
        ("get", "secrets", OPERATOR_NAMESPACE, {"name": EXCHANGE_TLS_SECRET}, True, True),
        ("get", "configmaps", OPERATOR_NAMESPACE, {"name": BUNDLE_CONFIG_MAP}, True, True),
        ("get", "pods", served, {}, True, True),
        ("get", "credentialbindings", served, {"group": GROUP}, True, True),
        ("list", "credentialbindings", served, {"group": GROUP}, True, True),
        ("list", "credentialbindings", None, {"group": GROUP}, False, True),
        # The same names elsewhere, and other ConfigMaps next to the bundle.
        ("get", "secrets", outside, {"name": EXCHANGE_TLS_SECRET}, False, True),
        ("get", "configmaps", outside, {"name": BUNDLE_CONFIG_MAP}, False, False),
        ("get", "configmaps", "kube-system", {"name": BUNDLE_CONFIG_MAP}, False, False),
        ("get", "configmaps", OPERATOR_NAMESPACE, {"name": "other-config"}, False, False),
        ("list", "configmaps", OPERATOR_NAMESPACE, {}, False, False),
        ("get", "pods", outside, {}, False, True),
        ("get", "credentialbindings", outside, {"group": GROUP}, False, True),
        # Secrets outside the served namespaces, and other Secrets next to the
        # admin Secret. Cluster-wide, every namespace is served.
        ("get", "secrets", "kube-system", {}, False, True),
        ("list", "secrets", "kube-system", {}, False, True),
        ("get", "secrets", outside, {}, False, True),
        ("list", "secrets", None, {}, False, True),
        ("get", "secrets", OPERATOR_NAMESPACE, {"name": "some-other-secret"}, False, True),
        ("create", "secrets", OPERATOR_NAMESPACE, {}, False, True),
        # Tokens only for pods of the served namespaces.
        ("create", "serviceaccounts", outside, token, False, True),
        ("create", "serviceaccounts", "kube-system", token, False, True),
        ("list", "pods", outside, {}, False, True),
        ("list", "credentialbindings", outside, {"group": GROUP}, False, True),
        ("watch", "credentialbindings", outside, {"group": GROUP}, False, True),
        # In no scope: workloads, RBAC changes, impersonation, plain tokens.
        ("create", "pods", served, {}, False, False),
        ("create", "serviceaccounts", served, {}, False, False),
        ("create", "rolebindings", served, rbac_group, False, False),
        ("create", "clusterrolebindings", None, rbac_group, False, False),
        ("escalate", "roles", served, rbac_group, False, False),
        ("bind", "clusterroles", None, rbac_group, False, False),
        ("impersonate", "users", None, {}, False, False),
        ("impersonate", "serviceaccounts", served, {}, False, False),
        ("impersonate", "groups", None, {}, False, False),
        (
            "create",
            "certificatesigningrequests",
            None,
            {"group": "certificates.k8s.io"},
            False,
            False,
        ),
        ("delete", "credentialtargets", None, {"group": GROUP}, False, False),
        ("update", "configmaps", OPERATOR_NAMESPACE, {}, False, False),
    ]
    wrong = []
    for verb, resource, namespace, extra, namespaced, clusterwide in cases:
        expected = namespaced if release.scope == "namespaced" else clusterwide
        allowed = _allowed(api, verb=verb, resource=resource, namespace=namespace, **extra)
        if allowed != expected:
            wrong.append((verb, resource, namespace, extra, f"allowed={allowed}"))
    assert wrong == []


def test_pod_meets_restricted(api: client.ApiClient, release: Release) -> None:
    # PodSecurity admission checks the chart's pod template in a namespace
    # that enforces the restricted level; a dry run creates nothing.
    core = client.CoreV1Api(api)
    namespace = f"{release.served_namespace}-restricted"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace,
                labels={"pod-security.kubernetes.io/enforce": "restricted"},
            )
        )
    )
    try:
        workload = next(doc for doc in release.manifest() if doc["kind"] == "StatefulSet")
        template = workload["spec"]["template"]
        # The chart's ServiceAccount exists only in the release namespace.
        pod_spec = {**template["spec"], "serviceAccountName": "default"}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "credbroker-restricted", "labels": template["metadata"]["labels"]},
            "spec": pod_spec,
        }
        created = core.create_namespaced_pod(namespace, pod, dry_run="All")
        assert created.spec.containers[0].security_context.run_as_non_root is True
    finally:
        core.delete_namespace(namespace)


def test_uninstall_keeps_crds_and_finalizer(
    api: client.ApiClient,
    operator: OperatorProcess,
    release: Release,
    postgres: PostgresServer,
) -> None:
    namespace = release.served_namespace
    secret = _issue(api, namespace, release.target, name="leftover")
    username = _decoded(secret)["username"]

    # The unsupported order: the operator goes away while a binding exists.
    operator.stop()
    release.uninstall()

    rbac = client.RbacAuthorizationV1Api(api)
    with pytest.raises(ApiException) as missing:
        rbac.read_cluster_role(RELEASE)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as missing_role:
        rbac.read_namespaced_role(f"{RELEASE}-bindings", namespace)
    assert missing_role.value.status == 404

    extensions = client.ApiextensionsV1Api(api)
    for crd in (
        "credentialbindings.credbroker.dev",
        "credentialtargets.credbroker.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    ):
        assert extensions.read_custom_resource_definition(crd).metadata.name == crd

    custom = client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", "leftover"
    )
    binding = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "credentialbindings", "leftover"
    )
    assert binding["metadata"].get("deletionTimestamp")
    assert FINALIZER in binding["metadata"]["finalizers"]

    # Not revoked: the login still works and expires on its own (VALID UNTIL).
    roles = _password_roles(postgres)
    assert username in roles
    assert roles[username] is not None
    with psycopg.connect(_decoded(secret)["uri"]) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)

    # The manual way out that docs/helm.md describes: remove the finalizer.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "credentialbindings",
        "leftover",
        {"metadata": {"finalizers": None}},
    )

    def binding_gone() -> bool | None:
        try:
            custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "credentialbindings", "leftover"
            )
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return None

    wait_for(
        binding_gone, timeout_seconds=30, what="the binding to go once its finalizer is removed"
    )
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(username)))
