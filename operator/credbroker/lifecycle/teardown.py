"""Revoke everything a deleted binding issued, then remove its Secret.

The Secret's annotations name the current and previous credentials; the
target's own list finds any other credential marked with the binding (one
left by a crash between creating it and writing the Secret). Only when all
of them are revoked does the caller release the binding's finalizer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from credbroker import audit
from credbroker.delivery import SecretStore, is_owned_by, read_credential_refs
from credbroker.kube import KubeGateway
from credbroker.lifecycle.binding import BindingRef
from credbroker.metrics import Metrics
from credbroker.reasons import Reason
from credbroker.resources import parse_target
from credbroker.targets.registry import TargetRegistry

logger = logging.getLogger(__name__)


async def revoke_binding(
    *,
    body: Mapping[str, Any],
    kube: KubeGateway,
    targets: TargetRegistry,
    secrets: SecretStore,
    metrics: Metrics | None = None,
) -> int:
    """Revoke every credential of a binding and delete its Secret; return how many were revoked.

    Raises ``TargetError`` when the target cannot be reached, so that the
    caller retries and keeps the finalizer. A missing target is logged and
    skipped: there is nothing left to revoke on, and the credentials expire
    on their own through their expiry on the target.
    """
    ref = BindingRef.from_body(body)
    spec = body.get("spec") or {}
    target_name = str((spec.get("targetRef") or {}).get("name", ""))
    secret_name = str(spec.get("secretName", ""))

    credential_ids: set[str] = set()
    secret = await secrets.get(ref.namespace, secret_name) if secret_name else None
    if secret is not None and is_owned_by(secret, binding_uid=ref.uid):
        refs = read_credential_refs(secret)
        if refs.credential_id:
            credential_ids.add(refs.credential_id)
        if refs.previous is not None:
            credential_ids.add(refs.previous.credential_id)

    revoked = 0
    target_body = await kube.get_target(target_name) if target_name else None
    if target_body is None:
        logger.warning(
            "Binding %s: target %s not found; %d credential(s) cannot be revoked "
            "and expire on their own",
            ref.key,
            target_name or "(none)",
            len(credential_ids),
        )
    else:
        target_spec = parse_target(target_body.get("spec") or {})
        target = await targets.get(name=target_name, body=target_body, spec=target_spec)
        for found in await target.list_credentials():
            if found.binding_namespace == ref.namespace and found.binding_name == ref.name:
                credential_ids.add(found.credential_id)
        for credential_id in sorted(credential_ids):
            existed = await target.revoke(credential_id)
            revoked += int(existed)
            if existed and metrics is not None:
                metrics.credential_revoked(target_type=target.kind, reason=Reason.BINDING_DELETED)
            audit.emit(
                audit.AuditRecord(
                    action=audit.AuditAction.REVOKE,
                    outcome="success",
                    reason=Reason.BINDING_DELETED,
                    binding=ref.key,
                    namespace=ref.namespace,
                    target=target_name,
                    credential_id=credential_id,
                    message="revoked" if existed else "already gone on the target",
                )
            )

    deleted = False
    if secret is not None:
        deleted = await secrets.delete(ref.namespace, secret_name, binding_uid=ref.uid)
    logger.info(
        "Binding %s deleted: revoked %d credential(s); Secret %s %s",
        ref.key,
        revoked,
        secret_name or "(none)",
        "deleted" if deleted else "left alone (absent or not owned by the binding)",
    )
    return revoked
