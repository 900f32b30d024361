"""KubeExchangeCluster reads bindings and pods only in the namespaces the operator serves."""

from __future__ import annotations

import pytest
from kubernetes import client

from credbroker.errors import PolicyRejected
from credbroker.exchange import KubeExchangeCluster
from credbroker.kube import KubeGateway
from credbroker.reasons import Reason
from credbroker.targets.registry import TargetRegistry


def _cluster(served: tuple[str, ...]) -> KubeExchangeCluster:
    # Port 9 on loopback has no server, so any API call would fail: these
    # tests pass only when the namespace check returns first.
    configuration = client.Configuration(host="http://127.0.0.1:9")
    configuration.retries = False
    kube = KubeGateway(client.ApiClient(configuration))
    targets = TargetRegistry(kube=kube, operator_namespace="credbroker")
    return KubeExchangeCluster(
        kube=kube, targets=targets, operator_namespace="credbroker", served_namespaces=served
    )


async def test_binding_outside_served_is_absent():
    cluster = _cluster(("shop",))

    body = await cluster.get_binding(namespace="billing", name="orders")

    assert body is None


async def test_pod_outside_served_rejected():
    cluster = _cluster(("shop",))

    with pytest.raises(PolicyRejected) as caught:
        await cluster.get_pod(namespace="billing", name="orders-0")

    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED
    assert "billing/orders-0" in caught.value.message
    assert "shop" in caught.value.message
