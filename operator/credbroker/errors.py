"""Typed rejections: every refusal carries a ``Reason`` and a human message.

Verifiers and policy raise these instead of returning a boolean, so a caller
cannot ignore a refusal by accident. Messages name the offending value and
the fix, and must never contain a token, password or key.
"""

from credbroker.reasons import Reason


class CredbrokerError(Exception):
    """Base of every error credbroker raises on purpose."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


class IdentityRejected(CredbrokerError):
    """The workload's proof of identity failed verification."""


class PolicyRejected(CredbrokerError):
    """A verified identity may not have the requested credential."""


class TargetError(CredbrokerError):
    """Minting or revoking a credential on a target system failed."""


class DeliveryError(CredbrokerError):
    """The credential could not be written to its Secret."""
