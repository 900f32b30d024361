"""One exchange, without HTTP: verify the proof, apply policy, then deliver as the binding allows.

``ExchangeService.exchange`` runs the steps in order: read the binding
(BINDING_NOT_FOUND), verify the proof, take a token from the identity's
rate-limit bucket (RATE_LIMITED), check that the binding's selector selects
the proving pod (POD_NOT_SELECTED), ``authorize_identity``, check that the
binding allows an exchange (EXCHANGE_NOT_ALLOWED), ``grant_for_binding``,
then mint a direct credential and/or wake the binding's reconcile. Every
exchange, accepted or rejected, writes one audit record.

A direct credential is minted with its own id and marked with the binding
and an empty Secret name. No Secret references it, so the sweeper drops it
only when it expires, and the binding's teardown revokes it with the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from credbroker import audit
from credbroker.errors import CredbrokerError, PolicyRejected
from credbroker.exchange.cluster import ExchangeCluster
from credbroker.exchange.proofs import Proof
from credbroker.exchange.ratelimit import TokenBucketLimiter
from credbroker.exchange.verify import ProofVerifier, VerifiedWorkload
from credbroker.ids import new_credential_id
from credbroker.policy import authorize_identity, grant_for_binding, spiffe_id_of
from credbroker.reasons import Reason
from credbroker.resources import CredentialBindingSpec, parse_binding
from credbroker.targets.base import CredentialRequest
from credbroker.timestamps import utcnow

logger = logging.getLogger(__name__)

EXPIRES_AT_FIELD = "expires_at"
CREDENTIAL_ID_FIELD = "credential_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRequest:
    """The binding a workload requests a credential from. Contains no secret."""

    namespace: str
    binding: str

    @property
    def binding_key(self) -> str:
        """The binding as ``namespace/name``."""
        return f"{self.namespace}/{self.binding}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeResult:
    """The outcome of an accepted exchange.

    ``credential`` contains the Secret's keys, password included, when the
    binding returns credentials, so it is excluded from ``repr``.
    """

    binding: str
    spiffe_id: str | None
    secret_name: str
    secret_refresh_requested: bool
    credential_id: str | None = None
    expires_at: datetime | None = None
    credential: Mapping[str, str] | None = field(default=None, repr=False)


class ExchangeService:
    """The exchange pipeline, shared by the HTTP handler and the tests."""

    def __init__(
        self,
        *,
        cluster: ExchangeCluster,
        verifier: ProofVerifier,
        limiter: TokenBucketLimiter,
        wake_binding: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``wake_binding`` receives ``namespace/name`` of a binding to refresh the Secret of."""
        self._cluster = cluster
        self._verifier = verifier
        self._limiter = limiter
        self._wake_binding = wake_binding
        self._clock = clock

    async def exchange(self, request: ExchangeRequest, proof: Proof) -> ExchangeResult:
        """Run one exchange; raise a ``CredbrokerError`` with the reason of a rejection."""
        verified: VerifiedWorkload | None = None
        spec: CredentialBindingSpec | None = None
        try:
            spec = await self._read_binding(request)
            verified = await self._verifier.verify(proof, binding=spec)
            self._limiter.take(verified.rate_key)
            result = await self._deliver(request=request, spec=spec, verified=verified)
        except CredbrokerError as error:
            emit_rejection(request=request, proof=proof, error=error, verified=verified, spec=spec)
            raise
        _emit_acceptance(request=request, spec=spec, verified=verified, result=result)
        return result

    async def _read_binding(self, request: ExchangeRequest) -> CredentialBindingSpec:
        body = await self._cluster.get_binding(namespace=request.namespace, name=request.binding)
        if body is None:
            raise CredbrokerError(
                Reason.BINDING_NOT_FOUND,
                f"CredentialBinding {request.binding_key} was not found; check the namespace "
                "and binding in the request",
            )
        return parse_binding(body.get("spec") or {})

    async def _deliver(
        self, *, request: ExchangeRequest, spec: CredentialBindingSpec, verified: VerifiedWorkload
    ) -> ExchangeResult:
        identity = verified.identity
        if verified.pod_labels is not None and not spec.pod_selector.matches(verified.pod_labels):
            raise PolicyRejected(
                Reason.POD_NOT_SELECTED,
                f"pod {identity.pod_ref} is not selected by spec.podSelector of binding "
                f"{request.binding_key}; give the pod the selected labels",
            )
        authorize_identity(identity=identity, binding_namespace=request.namespace, binding=spec)

        delivery = spec.exchange_delivery
        if not delivery.return_credential and not delivery.refresh_secret:
            raise PolicyRejected(
                Reason.EXCHANGE_NOT_ALLOWED,
                f"binding {request.binding_key} sets both spec.delivery.exchange.returnCredential "
                "and refreshSecret to false, so it allows no exchange",
            )

        resolved = await self._cluster.resolve_target(spec.target_ref.name)
        grant = grant_for_binding(
            binding_namespace=request.namespace,
            binding=spec,
            target_name=resolved.name,
            target=resolved.spec,
        )
        spiffe_id = spiffe_id_of(identity=identity, binding=spec)

        credential_id: str | None = None
        expires_at: datetime | None = None
        credential: Mapping[str, str] | None = None
        if delivery.return_credential:
            issued = await resolved.target.issue(
                CredentialRequest(
                    credential_id=new_credential_id(),
                    binding_namespace=request.namespace,
                    binding_name=request.binding,
                    secret_name="",
                    role=grant.role,
                    expires_at=self._clock() + grant.ttl,
                )
            )
            credential_id = issued.credential_id
            expires_at = issued.expires_at
            credential = issued.data

        if delivery.refresh_secret and self._wake_binding is not None:
            self._wake_binding(request.binding_key)

        return ExchangeResult(
            binding=request.binding_key,
            spiffe_id=str(spiffe_id) if spiffe_id is not None else None,
            secret_name=spec.secret_name,
            secret_refresh_requested=delivery.refresh_secret and self._wake_binding is not None,
            credential_id=credential_id,
            expires_at=expires_at,
            credential=credential,
        )


