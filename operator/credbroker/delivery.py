"""Delivery: the Secret that carries a credential from credbroker to the application.

A delivered Secret is owned by its CredentialBinding twice over: its
controller ``ownerReference`` names the binding's uid, and it carries the
``app.kubernetes.io/managed-by=credbroker`` label. credbroker overwrites or
deletes only Secrets that have both, so it never takes over a Secret that a
person or another controller created under the same name.

Annotations record which credential the Secret contains and until when, and
after a renewal, which replaced credential is still valid and when it gets
revoked. The sweeper reads these annotations (never ``data``) to find
credentials to revoke after a crash.

``SecretStore`` wraps the blocking ``kubernetes`` client and hands back
Secrets as plain dicts in the API's camelCase, the shape that
``render_secret`` builds and kopf passes to handlers. Never log such a dict,
because its ``data`` contains the password.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from credbroker.errors import DeliveryError
from credbroker.kube import API_VERSION
from credbroker.reasons import Reason
from credbroker.targets.base import IssuedCredential
from credbroker.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "BINDING_API_VERSION",
    "BINDING_KIND",
    "BINDING_LABEL",
    "CREDENTIAL_ID_ANNOTATION",
    "EXPIRES_AT_ANNOTATION",
    "ISSUED_AT_ANNOTATION",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MANAGED_SELECTOR",
    "PREVIOUS_CREDENTIAL_ID_ANNOTATION",
    "PREVIOUS_REVOKE_AT_ANNOTATION",
    "TARGET_ANNOTATION",
    "PreviousCredential",
    "SecretCredentialRefs",
    "SecretStore",
    "SecretsApi",
    "check_ownership",
    "format_timestamp",
    "is_owned_by",
    "parse_timestamp",
    "read_credential_refs",
    "render_secret",
    "secret_ref",
    "validate_binding_name",
]

logger = logging.getLogger(__name__)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "credbroker"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
BINDING_LABEL = "credbroker.dev/binding"

EXPIRES_AT_ANNOTATION = "credbroker.dev/expires-at"
ISSUED_AT_ANNOTATION = "credbroker.dev/issued-at"
CREDENTIAL_ID_ANNOTATION = "credbroker.dev/credential-id"
TARGET_ANNOTATION = "credbroker.dev/target"
# The credential that a renewal replaced, and when it will be revoked. The
# sweeper keeps the credential named here until that time, so a crash in the
# middle of a renewal leaves the replaced credential findable.
PREVIOUS_CREDENTIAL_ID_ANNOTATION = "credbroker.dev/previous-credential-id"
PREVIOUS_REVOKE_AT_ANNOTATION = "credbroker.dev/previous-revoke-at"

BINDING_API_VERSION = API_VERSION
BINDING_KIND = "CredentialBinding"

LABEL_VALUE_MAX_LENGTH = 63
WRITE_ATTEMPTS = 3
"""Attempts of a write or delete that loses a race with another client before giving up."""
LIST_PAGE_SIZE_ITEMS = 500

# Kubernetes validation rule for a key in a Secret's data.
_SECRET_KEY_PATTERN = re.compile(r"[-._a-zA-Z0-9]+")

_HTTP_NOT_FOUND = 404
_HTTP_CONFLICT = 409
_HTTP_FORBIDDEN = 403


@dataclass(frozen=True)
class PreviousCredential:
    """A credential replaced by a renewal, and the time it is revoked."""

    credential_id: str
    revoke_at: datetime


@dataclass(frozen=True, kw_only=True)
class SecretCredentialRefs:
    """The credential references stored in a Secret's annotations.

    A field is ``None`` when its annotation is missing or cannot be parsed.
    """

    credential_id: str | None
    expires_at: datetime | None
    issued_at: datetime | None
    previous: PreviousCredential | None
    target: str | None = None


def render_secret(
    *,
    binding_namespace: str,
    binding_name: str,
    binding_uid: str,
    secret_name: str,
    target_name: str,
    credential: IssuedCredential,
    issued_at: datetime,
    previous: PreviousCredential | None = None,
) -> dict[str, Any]:
    """Build the v1 Secret body that delivers ``credential`` for a binding.

    ``data`` contains ``credential.data`` base64-encoded. Labels and
    annotations contain only ids, names and times, never a data value.

    Raises:
        DeliveryError: INVALID_SPEC when the binding name does not fit in a
            label value.
        ValueError: when a timestamp is naive or a data key is not a valid
            Secret key.
    """
    validate_binding_name(binding_namespace=binding_namespace, binding_name=binding_name)

    annotations = {
        CREDENTIAL_ID_ANNOTATION: credential.credential_id,
        EXPIRES_AT_ANNOTATION: format_timestamp(credential.expires_at),
        ISSUED_AT_ANNOTATION: format_timestamp(issued_at),
        TARGET_ANNOTATION: target_name,
    }
    if previous is not None:
        annotations[PREVIOUS_CREDENTIAL_ID_ANNOTATION] = previous.credential_id
        annotations[PREVIOUS_REVOKE_AT_ANNOTATION] = format_timestamp(previous.revoke_at)

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name,
            "namespace": binding_namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                BINDING_LABEL: binding_name,
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": BINDING_API_VERSION,
                    "kind": BINDING_KIND,
                    "name": binding_name,
                    "uid": binding_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": _encode_data(credential.data),
    }


def validate_binding_name(*, binding_namespace: str, binding_name: str) -> None:
    """Raise ``DeliveryError`` (INVALID_SPEC) when the name cannot be a Secret label value.

    ``render_secret`` runs this check too. Call it before minting a
    credential, so that a binding whose Secret cannot be written gets none.
    """
    # Kubernetes object names use a subset of the label value characters, so
    # only the length can make a binding name an invalid label value.
    if len(binding_name) > LABEL_VALUE_MAX_LENGTH:
        raise DeliveryError(
            Reason.INVALID_SPEC,
            f"CredentialBinding {binding_namespace}/{binding_name} has a name of "
            f"{len(binding_name)} characters, but the {BINDING_LABEL} label of its Secret "
            f"allows at most {LABEL_VALUE_MAX_LENGTH}; recreate the binding with a shorter name",
        )


def secret_ref(secret: Mapping[str, Any]) -> str:
    """Return a Secret's ``namespace/name`` for logs and messages."""
    metadata = secret.get("metadata") or {}
    return f"{metadata.get('namespace', '?')}/{metadata.get('name', '?')}"


