"""Acceptance tests for the local control plane that the e2e suite, demo and benchmarks use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

import localcluster
from localcluster import ClusterAccess, LocalCluster, binaries, wait_until

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TOKEN_AUDIENCE = "credbroker-e2e"
EVENTUAL_TIMEOUT_SECONDS = 60.0

CRD_GROUP = "e2e.credbroker.dev"
CRD_PLURAL = "widgets"
CRD_MANIFEST = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {CRD_PLURAL}.{CRD_GROUP}
spec:
  group: {CRD_GROUP}
  scope: Namespaced
  names:
    plural: {CRD_PLURAL}
    singular: widget
    kind: Widget
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size:
                  type: integer
                  minimum: 1
"""

local_only = pytest.mark.skipif(
    bool(os.environ.get("CREDBROKER_E2E_KUBECONFIG")),
    reason="tests the local launcher; unset CREDBROKER_E2E_KUBECONFIG to run it",
)


def _pending_pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    # Nothing pulls the image: there is no kubelet, so the Pod stays Pending.
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image="registry.invalid/app:1")]
        ),
    )
    return core.create_namespaced_pod(namespace, pod)


def _request_token(
    core: client.CoreV1Api,
    *,
    namespace: str,
    service_account: str,
    audiences: list[str],
    bound_pod: client.V1Pod | None = None,
) -> str:
    # An empty audience list requests the apiserver's own audience.
    bound = None
    if bound_pod is not None:
        bound = client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=bound_pod.metadata.name, uid=bound_pod.metadata.uid
        )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=audiences, expiration_seconds=600, bound_object_ref=bound
        )
    )
    response = core.create_namespaced_service_account_token(service_account, namespace, request)
    token: str = response.status.token
    return token


def _review(api_client: client.ApiClient, token: str) -> client.V1TokenReviewStatus:
    review = client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=[TOKEN_AUDIENCE])
    )
    return client.AuthenticationV1Api(api_client).create_token_review(review).status


