"""The verified identity of one workload: the only value identity hands to brokering."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadIdentity:
    """Who a pod proved to be. Immutable, and never holds the token itself.

    ``token_expires_at`` is when the proof used for this identity expires; a
    caller re-verifies after it. ``spiffe_id`` is empty until SPIFFE proofs
    are supported.
    """

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    node_name: str | None
    token_jti: str | None
    token_expires_at: datetime
    spiffe_id: str | None = None

    @property
    def pod_ref(self) -> str:
        """The pod as ``namespace/name``, for logs, events and audit."""
        return f"{self.namespace}/{self.pod_name}"
