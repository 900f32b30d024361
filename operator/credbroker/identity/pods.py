"""The pod reference: which pod, as the API server describes it, a token must be bound to."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"
SERVICE_ACCOUNT_SUBJECT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodRef:
    """The fields of a Pod that a projected service-account token must match.

    ``uid`` distinguishes a pod from a later pod with the same name, so a token
    bound to a deleted pod never passes for its successor.
    """

    namespace: str
    name: str
    uid: str
    service_account: str
    node_name: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("namespace", "name", "uid", "service_account"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"PodRef.{field_name} must be a non-empty string, got {value!r}")

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodRef:
        """Read a Pod object (a dict or a kopf body) as the API server returns it.

        ``spec.serviceAccountName`` defaults to ``default``, as it does in the
        API. Raises ValueError naming the missing field.
        """
        metadata = pod.get("metadata")
        if not isinstance(metadata, Mapping):
            raise ValueError("pod has no metadata. Pass the Pod object as read from the API server")
        spec = pod.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"pod spec must be a mapping, got {type(spec).__name__}")

        namespace = _required_string(metadata, "namespace")
        name = _required_string(metadata, "name")
        uid = _required_string(metadata, "uid")

        service_account = spec.get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
        node_name = spec.get("nodeName") or None
        if not isinstance(service_account, str):
            raise ValueError(f"pod {namespace}/{name}: spec.serviceAccountName must be a string")
        if node_name is not None and not isinstance(node_name, str):
            raise ValueError(f"pod {namespace}/{name}: spec.nodeName must be a string")

        return cls(
            namespace=namespace,
            name=name,
            uid=uid,
            service_account=service_account,
            node_name=node_name,
        )

    @property
    def subject(self) -> str:
        """The ``sub`` claim of the pod's tokens: ``system:serviceaccount:<ns>:<sa>``."""
        return f"{SERVICE_ACCOUNT_SUBJECT_PREFIX}{self.namespace}:{self.service_account}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _required_string(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"pod has no metadata.{key}. Pass the Pod object as read from the API server"
        )
    return value
