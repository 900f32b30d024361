"""Tests for credbroker.delivery: rendering, ownership, annotations and SecretStore."""

import base64
import copy
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from credbroker.delivery import (
    BINDING_LABEL,
    CREDENTIAL_ID_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PREVIOUS_CREDENTIAL_ID_ANNOTATION,
    PREVIOUS_REVOKE_AT_ANNOTATION,
    TARGET_ANNOTATION,
    WRITE_ATTEMPTS,
    PreviousCredential,
    SecretStore,
    check_ownership,
    format_timestamp,
    is_owned_by,
    parse_timestamp,
    read_credential_refs,
    render_secret,
    validate_binding_name,
)
from credbroker.errors import DeliveryError
from credbroker.reasons import Reason
from credbroker.targets.base import IssuedCredential

PASSWORD = "Zq8-not-a-real-password-4f1c"
BINDING_UID = "5d1e2f3a-aaaa-4bbb-8ccc-0123456789ab"
OTHER_UID = "9f8e7d6c-dddd-4eee-8fff-ba9876543210"
ISSUED_AT = datetime(2026, 1, 2, 3, 4, 5, 987654, tzinfo=UTC)
EXPIRES_AT = datetime(2026, 1, 2, 3, 19, 5, tzinfo=UTC)


def make_credential() -> IssuedCredential:
    return IssuedCredential(
        credential_id="k3j5a9x0m2q7w4e8r1t6",
        username="cb_k3j5a9x0m2q7w4e8r1t6",
        expires_at=EXPIRES_AT,
        data={
            "username": "cb_k3j5a9x0m2q7w4e8r1t6",
            "password": PASSWORD,
            "host": "pg.internal.test",
            "port": "6543",
            "dbname": "commerce",
            "uri": f"postgresql://cb_k3j5a9x0m2q7w4e8r1t6:{PASSWORD}@pg.internal.test:6543/commerce",
        },
    )


def make_secret(
    *,
    name: str = "orders-db",
    binding_uid: str = BINDING_UID,
    previous: PreviousCredential | None = None,
) -> dict[str, Any]:
    return render_secret(
        binding_namespace="shop",
        binding_name="orders",
        binding_uid=binding_uid,
        secret_name=name,
        target_name="orders-pg",
        credential=make_credential(),
        issued_at=ISSUED_AT,
        previous=previous,
    )


