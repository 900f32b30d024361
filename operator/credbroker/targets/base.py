"""The interface every target implements, and the values that cross it.

The broker uses targets only through ``Target``. It requests one to mint a
credential, to revoke one by id, and to list the credentials it finds on the
system itself, so that the sweeper can remove what a crash left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRequest:
    """A request to a target to mint one credential. Contains no secret."""

    credential_id: str
    binding_namespace: str
    binding_name: str
    secret_name: str
    role: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCredential:
    """A credential that exists on the target.

    ``data`` contains the Secret's keys and values, password included, so it is
    excluded from ``repr`` and must never be logged.
    """

    credential_id: str
    username: str
    expires_at: datetime
    data: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class FoundCredential:
    """A credbroker credential discovered on the target by a sweep."""

    credential_id: str
    username: str
    binding_namespace: str
    binding_name: str
    secret_name: str
    created_at: datetime | None
    expires_at: datetime


class Target(Protocol):
    """One configured target system: mint, revoke and list credentials."""

    kind: str

    async def issue(self, request: CredentialRequest) -> IssuedCredential:
        """Create the credential on the target; raise ``TargetError`` on failure."""
        ...

    async def revoke(self, credential_id: str) -> bool:
        """Remove the credential; return ``False`` when it was already gone."""
        ...

    async def list_credentials(self) -> Sequence[FoundCredential]:
        """List every credbroker credential that exists on the target."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
