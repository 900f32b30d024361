"""Audit: one JSON record for every credential decision, on a logger of its own.

Each issue, renewal, revocation, rejection and sweep produces an
``AuditRecord``. ``emit`` writes it as one JSON object (sorted keys, UTC
timestamps, a ``time`` field) as the message of an INFO log record on the
``credbroker.audit`` logger. Any handler can ship it, kopf's JSON formatter
or a plain one, and the record also propagates to the ``credbroker`` logger
unless logging is configured otherwise.

An audit record cannot carry secret material by construction. It has no
free-form data field, and every field is a name, an id, a reason or a time,
checked at runtime to be a string (or ``None``). Nothing scans the values for
secrets, because such a scan misses too much to be trusted. So callers must
pass ids and names, and in ``message`` only the text of a ``CredbrokerError``
(whose messages never contain a secret) or a fixed sentence.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from credbroker.identity.workload import WorkloadIdentity
from credbroker.reasons import Reason
from credbroker.timestamps import format_timestamp, utcnow

AUDIT_LOGGER_NAME = "credbroker.audit"

logger = logging.getLogger(AUDIT_LOGGER_NAME)

Outcome = Literal["success", "failure"]
_OUTCOMES: tuple[Outcome, ...] = ("success", "failure")

_TEXT_FIELDS = (
    "binding",
    "namespace",
    "pod_name",
    "pod_uid",
    "service_account",
    "token_jti",
    "target",
    "role",
    "credential_id",
)


class AuditAction(StrEnum):
    """The kind of decision an audit record describes."""

    ISSUE = "issue"
    RENEW = "renew"
    REVOKE = "revoke"
    REJECT = "reject"
    SWEEP = "sweep"


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One audited decision about a credential.

    ``binding`` is the CredentialBinding as ``namespace/name``. The pod fields
    (``namespace``, ``pod_name``, ``pod_uid``, ``service_account``,
    ``token_jti``) describe the verified or rejected workload, and stay
    ``None`` for decisions without a pod, such as a sweep. ``message`` is for
    an error's message only (see the module docstring).
    """

    action: AuditAction
    outcome: Outcome
    reason: Reason
    binding: str | None = None
    namespace: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    service_account: str | None = None
    token_jti: str | None = None
    target: str | None = None
    role: str | None = None
    credential_id: str | None = None
    expires_at: datetime | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.action, AuditAction):
            raise TypeError(f"action {self.action!r} is not an AuditAction")
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is invalid; use 'success' or 'failure'")
        if not isinstance(self.reason, Reason):
            raise TypeError(f"reason {self.reason!r} is not a Reason")
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(
                    f"audit field {name} must be a string or None, not {type(value).__name__}"
                )
        if not isinstance(self.message, str):
            raise TypeError(
                f"audit field message must be a string, not {type(self.message).__name__}"
            )
        if self.expires_at is None:
            return
        if not isinstance(self.expires_at, datetime):
            type_name = type(self.expires_at).__name__
            raise TypeError(f"audit field expires_at must be a datetime or None, not {type_name}")
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at has no time zone; pass an aware datetime")

    def to_json(self, *, time: datetime) -> str:
        """Serialize the record as one line of JSON with sorted keys and ``time`` added."""
        fields: dict[str, str | None] = {name: getattr(self, name) for name in _TEXT_FIELDS}
        fields["action"] = self.action.value
        fields["outcome"] = self.outcome
        fields["reason"] = self.reason.value
        fields["expires_at"] = (
            None if self.expires_at is None else format_timestamp(self.expires_at)
        )
        fields["message"] = self.message
        fields["time"] = format_timestamp(time)
        # json.dumps escapes line breaks inside strings, so the output is one line.
        return json.dumps(fields, sort_keys=True)


def emit(record: AuditRecord) -> None:
    """Log the record as one JSON object at INFO on the ``credbroker.audit`` logger."""
    logger.info("%s", record.to_json(time=utcnow()))


def record_from_identity(
    *,
    identity: WorkloadIdentity,
    action: AuditAction,
    outcome: Outcome,
    reason: Reason,
    binding: str | None,
    target: str | None = None,
    role: str | None = None,
    credential_id: str | None = None,
    expires_at: datetime | None = None,
    message: str = "",
) -> AuditRecord:
    """Build an audit record with the pod fields taken from a verified identity."""
    return AuditRecord(
        action=action,
        outcome=outcome,
        reason=reason,
        binding=binding,
        namespace=identity.namespace,
        pod_name=identity.pod_name,
        pod_uid=identity.pod_uid,
        service_account=identity.service_account,
        token_jti=identity.token_jti,
        target=target,
        role=role,
        credential_id=credential_id,
        expires_at=expires_at,
        message=message,
    )
