"""The Helm chart in charts/credbroker: lint, rendered objects, schema errors and CRD copies.

Every test runs the pinned helm binary (``localcluster.ensure_helm``, built
with Go on first use) and parses what ``helm template`` prints; no cluster
is needed.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from credbroker.cli import build_parser, settings_from_args

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "charts" / "credbroker"
TOP_LEVEL_CRDS = REPO_ROOT / "crds"
PEERING_CRDS_FILE = "kopf-peerings.yaml"
RELEASE = "cb"
NAMESPACE = "credbroker"
FULLNAME = "cb-credbroker"

SECRET_VERBS = {"get", "list", "create", "update", "patch", "delete"}
# Verbs that let a holder gain permissions it was not given.
ESCALATING_VERBS = {"*", "escalate", "bind", "impersonate"}


@cache
def helm_binary() -> Path:
    from localcluster import BuildError, ensure_helm

    try:
        return ensure_helm().path
    except BuildError as error:
        pytest.fail(
            f"helm is missing and could not be built ({error}); install Go 1.26 or newer "
            "so that e2e/localcluster can build helm v3.21.4, or see e2e/README.md"
        )


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=False)


def render(
    *set_args: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[dict[str, Any]]:
    """Return the objects of ``helm template`` with ``--set`` arguments and optional values."""
    command = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
    for item in set_args:
        command += ["--set", item]
    if values is not None:
        assert tmp is not None
        values_file = tmp / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    result = run_helm(*command)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects_of(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc for doc in objects_of(docs, kind) if name is None or doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container["env"]}


def rules_for(role: dict[str, Any], resource: str) -> list[dict[str, Any]]:
    return [rule for rule in role["rules"] if resource in rule.get("resources", [])]


def verbs_for(role: dict[str, Any], resource: str) -> set[str]:
    return {verb for rule in rules_for(role, resource) for verb in rule["verbs"]}


def parse_run_args(container: dict[str, Any], *, pod_index: str = "0") -> Any:
    """Parse the container's arguments with the operator's own parser, as a pod would run them."""
    args = [arg.replace("$(POD_INDEX)", pod_index) for arg in container["args"]]
    try:
        return build_parser().parse_args(args)
    except SystemExit as error:
        pytest.fail(f"`credbroker {' '.join(args)}` is rejected by the operator's parser: {error}")


def test_lint_passes() -> None:
    result = run_helm("lint", "--strict", str(CHART_DIR))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_namespaced_peering() -> None:
    result = run_helm(
        "lint",
        "--strict",
        str(CHART_DIR),
        "--set",
        "replicas=3",
        "--set",
        "watchNamespaces={shop,billing}",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_deployment() -> None:
    docs = render()
    deployment = one(docs, "Deployment", FULLNAME)
    assert objects_of(docs, "StatefulSet") == []
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}

    container = container_of(deployment)
    assert container["image"] == "credbroker:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}

    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}

    env = env_of(container)
    assert env["CREDBROKER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )
    assert "POD_INDEX" not in env


def test_defaults_args() -> None:
    container = container_of(one(render(), "Deployment"))
    args = container["args"]
    assert args[0] == "run"
    assert "--all-namespaces" in args
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    assert "--metrics-port=9090" in args
    assert "--audience=credbroker.dev" in args
    assert not any(arg.startswith(("--peering", "--priority", "--namespace=")) for arg in args)


def test_args_parse_as_defaults() -> None:
    container = container_of(one(render(), "Deployment"))
    settings = settings_from_args(parse_run_args(container))
    assert settings.clusterwide is True
    assert settings.audience == "credbroker.dev"
    assert settings.sweep_interval_seconds == 60
    assert settings.orphan_min_age_seconds == 120
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert settings.peering_name is None


def test_args_parse_with_values(tmp_path: Path) -> None:
    values = {
        "replicas": 2,
        "watchNamespaces": ["shop", "billing"],
        "operator": {
            "audience": "db.example.com",
            "issuer": "https://issuer.example.com",
            "sweepIntervalSeconds": 15,
            "orphanMinAgeSeconds": 30.5,
            "retryDelaySeconds": 3,
            "podLabelSelector": "credbroker.dev/enabled in (true,yes)",
            "apiThreads": 8,
            "watchTimeoutSeconds": 120,
            "logFormat": "plain",
            "verbose": True,
        },
    }
    container = container_of(one(render(values=values, tmp=tmp_path), "StatefulSet"))
    settings = settings_from_args(parse_run_args(container, pod_index="1"))
    assert settings.watch_namespaces == ("shop", "billing")
    assert settings.audience == "db.example.com"
    assert settings.issuer == "https://issuer.example.com"
    assert settings.sweep_interval_seconds == 15
    assert settings.orphan_min_age_seconds == 30.5
    assert settings.retry_delay_seconds == 3
    assert settings.pod_label_selector == "credbroker.dev/enabled in (true,yes)"
    assert settings.api_threads == 8
    assert settings.watch_server_timeout_seconds == 120
    assert settings.peering_name == FULLNAME
    assert settings.priority == 1


def test_defaults_rbac_clusterwide() -> None:
    docs = render()
    cluster = one(docs, "ClusterRole", FULLNAME)
    bindings = one(docs, "ClusterRole", f"{FULLNAME}-bindings")
    operator = one(docs, "Role", f"{FULLNAME}-operator")

    assert verbs_for(cluster, "credentialtargets") == {"get", "list", "watch", "patch"}
    assert verbs_for(cluster, "credentialtargets/status") == {"patch"}
    assert verbs_for(cluster, "tokenreviews") == {"create"}
    assert verbs_for(cluster, "customresourcedefinitions") == {"list", "watch"}
    assert rules_for(cluster, "namespaces") == []
    assert rules_for(cluster, "secrets") == []

    assert verbs_for(bindings, "credentialbindings") == {"list", "watch", "patch"}
    assert verbs_for(bindings, "credentialbindings/status") == {"patch"}
    assert verbs_for(bindings, "credentialbindings/finalizers") == {"update"}
    assert verbs_for(bindings, "pods") == {"list", "watch"}
    assert verbs_for(bindings, "serviceaccounts/token") == {"create"}
    assert verbs_for(bindings, "secrets") == SECRET_VERBS
    assert verbs_for(bindings, "events") == {"create"}

    assert operator["metadata"]["namespace"] == NAMESPACE
    assert verbs_for(operator, "secrets") == {"get"}
    assert "resourceNames" not in rules_for(operator, "secrets")[0]

    binding = one(docs, "ClusterRoleBinding", f"{FULLNAME}-bindings")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert objects_of(docs, "RoleBinding")[0]["roleRef"]["name"] == f"{FULLNAME}-operator"


def test_rbac_no_wildcards() -> None:
    for set_args in ((), ("replicas=3",), ("replicas=2", "watchNamespaces={shop}")):
        docs = render(*set_args)
        roles = objects_of(docs, "ClusterRole") + objects_of(docs, "Role")
        for role in roles:
            for rule in role["rules"]:
                name = role["metadata"]["name"]
                assert not ESCALATING_VERBS & set(rule["verbs"]), f"{name}: {rule}"
                assert "*" not in rule.get("resources", []), f"{name}: {rule}"
                assert "*" not in rule.get("apiGroups", []), f"{name}: {rule}"


def test_namespaced_scope() -> None:
    docs = render("watchNamespaces={shop,billing}")
    args = container_of(one(docs, "Deployment"))["args"]
    assert "--namespace=shop" in args
    assert "--namespace=billing" in args
    assert "--all-namespaces" not in args

    assert [role["metadata"]["name"] for role in objects_of(docs, "ClusterRole")] == [FULLNAME]
    cluster = one(docs, "ClusterRole", FULLNAME)
    for resource in ("secrets", "pods", "serviceaccounts/token", "credentialbindings", "events"):
        assert rules_for(cluster, resource) == [], resource
    assert verbs_for(cluster, "namespaces") == {"list", "watch"}

    roles = {
        role["metadata"]["namespace"]: role
        for role in objects_of(docs, "Role")
        if role["metadata"]["name"] == f"{FULLNAME}-bindings"
    }
    assert set(roles) == {"shop", "billing"}
    for role in roles.values():
        assert verbs_for(role, "secrets") == SECRET_VERBS
        assert verbs_for(role, "serviceaccounts/token") == {"create"}
        assert verbs_for(role, "pods") == {"list", "watch"}
        assert rules_for(role, "kopfpeerings") == []

    role_bindings = {
        (binding["metadata"]["namespace"], binding["roleRef"]["name"])
        for binding in objects_of(docs, "RoleBinding")
    }
    assert role_bindings == {
        ("shop", f"{FULLNAME}-bindings"),
        ("billing", f"{FULLNAME}-bindings"),
        (NAMESPACE, f"{FULLNAME}-operator"),
    }
    assert objects_of(docs, "ClusterRoleBinding")[0]["roleRef"]["name"] == FULLNAME
    assert len(objects_of(docs, "ClusterRoleBinding")) == 1


def test_peering_clusterwide() -> None:
    docs = render("replicas=3")
    assert objects_of(docs, "Deployment") == []
    statefulset = one(docs, "StatefulSet", FULLNAME)
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == FULLNAME
    container = container_of(statefulset)
    assert f"--peering={FULLNAME}" in container["args"]
    assert "--priority=$(POD_INDEX)" in container["args"]
    pod_index = env_of(container)["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod_index == "metadata.labels['apps.kubernetes.io/pod-index']"

    peering = one(docs, "ClusterKopfPeering", FULLNAME)
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert objects_of(docs, "KopfPeering") == []
    cluster = one(docs, "ClusterRole", FULLNAME)
    peering_rules = rules_for(cluster, "clusterkopfpeerings")
    assert {verb for rule in peering_rules for verb in rule["verbs"]} == {"list", "watch", "patch"}
    patch_rule = next(rule for rule in peering_rules if "patch" in rule["verbs"])
    assert patch_rule["resourceNames"] == [FULLNAME]


def test_peering_namespaced() -> None:
    docs = render("replicas=2", "watchNamespaces={shop,billing}", "peering.name=orders-peering")
    peerings = objects_of(docs, "KopfPeering")
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings} == {
        ("shop", "orders-peering"),
        ("billing", "orders-peering"),
    }
    assert objects_of(docs, "ClusterKopfPeering") == []
    assert rules_for(one(docs, "ClusterRole", FULLNAME), "clusterkopfpeerings") == []
    role = one(
        [doc for doc in docs if doc["metadata"].get("namespace") == "shop"],
        "Role",
        f"{FULLNAME}-bindings",
    )
    patch_rule = next(rule for rule in rules_for(role, "kopfpeerings") if "patch" in rule["verbs"])
    assert patch_rule["resourceNames"] == ["orders-peering"]


def test_metrics_service_and_monitor() -> None:
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.interval=15s")
    service = one(docs, "Service", FULLNAME)
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert objects_of(render(), "ServiceMonitor") == []


def test_metrics_disabled() -> None:
    docs = render("metrics.enabled=false")
    container = container_of(one(docs, "Deployment"))
    assert "--metrics-port=0" in container["args"]
    assert settings_from_args(parse_run_args(container)).metrics_port is None
    assert objects_of(docs, "Service") == []
    ports = [port["name"] for port in container["ports"]]
    assert ports == ["health"]


def test_pdb_selects_pods() -> None:
    docs = render()
    pdb = one(docs, "PodDisruptionBudget", FULLNAME)
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    for key, value in pdb["spec"]["selector"]["matchLabels"].items():
        assert labels[key] == value
    assert objects_of(render("podDisruptionBudget.enabled=false"), "PodDisruptionBudget") == []


def test_custom_resources_and_placement(tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example.com/credbroker", "tag": "1.2.3"},
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "rbac": {"adminSecretNames": ["orders-postgres-admin"]},
    }
    docs = render(values=values, tmp=tmp_path)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert container["image"] == "registry.example.com/credbroker:1.2.3"
    assert container["resources"] == values["resources"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    admin = rules_for(one(docs, "Role", f"{FULLNAME}-operator"), "secrets")[0]
    assert admin["resourceNames"] == ["orders-postgres-admin"]


EXCHANGE_ON = ("exchange.enabled=true", "exchange.tlsSecretName=cb-exchange-tls")


def test_exchange_disabled_by_default() -> None:
    docs = render()
    container = container_of(one(docs, "Deployment"))
    assert not any(arg.startswith("--exchange-") for arg in container["args"])
    assert "exchange" not in {port["name"] for port in container["ports"]}
    service_names = {doc["metadata"]["name"] for doc in objects_of(docs, "Service")}
    assert f"{FULLNAME}-exchange" not in service_names
    operator = one(docs, "Role", f"{FULLNAME}-operator")
    assert rules_for(operator, "configmaps") == []
    bindings = one(docs, "ClusterRole", f"{FULLNAME}-bindings")
    assert "get" not in verbs_for(bindings, "pods")
    assert "get" not in verbs_for(bindings, "credentialbindings")


def test_exchange_args_and_port(tmp_path: Path) -> None:
    # A values file, because --set turns 0.5 into a string, which the schema rejects.
    values = {
        "exchange": {
            "enabled": True,
            "tlsSecretName": "cb-exchange-tls",
            "port": 9443,
            "burst": 5,
            "rate": 0.5,
        }
    }
    docs = render(values=values, tmp=tmp_path)
    container = container_of(one(docs, "Deployment"))
    ports = {port["name"]: port for port in container["ports"]}
    assert ports["exchange"]["containerPort"] == 9443
    assert ports["exchange"]["protocol"] == "TCP"

    settings = settings_from_args(parse_run_args(container))
    assert settings.exchange_port == 9443
    assert settings.exchange_tls_secret == "cb-exchange-tls"
    assert settings.exchange_burst == 5
    assert settings.exchange_refill_per_second == 0.5


def test_exchange_service() -> None:
    docs = render(
        *EXCHANGE_ON,
        "exchange.service.type=LoadBalancer",
        "exchange.service.annotations.example\\.com/scheme=internal",
    )
    service = one(docs, "Service", f"{FULLNAME}-exchange")
    assert service["metadata"]["namespace"] == NAMESPACE
    assert service["metadata"]["annotations"] == {"example.com/scheme": "internal"}
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 8443, "targetPort": "exchange", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"]
    for key, value in service["spec"]["selector"].items():
        assert pod_labels[key] == value, key
    assert objects_of(docs, "Certificate") == []


def test_exchange_service_selects_statefulset() -> None:
    docs = render(*EXCHANGE_ON, "replicas=3")
    service = one(docs, "Service", f"{FULLNAME}-exchange")
    statefulset = one(docs, "StatefulSet")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    for key, value in service["spec"]["selector"].items():
        assert pod_labels[key] == value, key
    container = container_of(statefulset)
    assert "--exchange-port=8443" in container["args"]


def test_exchange_rbac_clusterwide() -> None:
    docs = render(*EXCHANGE_ON)
    bindings = one(docs, "ClusterRole", f"{FULLNAME}-bindings")
    assert verbs_for(bindings, "credentialbindings") == {"get", "list", "watch", "patch"}
    assert verbs_for(bindings, "pods") == {"get", "list", "watch"}
    assert verbs_for(bindings, "secrets") == SECRET_VERBS

    cluster = one(docs, "ClusterRole", FULLNAME)
    assert verbs_for(cluster, "tokenreviews") == {"create"}
    # Cluster-wide, the -bindings ClusterRole already lists bindings everywhere.
    assert rules_for(cluster, "credentialbindings") == []

    operator = one(docs, "Role", f"{FULLNAME}-operator")
    tls_rules = [
        rule
        for rule in rules_for(operator, "secrets")
        if rule.get("resourceNames") == ["cb-exchange-tls"]
    ]
    assert len(tls_rules) == 1
    assert tls_rules[0]["verbs"] == ["get"]
    configmap_rules = rules_for(operator, "configmaps")
    assert len(configmap_rules) == 1
    assert configmap_rules[0]["verbs"] == ["get"]
    # Bundle names come from bindings created later, so the default allows every name.
    assert "resourceNames" not in configmap_rules[0]


def test_exchange_rbac_namespaced(tmp_path: Path) -> None:
    values = {
        "watchNamespaces": ["shop", "billing"],
        "exchange": {"enabled": True, "tlsSecretName": "cb-exchange-tls"},
        "rbac": {
            "adminSecretNames": ["orders-admin"],
            "bundleConfigMaps": ["example-org-bundle"],
            "bundleSecrets": ["partner-bundle"],
        },
    }
    docs = render(values=values, tmp=tmp_path)
    for namespace in ("shop", "billing"):
        role = next(
            doc
            for doc in objects_of(docs, "Role")
            if doc["metadata"]["name"] == f"{FULLNAME}-bindings"
            and doc["metadata"]["namespace"] == namespace
        )
        assert verbs_for(role, "credentialbindings") == {"get", "list", "watch", "patch"}
        assert verbs_for(role, "pods") == {"get", "list", "watch"}

    # list_bundle_sources lists bindings only in the served namespaces.
    cluster = one(docs, "ClusterRole", FULLNAME)
    assert rules_for(cluster, "credentialbindings") == []
    assert rules_for(cluster, "pods") == []
    assert rules_for(cluster, "secrets") == []

    operator = one(docs, "Role", f"{FULLNAME}-operator")
    secret_names = [rule.get("resourceNames") for rule in rules_for(operator, "secrets")]
    assert sorted(secret_names) == [["cb-exchange-tls"], ["orders-admin"], ["partner-bundle"]]
    assert verbs_for(operator, "secrets") == {"get"}
    configmap_rules = rules_for(operator, "configmaps")
    assert [rule["resourceNames"] for rule in configmap_rules] == [["example-org-bundle"]]
    assert verbs_for(operator, "configmaps") == {"get"}


def test_exchange_rbac_no_wildcards() -> None:
    for set_args in (EXCHANGE_ON, (*EXCHANGE_ON, "replicas=2", "watchNamespaces={shop}")):
        docs = render(*set_args)
        for role in objects_of(docs, "ClusterRole") + objects_of(docs, "Role"):
            for rule in role["rules"]:
                name = role["metadata"]["name"]
                assert not ESCALATING_VERBS & set(rule["verbs"]), f"{name}: {rule}"
                assert "*" not in rule.get("resources", []), f"{name}: {rule}"


def test_exchange_cert_manager_certificate() -> None:
    docs = render(
        *EXCHANGE_ON,
        "exchange.certManager.issuerRef.name=internal-ca",
        "exchange.certManager.issuerRef.kind=ClusterIssuer",
        "exchange.certManager.extraDnsNames={db-exchange.example.com}",
    )
    certificate = one(docs, "Certificate", f"{FULLNAME}-exchange")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["namespace"] == NAMESPACE
    spec = certificate["spec"]
    assert spec["secretName"] == "cb-exchange-tls"
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer"}
    service = f"{FULLNAME}-exchange"
    assert spec["dnsNames"] == [
        service,
        f"{service}.{NAMESPACE}",
        f"{service}.{NAMESPACE}.svc",
        "db-exchange.example.com",
    ]
    assert "server auth" in spec["usages"]


def test_pod_label_selector_value() -> None:
    container = container_of(
        one(render("operator.podLabelSelector=credbroker.dev/enabled=true"), "Deployment")
    )
    assert "--pod-label-selector=credbroker.dev/enabled=true" in container["args"]
    settings = settings_from_args(parse_run_args(container))
    assert settings.pod_label_selector == "credbroker.dev/enabled=true"
    defaults = container_of(one(render(), "Deployment"))
    assert not any(arg.startswith("--pod-label-selector") for arg in defaults["args"])


def test_rbac_create_false() -> None:
    docs = render("rbac.create=false")
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert objects_of(docs, kind) == [], kind


INVALID_VALUES = [
    ("replicas=0", "at '/replicas': minimum"),
    ("watchNamespaces={Shop}", "at '/watchNamespaces/0'"),
    ("operator.logFormat=xml", "at '/operator/logFormat'"),
    ("operator.sweepIntervalSeconds=0", "at '/operator/sweepIntervalSeconds'"),
    ("operator.audiance=x", "additional properties 'audiance' not allowed"),
    ("metrics.port=70000", "at '/metrics/port': maximum"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
    ("operator.issuer=http://insecure", "at '/operator/issuer'"),
    ("metrics.port=8080", "metrics.port and health.port are both 8080"),
    ("serviceAccount.create=false", "serviceAccount.name is required when serviceAccount.create"),
    (
        "metrics.enabled=false,metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.enabled needs metrics.enabled: true",
    ),
    (
        "exchange.enabled=true",
        "exchange.tlsSecretName is required when exchange.enabled is true",
    ),
    (
        "exchange.enabled=true,exchange.tlsSecretName=tls,exchange.port=9090",
        "exchange.port and metrics.port are both 9090",
    ),
    (
        "exchange.enabled=true,exchange.tlsSecretName=tls,exchange.port=8080",
        "exchange.port and health.port are both 8080",
    ),
    ("exchange.rate=0", "at '/exchange/rate'"),
    ("exchange.burst=0", "at '/exchange/burst': minimum"),
    ("exchange.tlsSecretName=Bad_Name", "at '/exchange/tlsSecretName'"),
    ("exchange.service.type=ExternalName", "at '/exchange/service/type'"),
    ("rbac.bundleConfigMaps={Bad_Name}", "at '/rbac/bundleConfigMaps/0'"),
    ("exchange.certManager.issuerRef.kind=Issuer", "exchange.certManager.issuerRef needs a name"),
]


@pytest.mark.parametrize(("set_arg", "message"), INVALID_VALUES)
def test_invalid_values_rejected(set_arg: str, message: str) -> None:
    result = run_helm("template", RELEASE, str(CHART_DIR), "--set", set_arg)
    assert result.returncode != 0, f"helm template accepted {set_arg}"
    assert message in result.stderr


def test_crds_match_top_level() -> None:
    top_level = sorted(path.name for path in TOP_LEVEL_CRDS.glob("*.yaml"))
    in_chart = sorted(path.name for path in (CHART_DIR / "crds").glob("*.yaml"))
    assert top_level, "no CRDs in crds/"
    assert in_chart == sorted([*top_level, PEERING_CRDS_FILE])
    for name in top_level:
        chart_copy = (CHART_DIR / "crds" / name).read_bytes()
        assert chart_copy == (TOP_LEVEL_CRDS / name).read_bytes(), (
            f"charts/credbroker/crds/{name} differs from crds/{name}; copy it: "
            f"cp crds/{name} charts/credbroker/crds/"
        )


def test_peering_crds_shape() -> None:
    docs = [
        doc
        for doc in yaml.safe_load_all((CHART_DIR / "crds" / PEERING_CRDS_FILE).read_text())
        if doc
    ]
    scopes = {doc["spec"]["names"]["kind"]: doc["spec"]["scope"] for doc in docs}
    assert scopes == {"ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
    for doc in docs:
        assert doc["spec"]["group"] == "kopf.dev"
        assert [version["name"] for version in doc["spec"]["versions"]] == ["v1"]
        # Without a status subresource kopf patches status through the object itself,
        # which is the only patch on peerings that the chart's RBAC grants.
        assert "subresources" not in doc["spec"]["versions"][0]


def test_image_user_matches_chart() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "the Dockerfile sets no USER"
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    gid = values["podSecurityContext"]["runAsGroup"]
    assert users[-1] == f"{uid}:{gid}"
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, flags=re.MULTILINE)
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0])
