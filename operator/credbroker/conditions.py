"""Status conditions in the Kubernetes shape, merged so transition times stay honest.

``lastTransitionTime`` changes only when a condition's ``status`` changes, as
the API conventions require; a new reason or message alone keeps the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from credbroker.reasons import Reason
from credbroker.timestamps import format_timestamp


class ConditionType(StrEnum):
    """The condition types credbroker sets."""

    READY = "Ready"
    IDENTITY_VERIFIED = "IdentityVerified"
    CREDENTIAL_ISSUED = "CredentialIssued"


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One condition as credbroker decides it, before merging with the stored one."""

    type: ConditionType
    status: bool | None
    reason: Reason
    message: str

    @property
    def status_text(self) -> str:
        """The API's spelling of the status: ``True``, ``False`` or ``Unknown``."""
        if self.status is None:
            return "Unknown"
        return "True" if self.status else "False"


def merge_conditions(
    *,
    stored: Sequence[Mapping[str, Any]] | None,
    decided: Sequence[Condition],
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return the new ``status.conditions`` list: the decided ones, with kept transition times.

    Stored conditions of types credbroker does not decide are kept unchanged.
    """
    by_type = {str(item.get("type")): dict(item) for item in stored or ()}
    decided_types = {condition.type.value for condition in decided}
    merged: list[dict[str, Any]] = []

    for condition in decided:
        previous = by_type.get(condition.type.value)
        transition = format_timestamp(now)
        if previous and previous.get("status") == condition.status_text:
            transition = str(previous.get("lastTransitionTime") or transition)
        entry: dict[str, Any] = {
            "type": condition.type.value,
            "status": condition.status_text,
            "reason": condition.reason.value,
            "message": condition.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)

    merged.extend(item for kind, item in by_type.items() if kind not in decided_types)
    return merged