def _component_pids_running(pids: list[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":
            running.append(pid)
    return running


def test_controlplane_ready(cluster: ClusterAccess) -> None:
    readyz = cluster.kubectl("get", "--raw", "/readyz")
    assert readyz.stdout.strip() == "ok"

    assert cluster.server.startswith("https://")
    assert cluster.ca_file.is_file()
    assert cluster.kubeconfig.is_file()

    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        assert core.read_namespaced_service_account("default", "default").metadata.name == "default"
        root_ca = wait_until(
            lambda: _read_or_none(core.read_namespaced_config_map, "kube-root-ca.crt", "default"),
            timeout_seconds=EVENTUAL_TIMEOUT_SECONDS,
            description="root-ca-cert-publisher to create default/kube-root-ca.crt",
        )
        assert "ca.crt" in root_ca.data


@local_only
def test_controlplane_version_matches_go_mod(cluster: ClusterAccess) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == binaries.kubernetes_version()


def _read_or_none(read: Any, *args: str) -> Any:
    try:
        return read(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


@local_only
def test_second_start_reuses_binary(
    cluster: ClusterAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(cluster, LocalCluster)

    def fail_on_go(args: list[str], **_: object) -> None:
        raise AssertionError(f"go {' '.join(args)} ran, but the cached binary should be reused")

    monkeypatch.setattr(binaries, "_run_go", fail_on_go)

    with localcluster.start_cluster() as second:
        assert second.binary_from_cache
        assert second.helm_from_cache
        assert second.binary == cluster.binary
        assert second.server != cluster.server
        assert second.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
        pids = [component.pid for component in second.components]
        state_dir = second.state_dir

    assert len(pids) == 3
    assert _component_pids_running(pids) == []
    assert not state_dir.exists()


_LAUNCHER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import localcluster
    cluster = localcluster.LocalCluster.start()
    print(json.dumps({"pids": [c.pid for c in cluster.components],
                      "state_dir": str(cluster.state_dir)}), flush=True)
    time.sleep(600)
    """
)


@local_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_launcher_leaves_no_process(cluster: ClusterAccess, signum: signal.Signals) -> None:
    assert isinstance(cluster, LocalCluster)
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(E2E_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        started = json.loads(launcher.stdout.readline())
        pids: list[int] = started["pids"]
        assert len(_component_pids_running(pids)) == 3

        launcher.send_signal(signum)
        launcher.wait(timeout=60)
        wait_until(
            lambda: not _component_pids_running(pids),
            timeout_seconds=30,
            description=f"components {pids} to exit after the launcher got {signum.name}",
        )
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()

    state_dir = Path(started["state_dir"])
    if signum == signal.SIGKILL:
        # Nothing ran in the launcher to clean up, so the next start does it.
        assert state_dir.exists()
        localcluster.remove_orphaned_clusters()
    assert not state_dir.exists()


def _run_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localcluster", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(E2E_DIR)},
        timeout=300,
        check=False,
    )


def _recorded_pids(state_dir: Path) -> dict[str, int]:
    state = json.loads((state_dir / "cluster.json").read_text())
    return {component["name"]: component["pid"] for component in state["components"]}


@local_only
def test_cli_up_down(cluster: ClusterAccess, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    all_pids: set[int] = set()

    up = _run_cli(state_dir, "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}"
    first_pids = _recorded_pids(state_dir)
    all_pids.update(first_pids.values())

    try:
        again = _run_cli(state_dir, "up")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert _recorded_pids(state_dir) == first_pids

        namespaces = _run_cli(state_dir, "kubectl", "get", "namespace", "default", "-o", "name")
        assert namespaces.stdout.strip() == "namespace/default", namespaces.stderr

        # A component that died leaves stale state: the next `up` replaces the cluster.
        os.kill(first_pids["kube-apiserver"], signal.SIGKILL)
        replaced = _run_cli(state_dir, "up")
        assert replaced.returncode == 0, replaced.stderr
        assert "stale cluster state" in replaced.stderr
        second_pids = _recorded_pids(state_dir)
        all_pids.update(second_pids.values())
        assert set(second_pids.values()).isdisjoint(first_pids.values())
        assert _component_pids_running(list(first_pids.values())) == []
    finally:
        down = _run_cli(state_dir, "down")

    assert down.returncode == 0, down.stderr
    assert _component_pids_running(sorted(all_pids)) == []
    assert not (state_dir / "cluster.json").exists()


def test_crd_apply_create_read_watch(cluster: ClusterAccess, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD_MANIFEST)
    try:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{CRD_PLURAL}.{CRD_GROUP}", "--timeout=60s"
        )
        with cluster.api_client() as api_client:
            custom = client.CustomObjectsApi(api_client)

            def widget(name: str, size: int) -> dict[str, Any]:
                return {
                    "apiVersion": f"{CRD_GROUP}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name},
                    "spec": {"size": size},
                }

            args = (CRD_GROUP, "v1", namespace, CRD_PLURAL)
            custom.create_namespaced_custom_object(*args, widget("first", 1))
            read = custom.get_namespaced_custom_object(*args, "first")
            assert read["spec"] == {"size": 1}

            with pytest.raises(ApiException) as invalid:
                custom.create_namespaced_custom_object(*args, widget("invalid", 0))
            assert invalid.value.status == 422

            listing = custom.list_namespaced_custom_object(*args)
            assert [item["metadata"]["name"] for item in listing["items"]] == ["first"]
            custom.create_namespaced_custom_object(*args, widget("second", 2))

            events = watch.Watch().stream(
                custom.list_namespaced_custom_object,
                *args,
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=30,
            )
            first_event = next(events)
            assert first_event["type"] == "ADDED"
            assert first_event["object"]["metadata"]["name"] == "second"
            assert first_event["object"]["spec"] == {"size": 2}
    finally:
        cluster.kubectl("delete", "crd", f"{CRD_PLURAL}.{CRD_GROUP}", "--wait=false")


def test_pod_bound_token(cluster: ClusterAccess, namespace: str) -> None:
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        pod = _pending_pod(core, namespace, "workload")
        token = _request_token(
            core,
            namespace=namespace,
            service_account="default",
            audiences=[TOKEN_AUDIENCE],
            bound_pod=pod,
        )

        discovery = json.loads(
            cluster.kubectl("get", "--raw", "/.well-known/openid-configuration").stdout
        )
        assert discovery["issuer"] == cluster.issuer
        jwks = json.loads(cluster.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
        key_id = jwt.get_unverified_header(token)["kid"]
        signing_key = jwt.PyJWKSet.from_dict(jwks)[key_id]
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=[signing_key.algorithm_name],
            audience=TOKEN_AUDIENCE,
            issuer=cluster.issuer,
        )
        assert claims["sub"] == f"system:serviceaccount:{namespace}:default"
        kubernetes_claim = claims["kubernetes.io"]
        assert kubernetes_claim["namespace"] == namespace
        assert kubernetes_claim["pod"] == {"name": "workload", "uid": pod.metadata.uid}
        assert kubernetes_claim["serviceaccount"]["name"] == "default"

        review = _review(api_client, token)
        assert review.authenticated is True
        assert review.user.username == f"system:serviceaccount:{namespace}:default"
        assert review.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]

        core.delete_namespaced_pod("workload", namespace)
        # The apiserver caches a successful authentication for up to 10 s.
        wait_until(
            lambda: _review(api_client, token).authenticated is not True,
            timeout_seconds=EVENTUAL_TIMEOUT_SECONDS,
            description="TokenReview to reject the token of the deleted pod",
        )
        rejected = _review(api_client, token)
        assert rejected.authenticated is not True
        assert rejected.error


def test_garbage_collector_deletes_dependent(cluster: ClusterAccess, namespace: str) -> None:
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        owner = core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
        )
        reference = client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference]),
                string_data={"key": "value"},
            ),
        )
        core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="unrelated"))
        )

        core.delete_namespaced_config_map("owner", namespace)
        wait_until(
            lambda: _read_or_none(core.read_namespaced_secret, "dependent", namespace) is None,
            timeout_seconds=EVENTUAL_TIMEOUT_SECONDS,
            description="the garbage collector to delete the Secret owned by the deleted ConfigMap",
        )
        assert _read_or_none(core.read_namespaced_secret, "unrelated", namespace) is not None


def test_rbac_denies_until_rolebinding(cluster: ClusterAccess, namespace: str) -> None:
    with cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
        )
        # A token for the apiserver itself, so that it authenticates API calls.
        token = _request_token(core, namespace=namespace, service_account="reader", audiences=[])

        configuration = client.Configuration()
        configuration.host = cluster.server
        configuration.ssl_ca_cert = str(cluster.ca_file)
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        with client.ApiClient(configuration) as reader_client:
            reader = client.CoreV1Api(reader_client)
            with pytest.raises(ApiException) as denied:
                reader.list_namespaced_config_map(namespace)
            assert denied.value.status == 403

            rbac = client.RbacAuthorizationV1Api(api_client)
            rbac.create_namespaced_role(
                namespace,
                client.V1Role(
                    metadata=client.V1ObjectMeta(name="configmap-reader"),
                    rules=[
                        client.V1PolicyRule(
                            api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                        )
                    ],
                ),
            )
            rbac.create_namespaced_role_binding(
                namespace,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name="configmap-reader"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
                    ),
                    subjects=[
                        client.RbacV1Subject(
                            kind="ServiceAccount", name="reader", namespace=namespace
                        )
                    ],
                ),
            )

            def allowed() -> bool:
                try:
                    reader.list_namespaced_config_map(namespace)
                except ApiException as error:
                    if error.status == 403:
                        return False
                    raise
                return True

            wait_until(
                allowed,
                timeout_seconds=EVENTUAL_TIMEOUT_SECONDS,
                description="the RoleBinding to allow listing ConfigMaps",
            )
            with pytest.raises(ApiException) as still_denied:
                reader.list_namespaced_secret(namespace)
            assert still_denied.value.status == 403


def _write_tiny_chart(directory: Path) -> Path:
    chart = directory / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-greeting
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )
    return chart


def test_helm_version_template_install(
    cluster: ClusterAccess, namespace: str, tmp_path: Path
) -> None:
    env = {
        **cluster.env(),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def helm(*args: str) -> str:
        result = subprocess.run(
            [str(cluster.helm), *args], capture_output=True, text=True, env=env, check=False
        )
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    assert helm("version", "--template", "{{ .Version }}").strip() == binaries.HELM_VERSION

    chart = _write_tiny_chart(tmp_path)
    rendered = yaml.safe_load(helm("template", "demo", str(chart), "--set", "greeting=hi"))
    assert rendered["metadata"]["name"] == "demo-greeting"
    assert rendered["data"] == {"greeting": "hi"}

    # cluster.env() sets KUBECONFIG, so helm reaches the cluster under test.
    helm("install", "demo", str(chart), "--namespace", namespace)
    installed = cluster.kubectl(
        "get",
        "configmap",
        "demo-greeting",
        "--namespace",
        namespace,
        "-o",
        "jsonpath={.data.greeting}",
    )
    assert installed.stdout == "hello"
