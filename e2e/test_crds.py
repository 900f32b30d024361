"""The CRDs on a real API server: the shared examples, defaults, status, columns and selectors.

Every example in tests/crd_examples.py is created with a server-side dry run,
so the API server also runs the CEL rules that the offline test cannot. The
server's defaults must parse to the same spec as the model's defaults, and
``LabelSelector.to_query`` must select the same pods as ``LabelSelector.matches``.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crd_examples import (
    BINDING_SPEC,
    BINDING_STATUS,
    CRD_DIR,
    SPEC_EXAMPLES,
    STATUS_EXAMPLES,
    TARGET_SPEC,
    SpecExample,
    StatusExample,
    manifest,
)
from credbroker.resources import LabelSelector, parse_binding, parse_target
from localcluster import ClusterAccess

pytestmark = pytest.mark.e2e

PARSERS = {"CredentialTarget": parse_target, "CredentialBinding": parse_binding}
RESOURCES = {
    "CredentialTarget": "credentialtargets.credbroker.dev",
    "CredentialBinding": "credentialbindings.credbroker.dev",
}


@pytest.fixture(scope="module")
def crds(cluster: ClusterAccess) -> ClusterAccess:
    """The cluster with the CRDs from crds/ applied and established."""
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{resource}" for resource in RESOURCES.values()),
    )
    return cluster


def namespace_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    """Return a fresh namespace for a binding, or None for a cluster-scoped target."""
    if kind == "CredentialBinding":
        name: str = request.getfixturevalue("namespace")
        return name
    return None


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda example: example.id)
def test_spec_example_on_server(
    example: SpecExample, crds: ClusterAccess, request: pytest.FixtureRequest
) -> None:
    namespace = namespace_for(example.kind, request)
    document = manifest(example.kind, example.spec, name="example", namespace=namespace)

    result = crds.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(document),
        check=False,
    )

    if example.valid:
        assert result.returncode == 0, result.stderr
        stored = json.loads(result.stdout)
        parse = PARSERS[example.kind]
        assert parse(stored["spec"]) == parse(example.spec), "server and model defaults differ"
        return

    assert result.returncode != 0, f"the server accepted an invalid spec: {result.stdout}"
    assert example.field is not None
    assert example.field in result.stderr
    if example.cel_message is not None:
        assert example.cel_message in result.stderr


@pytest.fixture
def status_objects(crds: ClusterAccess, namespace: str) -> Iterator[dict[str, tuple[str, ...]]]:
    """Create one target and one binding, and return kubectl's object arguments for each kind."""
    target_name = f"status-{secrets.token_hex(4)}"
    target = manifest("CredentialTarget", TARGET_SPEC, name=target_name)
    binding = manifest("CredentialBinding", BINDING_SPEC, name="status", namespace=namespace)
    crds.kubectl("create", "-f", "-", input=json.dumps(target))
    crds.kubectl("create", "-f", "-", input=json.dumps(binding))
    try:
        yield {
            "CredentialTarget": ("credentialtarget", target_name),
            "CredentialBinding": ("credentialbinding", "status", "-n", namespace),
        }
    finally:
        crds.kubectl("delete", "credentialtarget", target_name, "--wait=false", check=False)


@pytest.mark.parametrize("example", STATUS_EXAMPLES, ids=lambda example: example.id)
def test_status_example_on_server(
    example: StatusExample, crds: ClusterAccess, status_objects: dict[str, tuple[str, ...]]
) -> None:
    patch = json.dumps({"status": example.status})

    result = crds.kubectl(
        "patch",
        *status_objects[example.kind],
        "--subresource=status",
        "--type=merge",
        "--dry-run=server",
        "-p",
        patch,
        check=False,
    )

    if example.valid:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"the server accepted an invalid status: {result.stdout}"
        assert example.field is not None
        assert example.field in result.stderr


def test_printer_columns_on_server(
    crds: ClusterAccess, status_objects: dict[str, tuple[str, ...]]
) -> None:
    crds.kubectl(
        "patch",
        *status_objects["CredentialBinding"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": BINDING_STATUS}),
    )

    narrow = crds.kubectl("get", *status_objects["CredentialBinding"]).stdout.splitlines()
    wide = crds.kubectl("get", *status_objects["CredentialBinding"], "-o", "wide").stdout

    assert narrow[0].split() == ["NAME", "TARGET", "READY", "REASON", "EXPIRES", "AGE"]
    assert narrow[1].split()[:5] == [
        "status",
        "orders-postgres",
        "True",
        "Issued",
        BINDING_STATUS["expiresAt"],
    ]
    assert "ROLE" in wide
    assert "orders_rw" in wide
    assert "VERIFIED" in wide


def test_names_on_server(crds: ClusterAccess, status_objects: dict[str, tuple[str, ...]]) -> None:
    _, target_name = status_objects["CredentialTarget"]
    namespace = status_objects["CredentialBinding"][-1]

    by_short_name = crds.kubectl("get", "ct", target_name, "-o", "name").stdout
    by_category = crds.kubectl("get", "credbroker", "-n", namespace, "-o", "name").stdout

    assert by_short_name.strip() == f"credentialtarget.credbroker.dev/{target_name}"
    assert "credentialbinding.credbroker.dev/status" in by_category
    assert f"credentialtarget.credbroker.dev/{target_name}" in by_category


POD_LABELS: dict[str, dict[str, str]] = {
    "orders-a": {"app": "orders", "track": "stable"},
    "orders-b": {"app": "orders", "track": "canary", "example.com/owner": "shop"},
    "orders-c": {"app": "orders", "canary": ""},
    "billing-a": {"app": "billing", "track": "stable"},
    "bare": {},
}

SELECTORS: list[dict[str, Any]] = [
    {},
    {"matchLabels": {"app": "orders"}},
    {"matchLabels": {"app": "orders", "track": "stable"}},
    {"matchLabels": {"canary": ""}},
    {"matchExpressions": [{"key": "track", "operator": "In", "values": ["stable", "canary"]}]},
    {"matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}]},
    {"matchExpressions": [{"key": "example.com/owner", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "track", "operator": "DoesNotExist"}]},
    {
        "matchLabels": {"app": "orders"},
        "matchExpressions": [
            {"key": "track", "operator": "NotIn", "values": ["canary"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    },
]


def test_selector_query_on_server(crds: ClusterAccess, namespace: str) -> None:
    with crds.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        for name, labels in POD_LABELS.items():
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            }
            core.create_namespaced_pod(namespace, pod)

        for raw in SELECTORS:
            selector = LabelSelector.model_validate(raw)
            listed = core.list_namespaced_pod(namespace, label_selector=selector.to_query())
            selected = {pod.metadata.name for pod in listed.items}
            expected = {name for name, labels in POD_LABELS.items() if selector.matches(labels)}

            assert selected == expected, f"{selector.to_query()!r}"


def test_example_files_on_server(crds: ClusterAccess, namespace: str) -> None:
    examples_dir = CRD_DIR.parent / "examples"
    for name in ["target-postgres.yaml", "binding-orders.yaml"]:
        (document,) = yaml.safe_load_all((examples_dir / name).read_text())
        if document["kind"] == "CredentialBinding":
            document["metadata"]["namespace"] = namespace

        result = crds.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(document), check=False
        )

        assert result.returncode == 0, f"{name}: {result.stderr}"