def is_owned_by(secret: Mapping[str, Any], *, binding_uid: str) -> bool:
    """Tell whether the binding with ``binding_uid`` manages this Secret.

    Both marks are required: the managed-by label and a controller
    ``ownerReference`` with the binding's uid.
    """
    if not binding_uid:
        raise ValueError("binding_uid is empty; pass the CredentialBinding's metadata.uid")

    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return False

    owner_references = metadata.get("ownerReferences") or []
    return any(
        reference.get("controller") is True and reference.get("uid") == binding_uid
        for reference in owner_references
    )


def check_ownership(secret: Mapping[str, Any], *, binding_uid: str, binding_ref: str) -> None:
    """Raise ``DeliveryError`` (SECRET_CONFLICT) unless the binding manages this Secret.

    ``binding_ref`` is the binding as ``namespace/name``, for the message.
    """
    if is_owned_by(secret, binding_uid=binding_uid):
        return

    stale_uid = _earlier_binding_uid(secret, binding_ref=binding_ref)
    if stale_uid is not None:
        raise DeliveryError(
            Reason.SECRET_CONFLICT,
            f"Secret {secret_ref(secret)} belongs to an earlier CredentialBinding {binding_ref} "
            f"(uid {stale_uid}) that was deleted; Kubernetes garbage collection removes it, "
            "or delete the Secret now",
        )
    raise DeliveryError(
        Reason.SECRET_CONFLICT,
        f"Secret {secret_ref(secret)} exists and is not managed by CredentialBinding "
        f"{binding_ref}; rename spec.secretName or delete the Secret",
    )


def read_credential_refs(secret: Mapping[str, Any]) -> SecretCredentialRefs:
    """Read the credential references from a Secret's annotations, never from ``data``.

    A missing or unparsable annotation becomes ``None`` and logs a warning
    that names the Secret. The previous credential is returned only when both
    its id and its revocation time can be read. Without the time, the sweeper
    cannot know how long to keep the credential, so it is treated as absent.
    """
    ref = secret_ref(secret)
    metadata = secret.get("metadata") or {}
    annotations: Mapping[str, Any] = metadata.get("annotations") or {}

    credential_id = _read_text(annotations, CREDENTIAL_ID_ANNOTATION, secret=ref)
    expires_at = _read_time(annotations, EXPIRES_AT_ANNOTATION, secret=ref)
    issued_at = _read_time(annotations, ISSUED_AT_ANNOTATION, secret=ref)
    target = _read_text(annotations, TARGET_ANNOTATION, secret=ref)

    previous: PreviousCredential | None = None
    has_previous_id = PREVIOUS_CREDENTIAL_ID_ANNOTATION in annotations
    has_previous_time = PREVIOUS_REVOKE_AT_ANNOTATION in annotations
    if has_previous_id or has_previous_time:
        previous_id = _read_text(annotations, PREVIOUS_CREDENTIAL_ID_ANNOTATION, secret=ref)
        revoke_at = _read_time(annotations, PREVIOUS_REVOKE_AT_ANNOTATION, secret=ref)
        if previous_id is not None and revoke_at is not None:
            previous = PreviousCredential(credential_id=previous_id, revoke_at=revoke_at)
        else:
            logger.warning(
                "Secret %s has an incomplete previous-credential record; ignoring it",
                ref,
            )

    return SecretCredentialRefs(
        credential_id=credential_id,
        expires_at=expires_at,
        issued_at=issued_at,
        previous=previous,
        target=target,
    )


