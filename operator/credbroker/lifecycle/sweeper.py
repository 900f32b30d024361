"""Sweep one target: drop expired and orphaned credentials, delete expired Secrets.

A sweep makes one list call on the target and one paged list of managed
Secrets on the API server. Then it makes one revoke or delete per
credential it removes, so its calls grow with what it removes rather than
with how many credentials are live. Only the list pages grow with the live
count, by one per 500 Secrets.

A credential on the target is removed when:
- its expiry has passed (``Expired``), or
- no managed Secret references it, as current or as previous credential
  still inside its grace period, and it is older than the orphan age
  (``Orphaned``). The age keeps a sweep from racing an issuance whose
  Secret is about to be written. A direct credential, which the exchange
  endpoint returns to a workload and marks with a binding but an empty
  Secret name, is never an orphan: it is dropped only when expired.

A managed Secret is deleted when its ``expires-at`` has passed: its
credential no longer works, and a renewal would have replaced it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from credbroker import audit
from credbroker.delivery import TARGET_ANNOTATION, SecretStore, read_credential_refs
from credbroker.metrics import Metrics
from credbroker.reasons import Reason
from credbroker.targets.base import FoundCredential, Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepReport:
    """The counts and duration of one sweep."""

    target: str
    credentials_seen: int
    secrets_seen: int
    revoked_expired: int
    revoked_orphaned: int
    secrets_deleted: int
    api_calls: int
    target_calls: int
    duration_seconds: float


async def sweep_target(
    *,
    target_name: str,
    target: Target,
    secrets: SecretStore,
    namespaces: Sequence[str] | None,
    now: datetime,
    orphan_min_age: timedelta,
    metrics: Metrics | None = None,
) -> SweepReport:
    """Sweep ``target``; ``namespaces`` limits the Secrets read (``None``: all namespaces)."""
    metrics = metrics if metrics is not None else Metrics()
    started = time.perf_counter()
    api_calls_before = secrets.api_calls
    target_calls = 1
    found = await target.list_credentials()

    managed: list[dict[str, Any]] = []
    for namespace in namespaces if namespaces is not None else [None]:
        managed.extend(await secrets.list_managed(namespace))
    mine = [secret for secret in managed if _target_of(secret) == target_name]

    referenced: set[str] = set()
    secrets_deleted = 0
    for secret in mine:
        refs = read_credential_refs(secret)
        if refs.expires_at is not None and refs.expires_at <= now:
            if await _delete_expired_secret(secret, secrets=secrets, target_name=target_name):
                secrets_deleted += 1
                metrics.secret_swept(target_type=target.kind, reason=Reason.EXPIRED)
            continue
        if refs.credential_id:
            referenced.add(refs.credential_id)
        if refs.previous is not None and refs.previous.revoke_at > now:
            referenced.add(refs.previous.credential_id)

    revoked_expired = 0
    revoked_orphaned = 0
    watched = set(namespaces) if namespaces is not None else None
    for credential in found:
        verdict = _sweep_verdict(
            credential,
            referenced=referenced,
            watched=watched,
            now=now,
            orphan_min_age=orphan_min_age,
        )
        if verdict is None:
            continue
        target_calls += 1
        existed = await target.revoke(credential.credential_id)
        if existed:
            metrics.credential_swept(target_type=target.kind, reason=verdict)
        if verdict is Reason.EXPIRED:
            revoked_expired += int(existed)
        else:
            revoked_orphaned += int(existed)
        audit.emit(
            audit.AuditRecord(
                action=audit.AuditAction.SWEEP,
                outcome="success",
                reason=verdict,
                binding=_binding_of(credential),
                namespace=credential.binding_namespace or None,
                target=target_name,
                credential_id=credential.credential_id,
                expires_at=credential.expires_at,
                message=f"dropped login {credential.username}",
            )
        )
        logger.info(
            "Sweep of target %s: revoked credential %s (%s)",
            target_name,
            credential.credential_id,
            verdict,
        )

    report = SweepReport(
        target=target_name,
        credentials_seen=len(found),
        secrets_seen=len(mine),
        revoked_expired=revoked_expired,
        revoked_orphaned=revoked_orphaned,
        secrets_deleted=secrets_deleted,
        api_calls=secrets.api_calls - api_calls_before,
        target_calls=target_calls,
        duration_seconds=time.perf_counter() - started,
    )
    metrics.observe_sweep(target_type=target.kind, seconds=report.duration_seconds)
    logger.info("Sweep of target %s finished: %s", target_name, report)
    return report


def _sweep_verdict(
    credential: FoundCredential,
    *,
    referenced: set[str],
    watched: set[str] | None,
    now: datetime,
    orphan_min_age: timedelta,
) -> Reason | None:
    if credential.expires_at <= now:
        return Reason.EXPIRED
    if credential.credential_id in referenced:
        return None
    if not credential.secret_name and credential.binding_namespace and credential.binding_name:
        # A direct credential of the exchange endpoint: no Secret ever
        # references it, so only its expiry ends it.
        return None
    if watched is not None and credential.binding_namespace not in watched:
        # Its Secret lives in a namespace this operator does not read, so
        # "no Secret references it" cannot be known here.
        return None
    if credential.created_at is not None and now - credential.created_at < orphan_min_age:
        return None
    return Reason.ORPHANED


def _target_of(secret: Mapping[str, Any]) -> str | None:
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TARGET_ANNOTATION)
    return str(value) if value is not None else None


def _binding_of(credential: FoundCredential) -> str | None:
    if credential.binding_namespace and credential.binding_name:
        return f"{credential.binding_namespace}/{credential.binding_name}"
    return None


async def _delete_expired_secret(
    secret: Mapping[str, Any], *, secrets: SecretStore, target_name: str
) -> bool:
    metadata = secret.get("metadata") or {}
    namespace = str(metadata.get("namespace", ""))
    name = str(metadata.get("name", ""))
    owner_uid = next(
        (
            str(owner.get("uid"))
            for owner in metadata.get("ownerReferences") or []
            if owner.get("controller")
        ),
        "",
    )
    if not owner_uid:
        logger.warning(
            "Sweep of target %s: expired Secret %s/%s has no controller owner; "
            "delete it by hand or restore its ownerReference",
            target_name,
            namespace,
            name,
        )
        return False
    deleted = await secrets.delete(namespace, name, binding_uid=owner_uid)
    if deleted:
        audit.emit(
            audit.AuditRecord(
                action=audit.AuditAction.SWEEP,
                outcome="success",
                reason=Reason.EXPIRED,
                namespace=namespace,
                target=target_name,
                credential_id=read_credential_refs(secret).credential_id,
                message=f"deleted expired Secret {namespace}/{name}",
            )
        )
        logger.info(
            "Sweep of target %s: deleted expired Secret %s/%s", target_name, namespace, name
        )
    return deleted