def api_error(status: int, reason: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    # Error bodies can echo request content, so a message must never include the body.
    error.body = json.dumps({"message": f"rejected {PASSWORD}"})
    return error


class FakeCoreV1Api:
    """An in-memory stand-in for the Secret methods of kubernetes.client.CoreV1Api.

    ``failures`` queues exceptions per method name, raised before the method
    does its work, to simulate races and API errors.
    """

    def __init__(self) -> None:
        self.api_client = k8s.ApiClient()
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[str] = []
        self.replace_bodies: list[dict[str, Any]] = []
        self.delete_bodies: list[Mapping[str, Any]] = []
        self.list_requests: list[dict[str, Any]] = []
        self._version = 100
        self._uid_counter = 0

    def add(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(secret))
        self._stamp(stored, new_uid=True)
        metadata = stored["metadata"]
        self.secrets[(metadata["namespace"], metadata["name"])] = stored
        return stored

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self._enter("read")
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(stored)

    def create_namespaced_secret(self, namespace: str, body: Mapping[str, Any]) -> Any:
        self._enter("create")
        name = body["metadata"]["name"]
        if (namespace, name) in self.secrets:
            raise ApiException(status=409, reason="Conflict")
        stored = copy.deepcopy(dict(body))
        self._stamp(stored, new_uid=True)
        self.secrets[(namespace, name)] = stored
        return copy.deepcopy(stored)

    def replace_namespaced_secret(self, name: str, namespace: str, body: Mapping[str, Any]) -> Any:
        self._enter("replace")
        self.replace_bodies.append(copy.deepcopy(dict(body)))
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        replacement = copy.deepcopy(dict(body))
        replacement["metadata"]["uid"] = stored["metadata"]["uid"]
        self._stamp(replacement, new_uid=False)
        self.secrets[(namespace, name)] = replacement
        return copy.deepcopy(replacement)

    def delete_namespaced_secret(
        self, name: str, namespace: str, *, body: Mapping[str, Any]
    ) -> Any:
        self._enter("delete")
        self.delete_bodies.append(body)
        stored = self.secrets.get((namespace, name))
        if stored is None:
            raise ApiException(status=404, reason="Not Found")
        preconditions = body.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            expected = preconditions.get(field)
            if expected is not None and expected != stored["metadata"][field]:
                raise ApiException(status=409, reason="Conflict")
        del self.secrets[(namespace, name)]
        return {"kind": "Status", "status": "Success"}

    def list_secret_for_all_namespaces(
        self, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> Any:
        self._enter("list")
        return self._list(None, label_selector, limit, _continue)

    def list_namespaced_secret(
        self, namespace: str, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> Any:
        self._enter("list")
        return self._list(namespace, label_selector, limit, _continue)

    def _list(
        self, namespace: str | None, label_selector: str, limit: int, token: str | None
    ) -> dict[str, Any]:
        self.list_requests.append(
            {"namespace": namespace, "label_selector": label_selector, "limit": limit}
        )
        key, value = label_selector.split("=")
        matches = [
            copy.deepcopy(secret)
            for (secret_namespace, _), secret in sorted(self.secrets.items())
            if namespace in (None, secret_namespace)
            and (secret["metadata"].get("labels") or {}).get(key) == value
        ]
        start = int(token) if token else 0
        page = matches[start : start + limit]
        following = start + limit
        metadata = {"continue": str(following)} if following < len(matches) else {}
        return {"metadata": metadata, "items": page}

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def _stamp(self, secret: dict[str, Any], *, new_uid: bool) -> None:
        self._version += 1
        secret["metadata"]["resourceVersion"] = str(self._version)
        if new_uid:
            self._uid_counter += 1
            secret["metadata"]["uid"] = f"secret-uid-{self._uid_counter}"


@pytest.fixture
def api() -> FakeCoreV1Api:
    return FakeCoreV1Api()


@pytest.fixture
def store(api: FakeCoreV1Api) -> SecretStore:
    return SecretStore(api)


def unowned_secret(name: str = "orders-db") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop", "labels": {"team": "orders"}},
        "data": {"password": base64.b64encode(b"hand-made").decode()},
    }


# render_secret


def test_render_shape() -> None:
    secret = make_secret()

    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "orders-db"
    assert secret["metadata"]["namespace"] == "shop"
    assert secret["metadata"]["labels"] == {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        BINDING_LABEL: "orders",
    }


def test_render_owner_reference() -> None:
    references = make_secret()["metadata"]["ownerReferences"]

    assert references == [
        {
            "apiVersion": "credbroker.dev/v1alpha1",
            "kind": "CredentialBinding",
            "name": "orders",
            "uid": BINDING_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_render_data_base64() -> None:
    credential = make_credential()
    secret = make_secret()

    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}

    assert decoded == dict(credential.data)


def test_render_annotations() -> None:
    annotations = make_secret()["metadata"]["annotations"]

    assert annotations == {
        CREDENTIAL_ID_ANNOTATION: "k3j5a9x0m2q7w4e8r1t6",
        EXPIRES_AT_ANNOTATION: "2026-01-02T03:19:05Z",
        ISSUED_AT_ANNOTATION: "2026-01-02T03:04:05Z",
        TARGET_ANNOTATION: "orders-pg",
    }


def test_render_previous_annotations() -> None:
    previous = PreviousCredential(
        credential_id="p0p0p0p0p0p0p0p0p0p0",
        revoke_at=datetime(2026, 1, 2, 5, 6, 7, tzinfo=timezone(timedelta(hours=2))),
    )

    annotations = make_secret(previous=previous)["metadata"]["annotations"]

    assert annotations[PREVIOUS_CREDENTIAL_ID_ANNOTATION] == "p0p0p0p0p0p0p0p0p0p0"
    assert annotations[PREVIOUS_REVOKE_AT_ANNOTATION] == "2026-01-02T03:06:07Z"


def test_render_metadata_has_no_data_value() -> None:
    credential = make_credential()
    metadata = make_secret()["metadata"]
    metadata_text = json.dumps(metadata)
    visible = [*metadata["labels"].values(), *metadata["annotations"].values()]

    for key, value in credential.data.items():
        encoded = base64.b64encode(value.encode()).decode()
        for text in visible:
            assert value not in text, key
            assert encoded not in text, key
        assert value not in metadata_text, key
    assert PASSWORD not in metadata_text


def test_render_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="time zone"):
        render_secret(
            binding_namespace="shop",
            binding_name="orders",
            binding_uid=BINDING_UID,
            secret_name="orders-db",
            target_name="orders-pg",
            credential=make_credential(),
            issued_at=datetime(2026, 1, 2, 3, 4, 5),
        )


def test_render_rejects_long_binding_name() -> None:
    name = "b" * 64

    with pytest.raises(DeliveryError) as caught:
        render_secret(
            binding_namespace="shop",
            binding_name=name,
            binding_uid=BINDING_UID,
            secret_name="orders-db",
            target_name="orders-pg",
            credential=make_credential(),
            issued_at=ISSUED_AT,
        )

    assert caught.value.reason is Reason.INVALID_SPEC
    assert f"shop/{name}" in caught.value.message
    assert "63" in caught.value.message


def test_binding_name_length_limit() -> None:
    validate_binding_name(binding_namespace="shop", binding_name="b" * 63)

    with pytest.raises(DeliveryError) as caught:
        validate_binding_name(binding_namespace="shop", binding_name="b" * 64)

    assert caught.value.reason is Reason.INVALID_SPEC
    assert "64 characters" in caught.value.message


def test_render_rejects_bad_data_key() -> None:
    credential = IssuedCredential(
        credential_id="k3j5a9x0m2q7w4e8r1t6",
        username="cb_k3j5a9x0m2q7w4e8r1t6",
        expires_at=EXPIRES_AT,
        data={"pass word": PASSWORD},
    )

    with pytest.raises(ValueError, match="pass word") as caught:
        render_secret(
            binding_namespace="shop",
            binding_name="orders",
            binding_uid=BINDING_UID,
            secret_name="orders-db",
            target_name="orders-pg",
            credential=credential,
            issued_at=ISSUED_AT,
        )

    assert PASSWORD not in str(caught.value)


# Timestamps


def test_timestamp_format_utc_seconds() -> None:
    moment = datetime(2026, 3, 4, 23, 30, 15, 999999, tzinfo=timezone(timedelta(hours=-5)))

    assert format_timestamp(moment) == "2026-03-05T04:30:15Z"


def test_timestamp_round_trip() -> None:
    text = format_timestamp(EXPIRES_AT)
    parsed = parse_timestamp(text)

    assert parsed == EXPIRES_AT
    assert parsed.utcoffset() == timedelta(0)


def test_timestamp_parse_offset() -> None:
    parsed = parse_timestamp("2026-01-02T05:04:05+02:00")

    assert parsed == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_timestamp_rejects_naive() -> None:
    with pytest.raises(ValueError, match="time zone"):
        format_timestamp(datetime(2026, 1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="time zone"):
        parse_timestamp("2026-01-02T03:04:05")
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


# Ownership


def test_owned_by_binding() -> None:
    assert is_owned_by(make_secret(), binding_uid=BINDING_UID) is True


def test_owned_other_uid() -> None:
    assert is_owned_by(make_secret(), binding_uid=OTHER_UID) is False


def test_owned_needs_label() -> None:
    secret = make_secret()
    del secret["metadata"]["labels"][MANAGED_BY_LABEL]

    assert is_owned_by(secret, binding_uid=BINDING_UID) is False


def test_owned_needs_controller_reference() -> None:
    secret = make_secret()
    secret["metadata"]["ownerReferences"][0]["controller"] = False

    assert is_owned_by(secret, binding_uid=BINDING_UID) is False


def test_owned_needs_owner_reference() -> None:
    secret = make_secret()
    del secret["metadata"]["ownerReferences"]

    assert is_owned_by(secret, binding_uid=BINDING_UID) is False


def test_owned_rejects_empty_uid() -> None:
    with pytest.raises(ValueError, match="binding_uid"):
        is_owned_by(make_secret(), binding_uid="")


def test_check_ownership_message() -> None:
    with pytest.raises(DeliveryError) as caught:
        check_ownership(unowned_secret(), binding_uid=BINDING_UID, binding_ref="shop/orders")

    assert caught.value.reason is Reason.SECRET_CONFLICT
    assert caught.value.message == (
        "Secret shop/orders-db exists and is not managed by CredentialBinding shop/orders; "
        "rename spec.secretName or delete the Secret"
    )


def test_check_ownership_earlier_binding() -> None:
    # A binding deleted and created again under the same name gets a new uid.
    secret = make_secret(binding_uid=OTHER_UID)

    with pytest.raises(DeliveryError) as caught:
        check_ownership(secret, binding_uid=BINDING_UID, binding_ref="shop/orders")

    assert caught.value.reason is Reason.SECRET_CONFLICT
    assert "earlier CredentialBinding shop/orders" in caught.value.message
    assert OTHER_UID in caught.value.message
    assert "garbage collection" in caught.value.message


def test_check_ownership_accepts_owned() -> None:
    secret = make_secret()

    check_ownership(secret, binding_uid=BINDING_UID, binding_ref="shop/orders")

    with pytest.raises(DeliveryError):
        check_ownership(secret, binding_uid=OTHER_UID, binding_ref="shop/orders")


# read_credential_refs


class DataGuardedSecret(dict[str, Any]):
    """A Secret dict that fails the test when anything reads its ``data``."""

    def __getitem__(self, key: str) -> Any:
        assert key != "data", "read_credential_refs read the Secret's data"
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        assert key != "data", "read_credential_refs read the Secret's data"
        return super().get(key, default)


def test_refs_read_all() -> None:
    previous = PreviousCredential(
        credential_id="p0p0p0p0p0p0p0p0p0p0",
        revoke_at=datetime(2026, 1, 2, 3, 21, 5, tzinfo=UTC),
    )
    secret = DataGuardedSecret(make_secret(previous=previous))

    refs = read_credential_refs(secret)

    assert refs.credential_id == "k3j5a9x0m2q7w4e8r1t6"
    assert refs.expires_at == EXPIRES_AT
    assert refs.issued_at == ISSUED_AT.replace(microsecond=0)
    assert refs.previous == previous
    assert refs.target == "orders-pg"


def test_refs_without_previous(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        refs = read_credential_refs(make_secret())

    assert refs.previous is None
    assert caplog.records == []


def test_refs_missing_annotations(caplog: pytest.LogCaptureFixture) -> None:
    secret = DataGuardedSecret(unowned_secret())

    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        refs = read_credential_refs(secret)

    assert refs.credential_id is None
    assert refs.expires_at is None
    assert refs.issued_at is None
    assert refs.previous is None
    assert refs.target is None
    assert caplog.records
    assert all("shop/orders-db" in record.getMessage() for record in caplog.records)


def test_refs_garbled_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    secret = make_secret()
    secret["metadata"]["annotations"][EXPIRES_AT_ANNOTATION] = "next tuesday"

    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        refs = read_credential_refs(secret)

    assert refs.expires_at is None
    assert refs.credential_id == "k3j5a9x0m2q7w4e8r1t6"
    assert refs.issued_at == ISSUED_AT.replace(microsecond=0)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "shop/orders-db" in messages[0]
    assert EXPIRES_AT_ANNOTATION in messages[0]


def test_refs_incomplete_previous(caplog: pytest.LogCaptureFixture) -> None:
    secret = make_secret()
    secret["metadata"]["annotations"][PREVIOUS_CREDENTIAL_ID_ANNOTATION] = "p0p0p0p0p0p0p0p0p0p0"

    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        refs = read_credential_refs(secret)

    assert refs.previous is None
    assert refs.credential_id == "k3j5a9x0m2q7w4e8r1t6"
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "shop/orders-db" in messages
    assert PREVIOUS_REVOKE_AT_ANNOTATION in messages


def test_refs_non_text_annotation(caplog: pytest.LogCaptureFixture) -> None:
    secret = make_secret()
    secret["metadata"]["annotations"][CREDENTIAL_ID_ANNOTATION] = 42

    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        refs = read_credential_refs(secret)

    assert refs.credential_id is None
    assert CREDENTIAL_ID_ANNOTATION in caplog.text


# SecretStore.get


async def test_store_get_missing(store: SecretStore) -> None:
    assert await store.get("shop", "orders-db") is None


async def test_store_get_plain_dict(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())

    secret = await store.get("shop", "orders-db")

    assert secret is not None
    assert type(secret) is dict
    assert secret["metadata"]["annotations"][TARGET_ANNOTATION] == "orders-pg"


async def test_store_get_converts_model(api: FakeCoreV1Api, store: SecretStore) -> None:
    model = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(
            name="orders-db",
            namespace="shop",
            resource_version="7",
            labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            owner_references=[
                k8s.V1OwnerReference(
                    api_version="credbroker.dev/v1alpha1",
                    kind="CredentialBinding",
                    name="orders",
                    uid=BINDING_UID,
                    controller=True,
                )
            ],
        ),
        data={"password": base64.b64encode(PASSWORD.encode()).decode()},
    )
    api.read_namespaced_secret = lambda name, namespace: model  # type: ignore[method-assign]

    secret = await store.get("shop", "orders-db")

    assert secret is not None
    assert secret["metadata"]["resourceVersion"] == "7"
    assert is_owned_by(secret, binding_uid=BINDING_UID) is True


async def test_store_get_api_error(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.failures["read"] = [api_error(500, "Internal Server Error")]

    with pytest.raises(DeliveryError) as caught:
        await store.get("shop", "orders-db")

    assert caught.value.reason is Reason.ISSUE_FAILED
    assert "500 Internal Server Error" in caught.value.message
    assert "shop/orders-db" in caught.value.message
    assert PASSWORD not in str(caught.value)
    assert caught.value.__suppress_context__ is True


# SecretStore.write


async def test_store_write_creates(api: FakeCoreV1Api, store: SecretStore) -> None:
    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    stored = api.secrets[("shop", "orders-db")]
    assert stored["data"] == make_secret()["data"]
    assert api.calls == ["create"]


async def test_store_write_replaces_owned(api: FakeCoreV1Api, store: SecretStore) -> None:
    old = api.add(make_secret())
    old_version = old["metadata"]["resourceVersion"]
    new_body = make_secret(
        previous=PreviousCredential(
            credential_id="k3j5a9x0m2q7w4e8r1t6",
            revoke_at=datetime(2026, 1, 2, 3, 21, 5, tzinfo=UTC),
        )
    )

    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=new_body)

    assert api.calls == ["create", "read", "replace"]
    assert api.replace_bodies[0]["metadata"]["resourceVersion"] == old_version
    stored = api.secrets[("shop", "orders-db")]
    assert PREVIOUS_CREDENTIAL_ID_ANNOTATION in stored["metadata"]["annotations"]
    assert stored["metadata"]["uid"] == old["metadata"]["uid"]
    assert "resourceVersion" not in new_body["metadata"]


async def test_store_write_conflict(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(unowned_secret())
    before = copy.deepcopy(api.secrets[("shop", "orders-db")])

    with pytest.raises(DeliveryError) as caught:
        await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert caught.value.reason is Reason.SECRET_CONFLICT
    assert "shop/orders-db" in caught.value.message
    assert "spec.secretName" in caught.value.message
    assert api.secrets[("shop", "orders-db")] == before
    assert "replace" not in api.calls


async def test_store_write_other_binding(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret(binding_uid=OTHER_UID))

    with pytest.raises(DeliveryError) as caught:
        await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert caught.value.reason is Reason.SECRET_CONFLICT
    assert "replace" not in api.calls


async def test_store_write_retries_stale_version(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    api.failures["replace"] = [ApiException(status=409, reason="Conflict")]

    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert api.calls == ["create", "read", "replace", "create", "read", "replace"]


async def test_store_write_deleted_meanwhile(api: FakeCoreV1Api, store: SecretStore) -> None:
    # The create reports a conflict, but the Secret is gone by the time it is read.
    api.failures["create"] = [ApiException(status=409, reason="Conflict")]

    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert api.calls == ["create", "read", "create"]
    assert ("shop", "orders-db") in api.secrets


async def test_store_write_gives_up(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    api.failures["replace"] = [
        ApiException(status=409, reason="Conflict") for _ in range(WRITE_ATTEMPTS)
    ]

    with pytest.raises(DeliveryError) as caught:
        await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert caught.value.reason is Reason.SECRET_CONFLICT
    assert api.calls.count("replace") == WRITE_ATTEMPTS
    assert str(WRITE_ATTEMPTS) in caught.value.message


async def test_store_write_forbidden(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.failures["create"] = [api_error(403, "Forbidden")]

    with pytest.raises(DeliveryError) as caught:
        await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert caught.value.reason is Reason.ISSUE_FAILED
    assert "403 Forbidden" in caught.value.message
    assert "create Secrets in namespace shop" in caught.value.message
    assert PASSWORD not in str(caught.value)
    # A traceback must not print the ApiException, whose text includes the response body.
    assert caught.value.__suppress_context__ is True


async def test_store_write_unreachable(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.failures["create"] = [ProtocolError("Connection aborted.")]

    with pytest.raises(DeliveryError) as caught:
        await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())

    assert caught.value.reason is Reason.ISSUE_FAILED
    assert "ProtocolError" in caught.value.message
    assert "shop/orders-db" in caught.value.message


async def test_store_write_rejects_unowned_body(store: SecretStore) -> None:
    with pytest.raises(ValueError, match="render_secret"):
        await store.write(binding_uid=OTHER_UID, binding_ref="shop/orders", body=make_secret())


# SecretStore.delete


async def test_store_delete_owned(api: FakeCoreV1Api, store: SecretStore) -> None:
    stored = api.add(make_secret())

    assert await store.delete("shop", "orders-db", binding_uid=BINDING_UID) is True

    assert ("shop", "orders-db") not in api.secrets
    assert api.delete_bodies[0] == {
        "preconditions": {
            "uid": stored["metadata"]["uid"],
            "resourceVersion": stored["metadata"]["resourceVersion"],
        }
    }


async def test_store_delete_missing(api: FakeCoreV1Api, store: SecretStore) -> None:
    assert await store.delete("shop", "orders-db", binding_uid=BINDING_UID) is False
    assert "delete" not in api.calls


async def test_store_delete_gone_meanwhile(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    api.failures["delete"] = [ApiException(status=404, reason="Not Found")]

    assert await store.delete("shop", "orders-db", binding_uid=BINDING_UID) is False


async def test_store_delete_unowned(
    api: FakeCoreV1Api, store: SecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    api.add(unowned_secret())

    with caplog.at_level(logging.WARNING, logger="credbroker.delivery"):
        deleted = await store.delete("shop", "orders-db", binding_uid=BINDING_UID)

    assert deleted is False
    assert ("shop", "orders-db") in api.secrets
    assert "delete" not in api.calls
    assert "shop/orders-db" in caplog.text


async def test_store_delete_retries_conflict(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    api.failures["delete"] = [ApiException(status=409, reason="Conflict")]

    assert await store.delete("shop", "orders-db", binding_uid=BINDING_UID) is True

    assert api.calls == ["read", "delete", "read", "delete"]


async def test_store_delete_error(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    api.failures["delete"] = [api_error(503, "Service Unavailable")]

    with pytest.raises(DeliveryError) as caught:
        await store.delete("shop", "orders-db", binding_uid=BINDING_UID)

    assert caught.value.reason is Reason.ISSUE_FAILED
    assert "503 Service Unavailable" in caught.value.message
    assert ("shop", "orders-db") in api.secrets


# SecretStore.list_managed


async def test_store_list_managed(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret(name="orders-db"))
    api.add(make_secret(name="orders-db-2"))
    api.add(unowned_secret(name="hand-made"))

    secrets = await store.list_managed()

    assert sorted(secret["metadata"]["name"] for secret in secrets) == ["orders-db", "orders-db-2"]
    assert api.list_requests[0]["label_selector"] == "app.kubernetes.io/managed-by=credbroker"
    assert api.list_requests[0]["namespace"] is None


async def test_store_list_namespace(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.add(make_secret())
    other = make_secret()
    other["metadata"]["namespace"] = "billing"
    api.add(other)

    secrets = await store.list_managed("billing")

    assert [secret["metadata"]["namespace"] for secret in secrets] == ["billing"]
    assert api.list_requests[0]["namespace"] == "billing"


async def test_store_list_follows_pages(
    api: FakeCoreV1Api, store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("credbroker.delivery.LIST_PAGE_SIZE_ITEMS", 2)
    names = [f"orders-db-{index}" for index in range(5)]
    for name in names:
        api.add(make_secret(name=name))

    secrets = await store.list_managed()

    assert sorted(secret["metadata"]["name"] for secret in secrets) == names
    assert len(api.list_requests) == 3


async def test_store_list_error(api: FakeCoreV1Api, store: SecretStore) -> None:
    api.failures["list"] = [api_error(403, "Forbidden")]

    with pytest.raises(DeliveryError) as caught:
        await store.list_managed()

    assert caught.value.reason is Reason.ISSUE_FAILED
    assert "list Secrets in all namespaces" in caught.value.message
    assert PASSWORD not in str(caught.value)


# SecretStore with the real kubernetes client, over loopback to the kmock emulator


async def test_store_real_client(kmock: Any) -> None:
    # kmock's emulator handles POST, GET, PATCH and DELETE but not PUT, so the
    # PUT of the replacement gets its own request body back as the response.
    kmock["put /api/v1/namespaces/shop/secrets/orders-db"] << (lambda request: request.data)
    configuration = k8s.Configuration(host=str(kmock.url).rstrip("/"))
    store = SecretStore(k8s.CoreV1Api(k8s.ApiClient(configuration)))
    renewed = make_secret(
        previous=PreviousCredential(
            credential_id="k3j5a9x0m2q7w4e8r1t6",
            revoke_at=datetime(2026, 1, 2, 3, 21, 5, tzinfo=UTC),
        )
    )

    assert await store.get("shop", "orders-db") is None
    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=make_secret())
    await store.write(binding_uid=BINDING_UID, binding_ref="shop/orders", body=renewed)
    listed = await store.list_managed()
    deleted = await store.delete("shop", "orders-db", binding_uid=BINDING_UID)

    requests = list(kmock)
    assert [request.method.value for request in requests] == [
        "GET",  # get: 404
        "POST",  # first write: created
        "POST",  # second write: 409
        "GET",
        "PUT",
        "GET",  # list_managed
        "GET",  # delete: ownership check
        "DELETE",
    ]
    assert requests[1].data["metadata"]["ownerReferences"][0]["uid"] == BINDING_UID
    assert requests[1].data["data"] == make_secret()["data"]
    put_annotations = requests[4].data["metadata"]["annotations"]
    assert put_annotations[PREVIOUS_CREDENTIAL_ID_ANNOTATION] == "k3j5a9x0m2q7w4e8r1t6"
    assert requests[5].url.path == "/api/v1/secrets"
    assert requests[5].params["labelSelector"] == "app.kubernetes.io/managed-by=credbroker"
    assert requests[5].params["limit"] == "500"
    assert "preconditions" in requests[7].data
    assert [secret["metadata"]["name"] for secret in listed] == ["orders-db"]
    assert deleted is True