class ApiSerializer(Protocol):
    """The part of ``kubernetes.client.ApiClient`` that turns models into plain data."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        """Convert a model, or a list or dict of models, to JSON-ready data."""
        ...


class SecretsApi(Protocol):
    """The methods of ``kubernetes.client.CoreV1Api`` that ``SecretStore`` calls."""

    @property
    def api_client(self) -> ApiSerializer:
        """The client whose ``sanitize_for_serialization`` converts results."""
        ...

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        """Return the Secret; raise ``ApiException`` (404 when absent)."""
        ...

    def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
        """Create the Secret; raise ``ApiException`` (409 when it exists)."""
        ...

    def replace_namespaced_secret(self, name: str, namespace: str, body: Any) -> Any:
        """Replace the Secret; raise ``ApiException`` (409 on a stale resourceVersion)."""
        ...

    def delete_namespaced_secret(self, name: str, namespace: str, *, body: Any) -> Any:
        """Delete the Secret; raise ``ApiException`` (409 when a precondition fails)."""
        ...

    def list_secret_for_all_namespaces(
        self, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> Any:
        """Return one page of Secrets in all namespaces."""
        ...

    def list_namespaced_secret(
        self, namespace: str, *, label_selector: str, limit: int, _continue: str | None = None
    ) -> Any:
        """Return one page of Secrets in one namespace."""
        ...


class SecretStore:
    """Read, write, delete and list delivered Secrets without blocking the event loop.

    Each blocking client call runs in ``asyncio.to_thread``. Results are
    converted to plain dicts with ``api_client.sanitize_for_serialization``.
    That keeps the client's response validation, accepts both model objects
    and plain dicts (tested with kubernetes client 37), and needs no handling
    of raw HTTP responses, which ``_preload_content=False`` would.

    Unexpected API failures raise ``DeliveryError`` with the HTTP status and
    reason, never the response body. A 409 conflict that retries cannot
    resolve raises SECRET_CONFLICT, and any other failure raises ISSUE_FAILED.
    """

    def __init__(self, api: SecretsApi) -> None:
        self.api_calls = 0
        self._api = api

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the Secret as a plain dict, or ``None`` when it does not exist."""
        try:
            result = await self._call(self._api.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == _HTTP_NOT_FOUND:
                return None
            raise _api_error(error, verb="get", namespace=namespace, name=name) from None
        except HTTPError as error:
            raise _connection_error(error, verb="get", namespace=namespace, name=name) from None
        return self._to_dict(result)

    async def write(self, *, binding_uid: str, binding_ref: str, body: Mapping[str, Any]) -> None:
        """Create the Secret, or replace it when this binding already manages it.

        ``body`` comes from ``render_secret``. A replacement overwrites the
        whole object, including labels and annotations that others added.

        Raises:
            DeliveryError: SECRET_CONFLICT when a Secret of that name exists
                and is not managed by the binding, or keeps changing during
                ``WRITE_ATTEMPTS`` attempts. ISSUE_FAILED on other API errors.
        """
        metadata = body["metadata"]
        namespace: str = metadata["namespace"]
        name: str = metadata["name"]
        if not is_owned_by(body, binding_uid=binding_uid):
            raise ValueError(
                f"body for Secret {namespace}/{name} lacks the managed-by label or the "
                f"controller ownerReference for uid {binding_uid}; build it with render_secret"
            )

        for attempt in range(1, WRITE_ATTEMPTS + 1):
            if await self._create(namespace=namespace, name=name, body=body):
                logger.info("Created Secret %s/%s for binding %s", namespace, name, binding_ref)
                return

            existing = await self.get(namespace, name)
            if existing is None:
                logger.info(
                    "Secret %s/%s was deleted while being written (attempt %d of %d)",
                    namespace,
                    name,
                    attempt,
                    WRITE_ATTEMPTS,
                )
                continue
            check_ownership(existing, binding_uid=binding_uid, binding_ref=binding_ref)

            resource_version = (existing.get("metadata") or {}).get("resourceVersion")
            replacement = {**body, "metadata": {**metadata, "resourceVersion": resource_version}}
            if await self._replace(namespace=namespace, name=name, body=replacement):
                logger.info("Replaced Secret %s/%s for binding %s", namespace, name, binding_ref)
                return
            logger.info(
                "Secret %s/%s changed while being written (attempt %d of %d)",
                namespace,
                name,
                attempt,
                WRITE_ATTEMPTS,
            )

        raise DeliveryError(
            Reason.SECRET_CONFLICT,
            f"Secret {namespace}/{name} changed during each of {WRITE_ATTEMPTS} write "
            "attempts; find the other client that writes it, or rename spec.secretName",
        )

    async def delete(self, namespace: str, name: str, *, binding_uid: str) -> bool:
        """Delete the Secret if the binding with ``binding_uid`` manages it.

        Returns ``True`` when this call deleted it. Returns ``False`` when it
        does not exist, or when it is not managed by the binding. A Secret
        not managed by the binding is left in place and a warning is logged.
        The delete is conditional on the uid and resourceVersion that were
        read, so a Secret replaced in the meantime is checked again.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            existing = await self.get(namespace, name)
            if existing is None:
                return False
            if not is_owned_by(existing, binding_uid=binding_uid):
                logger.warning(
                    "Secret %s/%s is not managed by the binding with uid %s; not deleting it",
                    namespace,
                    name,
                    binding_uid,
                )
                return False

            existing_metadata = existing.get("metadata") or {}
            preconditions = {
                "uid": existing_metadata.get("uid"),
                "resourceVersion": existing_metadata.get("resourceVersion"),
            }
            try:
                await self._call(
                    self._api.delete_namespaced_secret,
                    name,
                    namespace,
                    body={"preconditions": preconditions},
                )
            except ApiException as error:
                if error.status == _HTTP_NOT_FOUND:
                    return False
                if error.status != _HTTP_CONFLICT:
                    raise _api_error(error, verb="delete", namespace=namespace, name=name) from None
                logger.info(
                    "Secret %s/%s changed while being deleted (attempt %d of %d)",
                    namespace,
                    name,
                    attempt,
                    WRITE_ATTEMPTS,
                )
                continue
            except HTTPError as error:
                raise _connection_error(
                    error, verb="delete", namespace=namespace, name=name
                ) from None
            logger.info("Deleted Secret %s/%s", namespace, name)
            return True

        raise DeliveryError(
            Reason.SECRET_CONFLICT,
            f"Secret {namespace}/{name} changed during each of {WRITE_ATTEMPTS} delete "
            "attempts; find the other client that writes it",
        )

    async def list_managed(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """List the Secrets labelled as managed by credbroker, in one or all namespaces.

        The label selector is applied by the API server, and pages of
        ``LIST_PAGE_SIZE_ITEMS`` are followed to the end. Items contain
        ``data``, and list items may lack ``apiVersion`` and ``kind``.
        """
        items: list[dict[str, Any]] = []
        continue_token: str | None = None
        while True:
            page = await self._list_page(namespace=namespace, continue_token=continue_token)
            items.extend(page.get("items") or [])
            continue_token = (page.get("metadata") or {}).get("continue") or None
            if continue_token is None:
                return items

    async def _create(self, *, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
        """Create the Secret; return ``False`` when one of that name exists."""
        try:
            await self._call(self._api.create_namespaced_secret, namespace, body)
        except ApiException as error:
            if error.status == _HTTP_CONFLICT:
                return False
            raise _api_error(error, verb="create", namespace=namespace, name=name) from None
        except HTTPError as error:
            raise _connection_error(error, verb="create", namespace=namespace, name=name) from None
        return True

    async def _replace(self, *, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
        """Replace the Secret; return ``False`` when it changed or vanished since it was read."""
        try:
            await self._call(self._api.replace_namespaced_secret, name, namespace, body)
        except ApiException as error:
            if error.status in (_HTTP_CONFLICT, _HTTP_NOT_FOUND):
                return False
            raise _api_error(error, verb="update", namespace=namespace, name=name) from None
        except HTTPError as error:
            raise _connection_error(error, verb="update", namespace=namespace, name=name) from None
        return True

    async def _list_page(
        self, *, namespace: str | None, continue_token: str | None
    ) -> dict[str, Any]:
        try:
            if namespace is None:
                result = await self._call(
                    self._api.list_secret_for_all_namespaces,
                    label_selector=MANAGED_SELECTOR,
                    limit=LIST_PAGE_SIZE_ITEMS,
                    _continue=continue_token,
                )
            else:
                result = await self._call(
                    self._api.list_namespaced_secret,
                    namespace,
                    label_selector=MANAGED_SELECTOR,
                    limit=LIST_PAGE_SIZE_ITEMS,
                    _continue=continue_token,
                )
        except ApiException as error:
            raise _api_error(error, verb="list", namespace=namespace, name=None) from None
        except HTTPError as error:
            raise _connection_error(error, verb="list", namespace=namespace, name=None) from None
        return self._to_dict(result)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one blocking client call in a thread, counting it in ``api_calls``."""
        self.api_calls += 1
        return await asyncio.to_thread(method, *args, **kwargs)

    def _to_dict(self, result: Any) -> dict[str, Any]:
        converted = self._api.api_client.sanitize_for_serialization(result)
        if not isinstance(converted, dict):
            raise TypeError(
                f"expected the Kubernetes API to return an object, got {type(result).__name__}"
            )
        return converted


def _encode_data(data: Mapping[str, str]) -> dict[str, str]:
    encoded: dict[str, str] = {}
    for key, value in data.items():
        if _SECRET_KEY_PATTERN.fullmatch(key) is None:
            raise ValueError(
                f"credential data key {key!r} is not a valid Secret key; use only letters, "
                "digits, '-', '_' and '.'"
            )
        encoded[key] = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return encoded


def _earlier_binding_uid(secret: Mapping[str, Any], *, binding_ref: str) -> str | None:
    """Return the uid of a deleted binding of the same name that still owns the Secret."""
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None

    binding_name = binding_ref.rpartition("/")[2]
    for reference in metadata.get("ownerReferences") or []:
        if (
            reference.get("controller") is True
            and reference.get("kind") == BINDING_KIND
            and reference.get("name") == binding_name
        ):
            uid = reference.get("uid")
            return uid if isinstance(uid, str) else None
    return None


def _read_text(annotations: Mapping[str, Any], key: str, *, secret: str) -> str | None:
    value = annotations.get(key)
    if isinstance(value, str) and value:
        return value
    if value is None:
        logger.warning("Secret %s has no %s annotation", secret, key)
    else:
        logger.warning("Secret %s has an empty or non-text %s annotation", secret, key)
    return None


def _read_time(annotations: Mapping[str, Any], key: str, *, secret: str) -> datetime | None:
    text = _read_text(annotations, key, secret=secret)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        logger.warning(
            "Secret %s has an invalid %s annotation %r; expected a form such as "
            "2026-01-02T03:04:05Z",
            secret,
            key,
            text[:64],
        )
        return None


def _api_error(error: Any, *, verb: str, namespace: str | None, name: str | None) -> DeliveryError:
    """Turn an ``ApiException`` into a ``DeliveryError`` without its body or headers.

    ``name`` is ``None`` for a list, and ``namespace`` is ``None`` for a list
    across all namespaces.
    """
    status = error.status
    # NOTE: failed Secret access is reported as ISSUE_FAILED until reasons.py
    # has a reason of its own for it.
    reason = Reason.SECRET_CONFLICT if status == _HTTP_CONFLICT else Reason.ISSUE_FAILED
    message = f"Could not {verb} {_subject(namespace, name)}: the Kubernetes API returned {status}"
    if error.reason:
        message += f" {error.reason}"
    if status == _HTTP_FORBIDDEN:
        scope = "all namespaces" if namespace is None else f"namespace {namespace}"
        message += f"; allow the operator's ServiceAccount to {verb} Secrets in {scope}"
    return DeliveryError(reason, message)


def _connection_error(
    error: HTTPError, *, verb: str, namespace: str | None, name: str | None
) -> DeliveryError:
    """Turn a transport failure into a ``DeliveryError`` naming only the error's type."""
    return DeliveryError(
        Reason.ISSUE_FAILED,
        f"Could not {verb} {_subject(namespace, name)}: {type(error).__name__} while "
        "connecting to the Kubernetes API; check that the API server is reachable",
    )


def _subject(namespace: str | None, name: str | None) -> str:
    if name is not None:
        return f"Secret {namespace}/{name}"
    if namespace is not None:
        return f"Secrets in namespace {namespace}"
    return "Secrets in all namespaces"
