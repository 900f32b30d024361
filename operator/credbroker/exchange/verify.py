"""Verify a presented proof and turn it into a ``WorkloadIdentity``.

A service-account token is checked by ``ServiceAccountTokenVerifier``
(signature, issuer, audience, times, claims). Then the pod named in its
``kubernetes.io`` claim must exist with the claimed uid and service account,
and TokenReview must confirm the token for that pod.
An SVID is checked against the bundle that the binding's
``spec.spiffe.bundleRef`` names, and must lie in ``spec.spiffe.trustDomain``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from credbroker.errors import IdentityRejected, PolicyRejected
from credbroker.exchange.cluster import BundleSource, ExchangeCluster
from credbroker.exchange.proofs import Proof, ProofKind
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import KUBERNETES_CLAIM, ServiceAccountTokenVerifier
from credbroker.identity.workload import WorkloadIdentity
from credbroker.pods import is_pod_live
from credbroker.reasons import Reason
from credbroker.resources import CredentialBindingSpec
from credbroker.spiffe.bundle import Bundle
from credbroker.spiffe.ids import TrustDomain
from credbroker.spiffe.jwtsvid import verify_jwt_svid
from credbroker.spiffe.x509svid import verify_x509_svid

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedWorkload:
    """A verified identity, and the pod it runs in when the proof named one."""

    identity: WorkloadIdentity
    kind: ProofKind
    pod_labels: Mapping[str, str] | None

    @property
    def rate_key(self) -> str:
        """The identity that rate limits count: its SPIFFE ID or its service account."""
        if self.identity.spiffe_id:
            return self.identity.spiffe_id
        return f"serviceaccount:{self.identity.namespace}/{self.identity.service_account}"


class ProofVerifier:
    """Verifier of the three proofs, for one audience."""

    def __init__(
        self,
        *,
        cluster: ExchangeCluster,
        tokens: ServiceAccountTokenVerifier,
        on_bundle_loaded: Callable[[Bundle], object] | None = None,
    ) -> None:
        """Check JWT-SVIDs for ``tokens.audience``; pass each bundle to ``on_bundle_loaded``."""
        self._cluster = cluster
        self._tokens = tokens
        self._on_bundle_loaded = on_bundle_loaded
        self.audience = tokens.audience

    async def verify(self, proof: Proof, *, binding: CredentialBindingSpec) -> VerifiedWorkload:
        """Verify ``proof`` for ``binding``; raise IdentityRejected or PolicyRejected."""
        if proof.kind is ProofKind.SERVICE_ACCOUNT_TOKEN:
            return await self._verify_service_account_token(proof.token)
        bundle, trust_domain = await self._bundle_of(binding, kind=proof.kind)
        if proof.kind is ProofKind.JWT_SVID:
            jwt_svid = verify_jwt_svid(
                proof.token, bundles=bundle, audience=self.audience, trust_domain=trust_domain
            )
            return _svid_workload(
                kind=proof.kind,
                spiffe_id=str(jwt_svid.spiffe_id),
                expires_at=jwt_svid.expires_at,
            )
        x509_svid = verify_x509_svid(
            proof.certificate_der, bundles=bundle, trust_domain=trust_domain
        )
        return _svid_workload(
            kind=proof.kind, spiffe_id=str(x509_svid.spiffe_id), expires_at=x509_svid.expires_at
        )

    async def _verify_service_account_token(self, token: str) -> VerifiedWorkload:
        claims = await self._tokens.verify_claims(token)
        if claims.pod_name is None or claims.pod_uid is None:
            raise IdentityRejected(
                Reason.MISSING_CLAIM,
                f"claim '{KUBERNETES_CLAIM}.pod' is missing, so the token is not bound to a pod; "
                "present a projected service-account token mounted into the pod",
            )
        where = f"{claims.namespace}/{claims.pod_name}"
        body = await self._cluster.get_pod(namespace=claims.namespace, name=claims.pod_name)
        if body is None or not is_pod_live(body):
            raise IdentityRejected(
                Reason.POD_NOT_FOUND,
                f"pod {where} named in the token does not exist or is terminating",
            )
        pod = PodRef.from_pod(body)
        if pod.uid != claims.pod_uid:
            raise IdentityRejected(
                Reason.POD_MISMATCH,
                f"the token is bound to pod uid {claims.pod_uid}, but pod {where} has uid "
                f"{pod.uid}, so the token belongs to an earlier pod of that name",
            )
        if pod.service_account != claims.service_account:
            raise IdentityRejected(
                Reason.SERVICE_ACCOUNT_MISMATCH,
                f"the token names service account {claims.service_account}, but pod {where} "
                f"runs as {pod.service_account}",
            )
        await self._cluster.review_token(token, pod=pod, audience=self.audience)

        identity = WorkloadIdentity(
            namespace=pod.namespace,
            service_account=pod.service_account,
            pod_name=pod.name,
            pod_uid=pod.uid,
            node_name=pod.node_name or claims.node_name,
            token_jti=claims.jti,
            token_expires_at=claims.expires_at,
        )
        labels = _labels_of(body)
        return VerifiedWorkload(
            identity=identity, kind=ProofKind.SERVICE_ACCOUNT_TOKEN, pod_labels=labels
        )

    async def _bundle_of(
        self, binding: CredentialBindingSpec, *, kind: ProofKind
    ) -> tuple[Bundle, TrustDomain]:
        spiffe = binding.spiffe
        if spiffe is None or spiffe.bundle_ref is None:
            raise PolicyRejected(
                Reason.SPIFFE_NOT_CONFIGURED,
                f"the binding has no spec.spiffe.bundleRef, so it accepts no {kind}; present a "
                "projected service-account token or add the trust domain's bundle",
            )
        source = BundleSource(ref=spiffe.bundle_ref, trust_domain=spiffe.trust_domain)
        bundle = await self._cluster.load_bundle(source)
        if self._on_bundle_loaded is not None:
            self._on_bundle_loaded(bundle)
        return bundle, TrustDomain(spiffe.trust_domain)


def _svid_workload(*, kind: ProofKind, spiffe_id: str, expires_at: datetime) -> VerifiedWorkload:
    # An SVID names no pod or service account, so those fields stay empty.
    identity = WorkloadIdentity(
        namespace="",
        service_account="",
        pod_name="",
        pod_uid="",
        node_name=None,
        token_jti=None,
        token_expires_at=expires_at,
        spiffe_id=spiffe_id,
    )
    return VerifiedWorkload(identity=identity, kind=kind, pod_labels=None)


def _labels_of(pod: Mapping[str, Any]) -> dict[str, str]:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return {str(key): str(value) for key, value in labels.items()}
