"""Builds and caches one live ``Target`` per CredentialTarget.

A target is rebuilt when its spec or its admin Secret changes, so a rotated
admin password is picked up without a restart. The admin Secret is read
only from the operator's own namespace and never copied anywhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from credbroker.errors import TargetError
from credbroker.kube import KubeGateway
from credbroker.reasons import Reason
from credbroker.resources import CredentialTargetSpec
from credbroker.targets.base import Target
from credbroker.targets.postgres import PostgresTarget

logger = logging.getLogger(__name__)

ADMIN_SECRET_REFRESH_SECONDS = 30.0


@dataclass(slots=True)
class _Entry:
    spec_version: str
    secret_version: str
    checked_at: float
    target: Target


class TargetRegistry:
    """Live targets by CredentialTarget name."""

    def __init__(self, *, kube: KubeGateway, operator_namespace: str) -> None:
        self._kube = kube
        self._operator_namespace = operator_namespace
        self._entries: dict[str, _Entry] = {}

    async def get(
        self, *, name: str, body: Mapping[str, Any], spec: CredentialTargetSpec
    ) -> Target:
        """Return the live target for a CredentialTarget, building it when needed.

        Raises ``TargetError`` with ``AdminSecretInvalid`` when the admin Secret
        is missing or lacks a key.
        """
        spec_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        entry = self._entries.get(name)
        now = time.monotonic()
        if (
            entry is not None
            and entry.spec_version == spec_version
            and now - entry.checked_at < ADMIN_SECRET_REFRESH_SECONDS
        ):
            return entry.target

        if spec.postgresql is None:
            raise TargetError(
                Reason.TARGET_TYPE_UNSUPPORTED,
                f"target {name} has type {spec.type} but no {spec.type} block; "
                f"add spec.{spec.type}",
            )
        secret_ref = spec.postgresql.admin_secret_ref
        secret = await self._kube.read_secret_data(
            namespace=self._operator_namespace, name=secret_ref.name
        )
        if secret is None:
            raise TargetError(
                Reason.ADMIN_SECRET_INVALID,
                f"admin Secret {self._operator_namespace}/{secret_ref.name} of target {name} "
                "was not found; create it in the operator's namespace",
            )

        if (
            entry is not None
            and entry.spec_version == spec_version
            and (entry.secret_version == secret.resource_version)
        ):
            entry.checked_at = now
            return entry.target

        target = PostgresTarget.from_spec(
            target_name=name,
            spec=(body.get("spec") or {}).get("postgresql") or {},
            allowed_roles=list(spec.allowed_roles),
            admin_secret_data=secret.data,
            username_key=secret_ref.username_key,
            password_key=secret_ref.password_key,
        )
        if entry is not None:
            await self._close_quietly(name, entry.target)
        self._entries[name] = _Entry(
            spec_version=spec_version,
            secret_version=secret.resource_version,
            checked_at=now,
            target=target,
        )
        logger.info("Target %s is configured (resourceVersion %s)", name, spec_version)
        return target

    async def forget(self, name: str) -> None:
        """Drop and close a target, for example when its CredentialTarget is deleted."""
        entry = self._entries.pop(name, None)
        if entry is not None:
            await self._close_quietly(name, entry.target)

    async def close(self) -> None:
        """Close every target's connections."""
        for name in list(self._entries):
            await self.forget(name)

    async def _close_quietly(self, name: str, target: Target) -> None:
        try:
            await target.close()
        except Exception as error:  # closing must not stop a reconcile
            logger.warning("Closing target %s failed: %s", name, type(error).__name__)