def emit_rejection(
    *,
    request: ExchangeRequest | None,
    proof: Proof | None,
    error: CredbrokerError,
    verified: VerifiedWorkload | None = None,
    spec: CredentialBindingSpec | None = None,
) -> None:
    """Write the audit record of a rejected exchange. ``error.message`` contains no secret."""
    identity = verified.identity if verified is not None else None
    proof_kind = proof.kind.value if proof is not None else "none"
    spiffe_id = identity.spiffe_id if identity is not None else None
    as_text = f" as {spiffe_id}" if spiffe_id else ""
    audit.emit(
        audit.AuditRecord(
            action=audit.AuditAction.REJECT,
            outcome="failure",
            reason=error.reason,
            binding=request.binding_key if request is not None else None,
            namespace=(identity.namespace if identity else None)
            or (request.namespace if request else None),
            pod_name=(identity.pod_name or None) if identity else None,
            pod_uid=(identity.pod_uid or None) if identity else None,
            service_account=(identity.service_account or None) if identity else None,
            token_jti=identity.token_jti if identity else None,
            target=spec.target_ref.name if spec is not None else None,
            role=spec.role if spec is not None else None,
            message=f"exchange with {proof_kind}{as_text} rejected: {error.message}",
        )
    )


def _emit_acceptance(
    *,
    request: ExchangeRequest,
    spec: CredentialBindingSpec,
    verified: VerifiedWorkload,
    result: ExchangeResult,
) -> None:
    identity = verified.identity
    parts = []
    if result.credential_id is not None:
        parts.append(f"returned direct credential {result.credential_id}")
    if result.secret_refresh_requested:
        parts.append(f"requested a refresh of Secret {spec.secret_name}")
    as_text = f" as {result.spiffe_id}" if result.spiffe_id else ""
    audit.emit(
        audit.AuditRecord(
            action=audit.AuditAction.ISSUE,
            outcome="success",
            reason=Reason.ISSUED if result.credential_id is not None else Reason.REFRESH_REQUESTED,
            binding=request.binding_key,
            namespace=identity.namespace or request.namespace,
            pod_name=identity.pod_name or None,
            pod_uid=identity.pod_uid or None,
            service_account=identity.service_account or None,
            token_jti=identity.token_jti,
            target=spec.target_ref.name,
            role=spec.role,
            credential_id=result.credential_id,
            expires_at=result.expires_at,
            message=f"exchange with {verified.kind.value}{as_text}: {'; '.join(parts)}",
        )
    )
    logger.info(
        "Exchange for binding %s with %s%s accepted (credential %s, refresh %s)",
        request.binding_key,
        verified.kind.value,
        as_text,
        result.credential_id or "none",
        result.secret_refresh_requested,
    )
