"""PodRef.from_pod reading Pod objects as the API server returns them."""

from __future__ import annotations

from typing import Any

import pytest

from credbroker.identity.pods import PodRef


def pod_object(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "api-7f9c", "uid": "0b5e7c1a"},
        "spec": spec,
    }


def test_from_pod_reads_fields() -> None:
    pod = PodRef.from_pod(pod_object(serviceAccountName="api", nodeName="node-1"))

    assert pod == PodRef(
        namespace="shop", name="api-7f9c", uid="0b5e7c1a", service_account="api", node_name="node-1"
    )
    assert pod.subject == "system:serviceaccount:shop:api"
    assert str(pod) == "shop/api-7f9c"


def test_from_pod_defaults() -> None:
    pod = PodRef.from_pod(pod_object())

    assert pod.service_account == "default"
    assert pod.node_name is None


@pytest.mark.parametrize("field", ["namespace", "name", "uid"])
def test_from_pod_missing_metadata(field: str) -> None:
    body = pod_object()
    del body["metadata"][field]

    with pytest.raises(ValueError, match=rf"metadata\.{field}"):
        PodRef.from_pod(body)


def test_from_pod_without_metadata() -> None:
    with pytest.raises(ValueError, match="no metadata"):
        PodRef.from_pod({"spec": {}})


def test_empty_field_rejected() -> None:
    with pytest.raises(ValueError, match=r"PodRef\.uid"):
        PodRef(namespace="shop", name="api", uid="", service_account="api")
