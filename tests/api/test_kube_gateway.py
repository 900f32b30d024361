"""KubeGateway and SecretStore through the real ``kubernetes`` client against kmock.

kmock's ``KubernetesEmulator`` (0.8) keeps objects in memory and serves
create, fetch, list, merge patch and delete. It does not serve PUT
(replace), assign ``uid`` or ``resourceVersion``, apply ``labelSelector``,
``limit`` or ``continue``, or check delete preconditions. The ``emulator``
fixture adds the first three with kmock reactions, and the tests check
the query parameters and the delete body that the client sends.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kmock import (
    KubernetesEmulator,
    KubernetesError,
    KubernetesObjectNotFoundError,
    Request,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from credbroker.delivery import (
    CREDENTIAL_ID_ANNOTATION,
    LIST_PAGE_SIZE_ITEMS,
    MANAGED_SELECTOR,
    PREVIOUS_CREDENTIAL_ID_ANNOTATION,
    WRITE_ATTEMPTS,
    PreviousCredential,
    SecretStore,
    render_secret,
)
from credbroker.errors import DeliveryError
from credbroker.kube import KubeGateway
from credbroker.reasons import Reason
from credbroker.targets.base import IssuedCredential
from credbroker.timestamps import parse_timestamp

SECRETS = "v1/secrets"
TARGETS = "credbroker.dev/v1alpha1/credentialtargets"
BINDINGS = "credbroker.dev/v1alpha1/credentialbindings"
NAMESPACE = "apps"
BINDING_UID = "uid-web-db"
SECRET_NAME = "web-db-credentials"
PASSWORD = "pw-7f3c9a1e-not-for-logs"


class SecretsEmulation:
    """Adds to kmock what the Secret tests need from an API server.

    ``uid`` and ``resourceVersion`` are set on every create and update, PUT
    replaces the whole object when its ``resourceVersion`` matches (409
    otherwise), and ``conflict_always`` makes every PUT return 409.
    """

    def __init__(self, server: KubernetesEmulator) -> None:
        self.server = server
        self.versions = itertools.count(1)
        self.conflict_always = False
        server["create v1/secrets"] << self._stamp_created
        server["update v1/secrets"] << self._stamp_updated
        server["put v1/secrets"] << self._replace

    def _key(self, request: Request) -> tuple[Any, str | None, str | None]:
        data = request.data or {}
        metadata = data.get("metadata") or {}
        return (
            request.resource,
            request.namespace or metadata.get("namespace"),
            request.name or metadata.get("name"),
        )

    def _stamp(self, key: tuple[Any, str | None, str | None], uid: str | None = None) -> Any:
        stored = self.server.objects[key]
        metadata = dict(stored.raw.get("metadata") or {})
        metadata.setdefault("uid", uid or f"uid-{metadata.get('name')}")
        metadata["resourceVersion"] = str(next(self.versions))
        stored["metadata"] = metadata
        return stored.raw

    def _stamp_created(self, request: Request) -> Any:
        return self._stamp(self._key(request))

    def _stamp_updated(self, request: Request) -> Any:
        return self._stamp(self._key(request))

    def _replace(self, request: Request) -> Any:
        key = self._key(request)
        if key not in self.server.objects or self.server.objects[key].deleted:
            raise KubernetesObjectNotFoundError()
        stored = self.server.objects[key]
        sent_version = (request.data.get("metadata") or {}).get("resourceVersion")
        if self.conflict_always or sent_version != stored.raw["metadata"]["resourceVersion"]:
            raise KubernetesError(status=409, reason="Conflict", message="stale object")
        uid = stored.raw["metadata"].get("uid")
        stored.create(copy.deepcopy(request.data))
        return self._stamp(key, uid=uid)


@pytest.fixture
def emulation(kmock: KubernetesEmulator) -> SecretsEmulation:
    return SecretsEmulation(kmock)


@pytest.fixture
async def api_client(kmock: KubernetesEmulator) -> AsyncIterator[k8s.ApiClient]:
    configuration = k8s.Configuration()
    configuration.host = str(kmock.url).rstrip("/")
    api_client = k8s.ApiClient(configuration)
    yield api_client
    await asyncio.to_thread(api_client.close)


@pytest.fixture
def gateway(api_client: k8s.ApiClient) -> KubeGateway:
    return KubeGateway(api_client)


@pytest.fixture
def store(api_client: k8s.ApiClient, emulation: SecretsEmulation) -> SecretStore:
    return SecretStore(k8s.CoreV1Api(api_client))


def rendered_secret(
    credential_id: str = "cred0000000000000001",
    *,
    binding_uid: str = BINDING_UID,
    previous: PreviousCredential | None = None,
) -> dict[str, Any]:
    credential = IssuedCredential(
        credential_id=credential_id,
        username=f"cb_{credential_id}",
        expires_at=parse_timestamp("2026-03-01T12:15:00Z"),
        data={"username": f"cb_{credential_id}", "password": PASSWORD},
    )
    return render_secret(
        binding_namespace=NAMESPACE,
        binding_name="web-db",
        binding_uid=binding_uid,
        secret_name=SECRET_NAME,
        target_name="pg-main",
        credential=credential,
        issued_at=parse_timestamp("2026-03-01T12:00:00Z"),
        previous=previous,
    )


def stored_secret(server: KubernetesEmulator, name: str = SECRET_NAME) -> dict[str, Any]:
    return server.objects[SECRETS, NAMESPACE, name].raw


def decoded(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode("utf-8")


def requests_with(server: KubernetesEmulator, method: str) -> list[Request]:
    return [request for request in server if request.method == method]


# KubeGateway: CredentialTargets


async def test_get_target_found(kmock, gateway):
    kmock.objects[TARGETS, None, "pg-main"] = {
        "apiVersion": "credbroker.dev/v1alpha1",
        "kind": "CredentialTarget",
        "metadata": {"name": "pg-main"},
        "spec": {"type": "postgresql", "allowedRoles": ["app_rw"]},
    }

    target = await gateway.get_target("pg-main")

    assert target is not None
    assert target["spec"]["allowedRoles"] == ["app_rw"]
    assert target["metadata"]["name"] == "pg-main"
    assert kmock[-1].url.path == "/apis/credbroker.dev/v1alpha1/credentialtargets/pg-main"


async def test_get_target_missing(kmock, gateway):
    kmock.objects[TARGETS, None, "other"] = {"metadata": {"name": "other"}}

    assert await gateway.get_target("pg-main") is None


async def test_get_target_server_error(kmock, gateway):
    (
        kmock["get /apis/credbroker.dev/v1alpha1/credentialtargets/pg-main"]
        << 500
        << {
            "kind": "Status",
            "code": 500,
        }
    )

    with pytest.raises(ApiException) as raised:
        await gateway.get_target("pg-main")

    assert raised.value.status == 500


# KubeGateway: Secrets


async def test_read_secret_data(kmock, gateway):
    kmock.objects[SECRETS, "credbroker", "pg-admin"] = {
        "metadata": {"namespace": "credbroker", "name": "pg-admin", "resourceVersion": "42"},
        "data": {
            "username": base64.b64encode(b"postgres").decode(),
            "password": base64.b64encode(PASSWORD.encode()).decode(),
        },
    }

    secret = await gateway.read_secret_data(namespace="credbroker", name="pg-admin")

    assert secret is not None
    assert secret.resource_version == "42"
    assert secret.data == {"username": b"postgres", "password": PASSWORD.encode()}
    assert PASSWORD not in repr(secret)


async def test_read_secret_data_missing(gateway):
    assert await gateway.read_secret_data(namespace="credbroker", name="absent") is None


async def test_patch_secret_annotations(kmock, gateway):
    kmock.objects[SECRETS, NAMESPACE, SECRET_NAME] = {
        "metadata": {
            "namespace": NAMESPACE,
            "name": SECRET_NAME,
            "annotations": {"keep": "1", "drop": "2", "change": "3"},
        },
        "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
    }

    await gateway.patch_secret_annotations(
        namespace=NAMESPACE,
        name=SECRET_NAME,
        annotations={"drop": None, "change": "4", "add": "5"},
    )

    annotations = stored_secret(kmock)["metadata"]["annotations"]
    assert annotations == {"keep": "1", "change": "4", "add": "5"}
    assert decoded(stored_secret(kmock), "password") == PASSWORD
    patch = requests_with(kmock, "PATCH")[-1]
    assert patch.data == {"metadata": {"annotations": {"drop": None, "change": "4", "add": "5"}}}
    assert patch.url.path == f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET_NAME}"


async def test_patch_annotations_missing_secret(gateway):
    with pytest.raises(ApiException) as raised:
        await gateway.patch_secret_annotations(
            namespace=NAMESPACE, name="absent", annotations={"a": None}
        )

    assert raised.value.status == 404


# KubeGateway: status and listing of custom resources


async def test_patch_binding_status(kmock, gateway):
    kmock.objects[BINDINGS, NAMESPACE, "web-db"] = {
        "metadata": {"namespace": NAMESPACE, "name": "web-db"},
        "spec": {"role": "app_rw"},
        "status": {"credentialId": "old", "expiresAt": "2026-03-01T12:15:00Z", "other": "kept"},
    }

    await gateway.patch_binding_status(
        namespace=NAMESPACE,
        name="web-db",
        status={"credentialId": "new", "expiresAt": None, "verifiedPods": 1},
    )

    stored = kmock.objects[BINDINGS, NAMESPACE, "web-db"].raw
    assert stored["status"] == {"credentialId": "new", "other": "kept", "verifiedPods": 1}
    assert stored["spec"] == {"role": "app_rw"}
    patch = requests_with(kmock, "PATCH")[-1]
    assert patch.subresource == "status"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"


async def test_patch_status_of_deleted_binding(kmock, gateway, caplog):
    caplog.set_level(logging.INFO, logger="credbroker.kube")
    kmock.objects[BINDINGS, NAMESPACE, "other"] = {"metadata": {"name": "other"}}

    await gateway.patch_binding_status(namespace=NAMESPACE, name="web-db", status={"a": 1})

    assert "Binding apps/web-db is gone" in caplog.text


async def test_patch_target_status(kmock, gateway):
    kmock.objects[TARGETS, None, "pg-main"] = {
        "metadata": {"name": "pg-main"},
        "spec": {"type": "postgresql"},
    }

    await gateway.patch_target_status(name="pg-main", status={"activeCredentials": 3})

    stored = kmock.objects[TARGETS, None, "pg-main"].raw
    assert stored["status"] == {"activeCredentials": 3}
    patch = requests_with(kmock, "PATCH")[-1]
    assert patch.url.path == "/apis/credbroker.dev/v1alpha1/credentialtargets/pg-main/status"


async def test_list_bindings(kmock, gateway):
    kmock.objects[BINDINGS, NAMESPACE, "web-db"] = {
        "metadata": {"namespace": NAMESPACE, "name": "web-db"}
    }
    kmock.objects[BINDINGS, "other", "api-db"] = {
        "metadata": {"namespace": "other", "name": "api-db"}
    }

    in_namespace = await gateway.list_bindings(NAMESPACE)
    everywhere = await gateway.list_bindings()

    assert [item["metadata"]["name"] for item in in_namespace] == ["web-db"]
    assert sorted(item["metadata"]["name"] for item in everywhere) == ["api-db", "web-db"]


# SecretStore: reading


async def test_store_get(kmock, store):
    kmock.objects[SECRETS, NAMESPACE, SECRET_NAME] = rendered_secret()

    secret = await store.get(NAMESPACE, SECRET_NAME)

    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == BINDING_UID
    assert secret["metadata"]["annotations"][CREDENTIAL_ID_ANNOTATION] == "cred0000000000000001"
    assert decoded(secret, "password") == PASSWORD


async def test_store_get_missing(store):
    assert await store.get(NAMESPACE, SECRET_NAME) is None


async def test_store_get_forbidden(kmock, store):
    (
        kmock[f"get /api/v1/namespaces/{NAMESPACE}/secrets/{SECRET_NAME}"]
        << 403
        << {
            "kind": "Status",
            "code": 403,
            "message": f"forbidden; body text {PASSWORD}",
        }
    )

    with pytest.raises(DeliveryError) as raised:
        await store.get(NAMESPACE, SECRET_NAME)

    assert raised.value.reason is Reason.ISSUE_FAILED
    assert "403" in raised.value.message
    assert "allow the operator's ServiceAccount to get Secrets" in raised.value.message
    assert PASSWORD not in str(raised.value)


async def test_store_unreachable_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{closed_port}"
    configuration.retries = 0
    api_client = k8s.ApiClient(configuration)
    store = SecretStore(k8s.CoreV1Api(api_client))

    try:
        with pytest.raises(DeliveryError) as raised:
            await store.get(NAMESPACE, SECRET_NAME)
    finally:
        await asyncio.to_thread(api_client.close)

    assert raised.value.reason is Reason.ISSUE_FAILED
    assert "connecting to the Kubernetes API" in raised.value.message


# SecretStore: writing


async def test_store_write_creates(kmock, store):
    await store.write(binding_uid=BINDING_UID, binding_ref="apps/web-db", body=rendered_secret())

    stored = stored_secret(kmock)
    assert decoded(stored, "password") == PASSWORD
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "credbroker"
    assert stored["metadata"]["ownerReferences"][0]["uid"] == BINDING_UID
    assert [request.method for request in kmock] == ["POST"]


async def test_store_write_replaces_owned(kmock, store):
    previous = PreviousCredential(
        credential_id="cred0000000000000000",
        revoke_at=parse_timestamp("2026-03-01T12:02:00Z"),
    )
    await store.write(
        binding_uid=BINDING_UID,
        binding_ref="apps/web-db",
        body=rendered_secret("cred0000000000000001", previous=previous),
    )
    uid = stored_secret(kmock)["metadata"]["uid"]

    await store.write(
        binding_uid=BINDING_UID,
        binding_ref="apps/web-db",
        body=rendered_secret("cred0000000000000002"),
    )

    stored = stored_secret(kmock)
    assert stored["metadata"]["annotations"][CREDENTIAL_ID_ANNOTATION] == "cred0000000000000002"
    assert PREVIOUS_CREDENTIAL_ID_ANNOTATION not in stored["metadata"]["annotations"]
    assert stored["metadata"]["uid"] == uid
    assert [request.method for request in kmock] == ["POST", "POST", "GET", "PUT"]
    assert kmock[-1].data["metadata"]["resourceVersion"] == "1"


async def test_store_write_conflict_unowned(kmock, store):
    kmock.objects[SECRETS, NAMESPACE, SECRET_NAME] = {
        "metadata": {"namespace": NAMESPACE, "name": SECRET_NAME, "resourceVersion": "9"},
        "data": {"token": base64.b64encode(b"hand-made").decode()},
    }

    with pytest.raises(DeliveryError) as raised:
        await store.write(
            binding_uid=BINDING_UID, binding_ref="apps/web-db", body=rendered_secret()
        )

    assert raised.value.reason is Reason.SECRET_CONFLICT
    assert "apps/web-db" in raised.value.message
    assert decoded(stored_secret(kmock), "token") == "hand-made"
    assert requests_with(kmock, "PUT") == []


async def test_store_write_conflict_other_binding(kmock, store):
    kmock.objects[SECRETS, NAMESPACE, SECRET_NAME] = {
        **rendered_secret(binding_uid="uid-api-db"),
        "metadata": {
            **rendered_secret(binding_uid="uid-api-db")["metadata"],
            "resourceVersion": "9",
        },
    }

    with pytest.raises(DeliveryError) as raised:
        await store.write(
            binding_uid=BINDING_UID,
            binding_ref="apps/web-db",
            body=rendered_secret("cred0000000000000002"),
        )

    assert raised.value.reason is Reason.SECRET_CONFLICT
    assert stored_secret(kmock)["metadata"]["ownerReferences"][0]["uid"] == "uid-api-db"
    assert requests_with(kmock, "PUT") == []


async def test_store_write_gives_up(kmock, store, emulation):
    await store.write(binding_uid=BINDING_UID, binding_ref="apps/web-db", body=rendered_secret())
    emulation.conflict_always = True

    with pytest.raises(DeliveryError) as raised:
        await store.write(
            binding_uid=BINDING_UID,
            binding_ref="apps/web-db",
            body=rendered_secret("cred0000000000000002"),
        )

    assert raised.value.reason is Reason.SECRET_CONFLICT
    assert len(requests_with(kmock, "PUT")) == WRITE_ATTEMPTS
    assert stored_secret(kmock)["metadata"]["annotations"][CREDENTIAL_ID_ANNOTATION] == (
        "cred0000000000000001"
    )


async def test_store_write_rejects_unowned_body(store):
    body = rendered_secret()
    body["metadata"]["ownerReferences"] = []

    with pytest.raises(ValueError, match="ownerReference"):
        await store.write(binding_uid=BINDING_UID, binding_ref="apps/web-db", body=body)


# SecretStore: deleting


async def test_store_delete_owned(kmock, store):
    await store.write(binding_uid=BINDING_UID, binding_ref="apps/web-db", body=rendered_secret())
    metadata = stored_secret(kmock)["metadata"]

    deleted = await store.delete(NAMESPACE, SECRET_NAME, binding_uid=BINDING_UID)

    assert deleted
    assert kmock.objects[SECRETS, NAMESPACE, SECRET_NAME].deleted
    delete = requests_with(kmock, "DELETE")[-1]
    assert delete.data["preconditions"] == {
        "uid": metadata["uid"],
        "resourceVersion": metadata["resourceVersion"],
    }


async def test_store_delete_unowned(kmock, store, caplog):
    caplog.set_level(logging.WARNING, logger="credbroker.delivery")
    await store.write(
        binding_uid="uid-api-db",
        binding_ref="apps/api-db",
        body=rendered_secret(binding_uid="uid-api-db"),
    )

    deleted = await store.delete(NAMESPACE, SECRET_NAME, binding_uid=BINDING_UID)

    assert not deleted
    assert not kmock.objects[SECRETS, NAMESPACE, SECRET_NAME].deleted
    assert requests_with(kmock, "DELETE") == []
    assert "not managed by the binding" in caplog.text


async def test_store_delete_missing(store):
    assert not await store.delete(NAMESPACE, SECRET_NAME, binding_uid=BINDING_UID)


# SecretStore: listing


async def test_store_list_sends_selector(kmock, store):
    await store.write(binding_uid=BINDING_UID, binding_ref="apps/web-db", body=rendered_secret())

    in_namespace = await store.list_managed(NAMESPACE)
    everywhere = await store.list_managed()

    requests = [request for request in kmock if request.method == "GET"]
    assert [item["metadata"]["name"] for item in in_namespace] == [SECRET_NAME]
    assert [item["metadata"]["name"] for item in everywhere] == [SECRET_NAME]
    assert requests[0].url.path == f"/api/v1/namespaces/{NAMESPACE}/secrets"
    assert requests[1].url.path == "/api/v1/secrets"
    for request in requests:
        assert request.params["labelSelector"] == MANAGED_SELECTOR
        assert request.params["limit"] == str(LIST_PAGE_SIZE_ITEMS)


async def test_store_list_follows_pages(kmock, store):
    def page(request: Request) -> dict[str, Any]:
        if request.params.get("continue") == "page-2":
            return {"metadata": {}, "items": [{"metadata": {"name": "second"}}]}
        return {"metadata": {"continue": "page-2"}, "items": [{"metadata": {"name": "first"}}]}

    kmock["list v1/secrets"] << page

    items = await store.list_managed()

    assert [item["metadata"]["name"] for item in items] == ["first", "second"]
    assert len(requests_with(kmock, "GET")) == 2
    assert "continue" not in requests_with(kmock, "GET")[0].params
