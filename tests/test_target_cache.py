"""KubeGateway serves CredentialTargets seen in watch events from memory."""

from __future__ import annotations

import pytest
from kubernetes import client
from urllib3.exceptions import HTTPError

from credbroker.kube import KubeGateway


def _gateway() -> KubeGateway:
    # Port 9 on loopback has no server, so any API call fails at once and a
    # result proves that the gateway returned it from memory.
    configuration = client.Configuration(host="http://127.0.0.1:9")
    configuration.retries = False
    return KubeGateway(client.ApiClient(configuration))


def _target(name: str, version: str) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": version}, "spec": {"type": "postgresql"}}


async def test_remembered_target_needs_no_call():
    gateway = _gateway()
    gateway.remember_target(_target("pg", "1"), deleted=False)

    body = await gateway.get_target("pg")

    assert body == _target("pg", "1")


async def test_newer_event_replaces_target():
    gateway = _gateway()
    gateway.remember_target(_target("pg", "1"), deleted=False)
    gateway.remember_target(_target("pg", "2"), deleted=False)

    body = await gateway.get_target("pg")

    assert body is not None
    assert body["metadata"] == {"name": "pg", "resourceVersion": "2"}


async def test_deleted_target_is_read_again():
    gateway = _gateway()
    gateway.remember_target(_target("pg", "1"), deleted=False)
    gateway.remember_target(_target("pg", "1"), deleted=True)

    with pytest.raises(HTTPError):
        await gateway.get_target("pg")
