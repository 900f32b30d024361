"""The few Kubernetes API calls the pipeline makes, behind one small async gateway.

The official ``kubernetes`` client is blocking, so every call runs in the
default executor (sized by ``OperatorSettings.api_threads``). Results come
back as plain dicts in the API's own camelCase, the same shape kopf hands to
handlers, so the pipeline never depends on the client's model classes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

GROUP = "credbroker.dev"
VERSION = "v1alpha1"
TARGETS_PLURAL = "credentialtargets"
BINDINGS_PLURAL = "credentialbindings"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True, slots=True)
class SecretData:
    """A Secret's decoded data and its resource version. Never log ``data``."""

    resource_version: str
    data: Mapping[str, bytes]

    def __repr__(self) -> str:
        return f"SecretData(resource_version={self.resource_version!r}, keys={sorted(self.data)!r})"


class EventRecorder(Protocol):
    """Posts Kubernetes Events about an object."""

    def emit(self, obj: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        """Post one event; must not raise."""
        ...


class KubeGateway:
    """Reads targets and admin Secrets, and writes status, through the official client."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.authn = k8s.AuthenticationV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self._known_targets: dict[str, dict[str, Any]] = {}

    def remember_target(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        """Keep the latest CredentialTarget from a watch event, so passes need not read it."""
        name = str((body.get("metadata") or {}).get("name", ""))
        if deleted:
            self._known_targets.pop(name, None)
        elif name:
            self._known_targets[name] = dict(body)

    async def get_target(self, name: str) -> dict[str, Any] | None:
        """Return the CredentialTarget named ``name``, or ``None`` when it does not exist.

        A target seen in a watch event is returned from memory. Any other name
        is read from the API server, so a target that the watch has not
        reported yet is still found.
        """
        known = self._known_targets.get(name)
        if known is not None:
            return known
        try:
            result = await asyncio.to_thread(
                self.custom.get_cluster_custom_object, GROUP, VERSION, TARGETS_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _as_dict(result)

    async def read_secret_data(self, *, namespace: str, name: str) -> SecretData | None:
        """Return a Secret's decoded data, or ``None`` when it does not exist."""
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        encoded: Mapping[str, Any] = secret.data or {}
        decoded = {key: base64.b64decode(value) for key, value in encoded.items()}
        version = secret.metadata.resource_version if secret.metadata else ""
        return SecretData(resource_version=str(version), data=decoded)

    async def patch_secret_annotations(
        self, *, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Set or remove (with ``None``) annotations of a Secret with a merge patch."""
        body = {"metadata": {"annotations": dict(annotations)}}
        await asyncio.to_thread(self.core.patch_namespaced_secret, name, namespace, body)

    async def patch_binding_status(
        self, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Replace the parts of a binding's status that ``status`` names (merge patch)."""
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                BINDINGS_PLURAL,
                name,
                {"status": dict(status)},
            )
        except ApiException as error:
            if error.status == 404:
                logger.info("Binding %s/%s is gone; its status was not written", namespace, name)
                return
            raise

    async def patch_target_status(self, *, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into a target's status."""
        try:
            await asyncio.to_thread(
                self.custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                TARGETS_PLURAL,
                name,
                {"status": dict(status)},
            )
        except ApiException as error:
            if error.status == 404:
                logger.info("Target %s is gone; its status was not written", name)
                return
            raise

    async def list_bindings(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """List CredentialBindings in one namespace, or in all of them."""
        if namespace is None:
            result = await asyncio.to_thread(
                self.custom.list_cluster_custom_object, GROUP, VERSION, BINDINGS_PLURAL
            )
        else:
            result = await asyncio.to_thread(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                BINDINGS_PLURAL,
            )
        return [_as_dict(item) for item in _as_dict(result).get("items", [])]


def _as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object from the API server, got {type(value).__name__}")
    return dict(value)


def object_ref(body: Mapping[str, Any]) -> str:
    """Return ``namespace/name`` (or ``name`` when cluster-scoped) for logs and messages."""
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "?")
    return f"{namespace}/{name}" if namespace else str(name)
