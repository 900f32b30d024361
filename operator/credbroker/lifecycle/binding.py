"""One binding's lifecycle: verify its pods, then issue, renew or revoke its credential.

``BindingReconciler.reconcile`` is one pass over one CredentialBinding. It is
plain async Python: kopf calls it from the binding's daemon, and tests call
it directly with fakes. A pass reads the binding, its target and its
Secret, decides, acts, and returns the status to write and when to run
again.

Every step is ordered so that a crash between two calls leaves nothing that
the sweeper cannot find:

- a new credential is created on the target, marked with its id, binding
  and expiry, before the Secret that references it is written; a crash in
  between leaves an unreferenced, marked credential, which the sweeper drops
  once it is older than the orphan age;
- a renewal writes the new credential into the Secret together with the old
  credential's id and revocation time; the old one is revoked only after
  that time, so a crash leaves it referenced until then and expired after;
- revocation drops the credential on the target before the Secret is
  deleted; a crash in between leaves a Secret whose credential no longer
  works, which the next pass or the sweeper removes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from credbroker import audit
from credbroker.conditions import Condition, ConditionType, merge_conditions
from credbroker.delivery import (
    PREVIOUS_CREDENTIAL_ID_ANNOTATION,
    PREVIOUS_REVOKE_AT_ANNOTATION,
    PreviousCredential,
    SecretCredentialRefs,
    SecretStore,
    check_ownership,
    read_credential_refs,
    render_secret,
    validate_binding_name,
)
from credbroker.durations import format_duration
from credbroker.errors import (
    CredbrokerError,
    DeliveryError,
    IdentityRejected,
    PolicyRejected,
    TargetError,
)
from credbroker.identity.attestation import PodAttestor
from credbroker.identity.pods import PodRef
from credbroker.identity.workload import WorkloadIdentity
from credbroker.ids import new_credential_id
from credbroker.kube import EventRecorder, KubeGateway
from credbroker.metrics import UNKNOWN_TARGET_TYPE, Metrics
from credbroker.pods import PodRegistry, PodSummary
from credbroker.policy import Grant, authorize_identity, grant_for_binding
from credbroker.reasons import Reason
from credbroker.resources import (
    CredentialBindingSpec,
    CredentialTargetSpec,
    parse_binding,
    parse_target,
)
from credbroker.settings import OperatorSettings
from credbroker.targets.base import CredentialRequest, Target
from credbroker.targets.registry import TargetRegistry
from credbroker.timestamps import format_timestamp, utcnow

logger = logging.getLogger(__name__)

MAX_REJECTED_IN_STATUS = 10
MAX_WAKEUP_SECONDS = 300.0
REVERIFY_MARGIN_SECONDS = 60.0

# Identity failures that may pass on a later try; the others need a change
# to the pod or the binding before another try can succeed.
_TRANSIENT_REASONS = frozenset(
    {
        Reason.TOKEN_REQUEST_FAILED,
        Reason.JWKS_UNAVAILABLE,
        Reason.UNKNOWN_KEY_ID,
        Reason.TOKEN_REVIEW_REJECTED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingRef:
    """The identity of a CredentialBinding object."""

    namespace: str
    name: str
    uid: str
    generation: int | None

    @property
    def key(self) -> str:
        """The binding as ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BindingRef:
        """Read the reference from a binding object given as a dict."""
        metadata = body.get("metadata") or {}
        generation = metadata.get("generation")
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            generation=int(generation) if generation is not None else None,
        )

    def as_object(self) -> dict[str, Any]:
        """Return a minimal object reference that event recorders accept."""
        return {
            "apiVersion": "credbroker.dev/v1alpha1",
            "kind": "CredentialBinding",
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PodVerdict:
    """The outcome of verifying one pod for one binding."""

    pod: PodSummary
    generation: int | None
    checked_at: datetime
    identity: WorkloadIdentity | None = None
    reason: Reason = Reason.VERIFIED
    message: str = ""

    @property
    def verified(self) -> bool:
        """Whether the pod proved an identity the binding accepts."""
        return self.identity is not None


@dataclass(slots=True)
class BindingState:
    """The reconciler's memory of one binding between passes.

    It is only a cache: after a restart it is rebuilt from the pods, the
    Secret's annotations and the target, so losing it loses nothing.
    """

    verdicts: dict[str, PodVerdict] = field(default_factory=dict)
    no_pods_since: datetime | None = None
    first_seen_monotonic: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileResult:
    """The decision of one pass: the status to write and when to run again."""

    status: dict[str, Any]
    next_run_seconds: float


@dataclass(slots=True)
class _Pass:
    """Values collected during one pass, turned into status at its end."""

    ref: BindingRef
    now: datetime
    spec: CredentialBindingSpec | None = None
    grant: Grant | None = None
    credential_id: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    wakeups: list[datetime] = field(default_factory=list)
    failure: CredbrokerError | None = None
    issued_reason: Reason | None = None
    target_type: str = UNKNOWN_TARGET_TYPE
    secret_read: bool = False
    binding_first_seen: float = 0.0


class BindingReconciler:
    """Runs passes over bindings; keeps a small cache per binding."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        kube: KubeGateway,
        pods: PodRegistry,
        attestor: PodAttestor,
        targets: TargetRegistry,
        secrets: SecretStore,
        recorder: EventRecorder,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._kube = kube
        self._pods = pods
        self._attestor = attestor
        self._targets = targets
        self._secrets = secrets
        self._recorder = recorder
        self._clock = clock
        self._metrics = metrics if metrics is not None else Metrics()
        self._monotonic = monotonic
        self._states: dict[str, BindingState] = {}
        self._verify_slots = asyncio.Semaphore(settings.verify_concurrency)

    def forget(self, key: str) -> None:
        """Drop the cache of a binding that is gone."""
        self._states.pop(key, None)
        self._metrics.forget_binding(key)

    async def reconcile(self, body: Mapping[str, Any]) -> ReconcileResult:
        """Run one pass over ``body``; an error becomes a failed status, not an exception."""
        ref = BindingRef.from_body(body)
        state = self._states.get(ref.key)
        if state is None:
            state = BindingState(first_seen_monotonic=self._monotonic())
            self._states[ref.key] = state
        current = _Pass(ref=ref, now=self._clock(), binding_first_seen=state.first_seen_monotonic)
        stored_status = dict(body.get("status") or {})

        try:
            await self._run_pass(body=body, state=state, current=current)
        except CredbrokerError as error:
            self._record_failure(current, error)
        except ApiException as error:
            failure = CredbrokerError(
                Reason.KUBERNETES_API_ERROR,
                f"a Kubernetes API call failed with {error.status} {error.reason}; retrying",
            )
            self._record_failure(current, failure)
        except Exception:
            logger.exception("Binding %s: unexpected error during reconcile", ref.key)
            failure = CredbrokerError(
                Reason.INTERNAL_ERROR, "unexpected error; the operator log has the details"
            )
            self._record_failure(current, failure)

        if current.secret_read:
            self._metrics.set_credential_held(
                binding=ref.key,
                target_type=current.target_type,
                held=current.credential_id is not None,
            )
        status = self._build_status(current=current, state=state, stored=stored_status)
        return ReconcileResult(status=status, next_run_seconds=self._next_run(current))

    def _record_failure(self, current: _Pass, error: CredbrokerError) -> None:
        current.failure = error
        self._metrics.reconcile_failed(target_type=current.target_type, reason=error.reason)
        if isinstance(error, PolicyRejected):
            self._metrics.credential_rejected(target_type=current.target_type, reason=error.reason)
        logger.warning("Binding %s: %s", current.ref.key, error)
        self._recorder.emit(
            current.ref.as_object(), warning=True, reason=error.reason.value, message=error.message
        )
        current.wakeups.append(current.now + timedelta(seconds=self._settings.retry_delay_seconds))

    async def _run_pass(
        self, *, body: Mapping[str, Any], state: BindingState, current: _Pass
    ) -> None:
        ref = current.ref
        spec = parse_binding(body.get("spec") or {})
        current.spec = spec
        validate_binding_name(binding_namespace=ref.namespace, binding_name=ref.name)

        target_name = spec.target_ref.name
        target_body = await self._kube.get_target(target_name)
        if target_body is None:
            raise PolicyRejected(
                Reason.TARGET_NOT_FOUND,
                f"CredentialTarget {target_name} was not found; "
                "create it or fix spec.targetRef.name",
            )
        target_spec = _parse_target_of(target_name, target_body)
        current.target_type = target_spec.type
        grant = grant_for_binding(
            binding_namespace=ref.namespace,
            binding=spec,
            target_name=target_name,
            target=target_spec,
        )
        current.grant = grant

        selected = self._pods.selected(namespace=ref.namespace, matches=spec.pod_selector.matches)
        await self._verify_pods(
            ref=ref,
            spec=spec,
            selected=selected,
            state=state,
            now=current.now,
            target_type=current.target_type,
        )
        verified = [verdict for verdict in state.verdicts.values() if verdict.verified]
        for verdict in verified:
            if verdict.identity is not None:
                current.wakeups.append(
                    verdict.identity.token_expires_at - timedelta(seconds=REVERIFY_MARGIN_SECONDS)
                )

        secret = await self._secrets.get(ref.namespace, spec.secret_name)
        if secret is not None:
            check_ownership(secret, binding_uid=ref.uid, binding_ref=ref.key)
        refs = read_credential_refs(secret) if secret is not None else None
        current.secret_read = True
        if refs is not None:
            current.credential_id = refs.credential_id
            current.issued_at = refs.issued_at
            current.expires_at = refs.expires_at

        if not verified and secret is None:
            state.no_pods_since = None
            return

        target = await self._targets.get(name=target_name, body=target_body, spec=target_spec)

        previous = refs.previous if refs is not None else None
        if refs is not None and previous is not None:
            if previous.revoke_at <= current.now:
                await self._revoke(
                    target=target,
                    ref=ref,
                    spec=spec,
                    credential_id=previous.credential_id,
                    reason=Reason.RENEWED,
                )
                await self._kube.patch_secret_annotations(
                    namespace=ref.namespace,
                    name=spec.secret_name,
                    annotations=_cleared_previous_annotations(),
                )
                refs = dataclasses.replace(refs, previous=None)
            else:
                current.wakeups.append(previous.revoke_at)

        if verified:
            state.no_pods_since = None
            await self._keep_issued(
                target=target,
                target_name=target_name,
                spec=spec,
                grant=grant,
                refs=refs,
                verified=verified,
                current=current,
            )
            return

        if state.no_pods_since is None:
            state.no_pods_since = current.now
        deadline = state.no_pods_since + grant.grace_period
        if current.now < deadline:
            current.wakeups.append(deadline)
            return
        await self._revoke_all(target=target, ref=ref, spec=spec, refs=refs)
        state.no_pods_since = None
        current.credential_id = None
        current.issued_at = None
        current.expires_at = None

    async def _keep_issued(
        self,
        *,
        target: Target,
        target_name: str,
        spec: CredentialBindingSpec,
        grant: Grant,
        refs: Any,
        verified: list[PodVerdict],
        current: _Pass,
    ) -> None:
        now = current.now
        has_current = refs is not None and refs.credential_id and refs.issued_at and refs.expires_at
        if has_current:
            renew_at = min(refs.issued_at + grant.renew_after, refs.expires_at)
            if now < renew_at:
                current.wakeups.append(renew_at)
                return

        ref = current.ref
        credential_id = new_credential_id()
        expires_at = now + grant.ttl
        request = CredentialRequest(
            credential_id=credential_id,
            binding_namespace=ref.namespace,
            binding_name=ref.name,
            secret_name=spec.secret_name,
            role=grant.role,
            expires_at=expires_at,
        )
        issued = await target.issue(request)

        previous: PreviousCredential | None = None
        if has_current and refs.previous is not None:
            # A second renewal inside one grace period: the oldest credential
            # would lose its reference, so revoke it now.
            await self._revoke(
                target=target,
                ref=ref,
                spec=spec,
                credential_id=refs.previous.credential_id,
                reason=Reason.RENEWED,
            )
        if has_current:
            previous = PreviousCredential(
                credential_id=refs.credential_id,
                revoke_at=min(now + grant.grace_period, refs.expires_at),
            )

        body = render_secret(
            binding_namespace=ref.namespace,
            binding_name=ref.name,
            binding_uid=ref.uid,
            secret_name=spec.secret_name,
            target_name=target_name,
            credential=issued,
            issued_at=now,
            previous=previous,
        )
        try:
            await self._secrets.write(binding_uid=ref.uid, binding_ref=ref.key, body=body)
        except DeliveryError:
            await self._revoke_quietly(target=target, ref=ref, credential_id=credential_id)
            raise

        action = audit.AuditAction.RENEW if has_current else audit.AuditAction.ISSUE
        reason = Reason.RENEWED if has_current else Reason.ISSUED
        first = verified[0].identity
        assert first is not None, "a verified pod always carries its identity"
        audit.emit(
            audit.record_from_identity(
                identity=first,
                action=action,
                outcome="success",
                reason=reason,
                binding=ref.key,
                target=target_name,
                role=grant.role,
                credential_id=credential_id,
                expires_at=expires_at,
                message=f"{len(verified)} verified pod(s); "
                f"Secret {ref.namespace}/{spec.secret_name}",
            )
        )
        message = (
            f"{'Renewed' if has_current else 'Issued'} credential {credential_id} for role "
            f"{grant.role} on target {target_name}, valid until {format_timestamp(expires_at)}, "
            f"in Secret {spec.secret_name}"
        )
        if grant.ttl_capped:
            message += "; the TTL was capped at the target's maxTTL"
        logger.info("Binding %s: %s", ref.key, message)
        self._recorder.emit(ref.as_object(), warning=False, reason=reason.value, message=message)
        if has_current:
            self._metrics.credential_renewed(target_type=target.kind, reason=reason)
        else:
            self._metrics.credential_issued(target_type=target.kind, reason=reason)
            self._observe_issuance_latency(verified=verified, current=current)

        current.credential_id = credential_id
        current.issued_at = now
        current.expires_at = expires_at
        current.issued_reason = reason
        current.wakeups.append(min(now + grant.renew_after, expires_at))
        if previous is not None:
            current.wakeups.append(previous.revoke_at)

    async def _revoke_all(
        self,
        *,
        target: Target,
        ref: BindingRef,
        spec: CredentialBindingSpec,
        refs: SecretCredentialRefs | None,
    ) -> None:
        """Revoke the current and previous credentials, then delete the Secret."""
        if refs is not None:
            for credential_id in (
                refs.credential_id,
                refs.previous.credential_id if refs.previous else None,
            ):
                if credential_id:
                    await self._revoke(
                        target=target,
                        ref=ref,
                        spec=spec,
                        credential_id=credential_id,
                        reason=Reason.NO_VERIFIED_PODS,
                    )
        deleted = await self._secrets.delete(ref.namespace, spec.secret_name, binding_uid=ref.uid)
        if deleted:
            message = (
                f"No verified pod remained for {format_duration(spec.grace_period)}; "
                "revoked the credential "
                f"and deleted Secret {spec.secret_name}"
            )
            logger.info("Binding %s: %s", ref.key, message)
            self._recorder.emit(
                ref.as_object(), warning=False, reason=Reason.REVOKED.value, message=message
            )

    async def _revoke(
        self,
        *,
        target: Target,
        ref: BindingRef,
        spec: CredentialBindingSpec | None,
        credential_id: str,
        reason: Reason,
    ) -> None:
        existed = await target.revoke(credential_id)
        if existed:
            self._metrics.credential_revoked(target_type=target.kind, reason=reason)
        audit.emit(
            audit.AuditRecord(
                action=audit.AuditAction.REVOKE,
                outcome="success",
                reason=reason,
                binding=ref.key,
                namespace=ref.namespace,
                target=spec.target_ref.name if spec else None,
                role=spec.role if spec else None,
                credential_id=credential_id,
                message="revoked" if existed else "already gone on the target",
            )
        )
        logger.info(
            "Binding %s: revoked credential %s (%s; existed=%s)",
            ref.key,
            credential_id,
            reason,
            existed,
        )

    async def _revoke_quietly(self, *, target: Target, ref: BindingRef, credential_id: str) -> None:
        try:
            await target.revoke(credential_id)
        except TargetError as error:
            # The sweeper drops it later: it is marked and referenced by no Secret.
            logger.warning(
                "Binding %s: revoking unused credential %s failed, the sweeper will retry: %s",
                ref.key,
                credential_id,
                error,
            )

    async def _verify_pods(
        self,
        *,
        ref: BindingRef,
        spec: CredentialBindingSpec,
        selected: list[PodSummary],
        state: BindingState,
        now: datetime,
        target_type: str,
    ) -> None:
        selected_uids = {pod.uid for pod in selected}
        for uid in list(state.verdicts):
            if uid not in selected_uids:
                del state.verdicts[uid]

        due = [
            pod for pod in selected if self._needs_check(state.verdicts.get(pod.uid), pod, ref, now)
        ]
        if not due:
            return
        verdicts = await asyncio.gather(
            *(self._verify_one(ref=ref, spec=spec, pod=pod, now=now) for pod in due)
        )
        for verdict in verdicts:
            state.verdicts[verdict.pod.uid] = verdict
            if not verdict.verified:
                self._metrics.credential_rejected(target_type=target_type, reason=verdict.reason)

    def _needs_check(
        self, verdict: PodVerdict | None, pod: PodSummary, ref: BindingRef, now: datetime
    ) -> bool:
        if verdict is None or verdict.pod != pod or verdict.generation != ref.generation:
            return True
        if verdict.identity is not None:
            margin = timedelta(seconds=REVERIFY_MARGIN_SECONDS)
            return verdict.identity.token_expires_at - margin <= now
        if verdict.reason in _TRANSIENT_REASONS:
            retry_at = verdict.checked_at + timedelta(seconds=self._settings.retry_delay_seconds)
            return retry_at <= now
        return False

    async def _verify_one(
        self, *, ref: BindingRef, spec: CredentialBindingSpec, pod: PodSummary, now: datetime
    ) -> PodVerdict:
        pod_ref = PodRef(
            namespace=pod.namespace,
            name=pod.name,
            uid=pod.uid,
            service_account=pod.service_account,
            node_name=pod.node_name,
        )
        try:
            async with self._verify_slots:
                identity = await self._attestor.attest(pod_ref)
            authorize_identity(identity=identity, binding_namespace=ref.namespace, binding=spec)
        except CredbrokerError as error:
            return self._reject(ref=ref, spec=spec, pod=pod, now=now, error=error)

        logger.debug(
            "Binding %s: pod %s verified as %s", ref.key, pod.ref, identity.service_account
        )
        return PodVerdict(pod=pod, generation=ref.generation, checked_at=now, identity=identity)

    def _reject(
        self,
        *,
        ref: BindingRef,
        spec: CredentialBindingSpec,
        pod: PodSummary,
        now: datetime,
        error: CredbrokerError,
    ) -> PodVerdict:
        logger.warning("Binding %s: pod %s (uid %s) rejected: %s", ref.key, pod.ref, pod.uid, error)
        if isinstance(error, IdentityRejected):
            self._metrics.identity_verification_failed(error.reason)
        audit.emit(
            audit.AuditRecord(
                action=audit.AuditAction.REJECT,
                outcome="failure",
                reason=error.reason,
                binding=ref.key,
                namespace=pod.namespace,
                pod_name=pod.name,
                pod_uid=pod.uid,
                service_account=pod.service_account,
                target=spec.target_ref.name,
                role=spec.role,
                message=error.message,
            )
        )
        pod_object = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": pod.namespace, "name": pod.name, "uid": pod.uid},
        }
        message = f"Binding {ref.name} rejected this pod: {error.message}"
        self._recorder.emit(pod_object, warning=True, reason=error.reason.value, message=message)
        self._recorder.emit(
            ref.as_object(),
            warning=True,
            reason=error.reason.value,
            message=f"Pod {pod.name} rejected: {error.message}",
        )
        return PodVerdict(
            pod=pod,
            generation=ref.generation,
            checked_at=now,
            reason=error.reason,
            message=error.message,
        )

    def _observe_issuance_latency(self, *, verified: list[PodVerdict], current: _Pass) -> None:
        """Record the time since the first verified pod appeared, or since the binding did."""
        pods_seen = [
            seen
            for seen in (self._pods.first_seen(verdict.pod.uid) for verdict in verified)
            if seen is not None
        ]
        if not pods_seen:
            return
        # A pod that ran before its binding existed waited for the binding, not
        # for the operator, so the wait starts when the binding was first seen.
        started = max(min(pods_seen), current.binding_first_seen)
        self._metrics.observe_issuance_latency(self._monotonic() - started)

    def _build_status(
        self, *, current: _Pass, state: BindingState, stored: Mapping[str, Any]
    ) -> dict[str, Any]:
        verdicts = sorted(state.verdicts.values(), key=lambda verdict: verdict.pod.name)
        verified = [verdict for verdict in verdicts if verdict.verified]
        rejected = [verdict for verdict in verdicts if not verdict.verified]
        conditions = _decide_conditions(
            current=current, verified=verified, rejected=rejected, state=state
        )

        status: dict[str, Any] = {
            "observedGeneration": current.ref.generation,
            "conditions": merge_conditions(
                stored=stored.get("conditions"),
                decided=conditions,
                generation=current.ref.generation,
                now=current.now,
            ),
            "verifiedPods": len(verified),
            "rejectedPods": len(rejected),
            "rejected": [
                {
                    "pod": verdict.pod.name,
                    "reason": verdict.reason.value,
                    "message": verdict.message,
                }
                for verdict in rejected[:MAX_REJECTED_IN_STATUS]
            ],
            "credentialId": current.credential_id,
            "issuedAt": format_timestamp(current.issued_at) if current.issued_at else None,
            "expiresAt": format_timestamp(current.expires_at) if current.expires_at else None,
            "secretName": current.spec.secret_name if current.spec else stored.get("secretName"),
        }
        return status

    def _next_run(self, current: _Pass) -> float:
        upcoming = [(moment - current.now).total_seconds() for moment in current.wakeups]
        if not upcoming:
            return MAX_WAKEUP_SECONDS
        return max(0.5, min(MAX_WAKEUP_SECONDS, *upcoming))


def _parse_target_of(name: str, body: Mapping[str, Any]) -> CredentialTargetSpec:
    try:
        return parse_target(body.get("spec") or {})
    except PolicyRejected as error:
        raise PolicyRejected(
            Reason.INVALID_SPEC, f"CredentialTarget {name} is invalid: {error.message}"
        ) from None


def _cleared_previous_annotations() -> dict[str, str | None]:
    return {PREVIOUS_CREDENTIAL_ID_ANNOTATION: None, PREVIOUS_REVOKE_AT_ANNOTATION: None}


def _decide_conditions(
    *,
    current: _Pass,
    verified: list[PodVerdict],
    rejected: list[PodVerdict],
    state: BindingState,
) -> list[Condition]:
    failure = current.failure
    if failure is not None and failure.reason in {
        Reason.INVALID_SPEC,
        Reason.TARGET_NOT_FOUND,
        Reason.NAMESPACE_NOT_ALLOWED,
        Reason.ROLE_NOT_ALLOWED,
    }:
        return [
            Condition(
                type=ConditionType.READY,
                status=False,
                reason=failure.reason,
                message=failure.message,
            ),
            Condition(
                type=ConditionType.IDENTITY_VERIFIED,
                status=None,
                reason=failure.reason,
                message="pods are not verified until the binding is valid",
            ),
            Condition(
                type=ConditionType.CREDENTIAL_ISSUED,
                status=False,
                reason=failure.reason,
                message=failure.message,
            ),
        ]

    if verified:
        identity = Condition(
            type=ConditionType.IDENTITY_VERIFIED,
            status=True,
            reason=Reason.VERIFIED,
            message=f"{len(verified)} pod(s) verified, {len(rejected)} rejected",
        )
    elif rejected:
        first = rejected[0]
        identity = Condition(
            type=ConditionType.IDENTITY_VERIFIED,
            status=False,
            reason=first.reason,
            message=f"no pod verified; pod {first.pod.name}: {first.message}",
        )
    else:
        identity = Condition(
            type=ConditionType.IDENTITY_VERIFIED,
            status=False,
            reason=Reason.WAITING_FOR_PODS,
            message="no live pod matches spec.podSelector",
        )

    if failure is not None:
        issued = Condition(
            type=ConditionType.CREDENTIAL_ISSUED,
            status=False,
            reason=failure.reason,
            message=failure.message,
        )
    elif current.credential_id and current.expires_at:
        issued = Condition(
            type=ConditionType.CREDENTIAL_ISSUED,
            status=True,
            reason=current.issued_reason or Reason.ISSUED,
            message=(
                f"credential {current.credential_id} valid until "
                f"{format_timestamp(current.expires_at)}"
            ),
        )
    elif state.no_pods_since is not None:
        issued = Condition(
            type=ConditionType.CREDENTIAL_ISSUED,
            status=False,
            reason=Reason.NO_VERIFIED_PODS,
            message="no verified pod remains; the credential is revoked after the grace period",
        )
    else:
        issued = Condition(
            type=ConditionType.CREDENTIAL_ISSUED,
            status=False,
            reason=Reason.WAITING_FOR_PODS if not verified else Reason.ISSUE_FAILED,
            message="no credential is issued until a selected pod is verified",
        )

    ready_ok = failure is None and issued.status is True
    ready = Condition(
        type=ConditionType.READY,
        status=ready_ok,
        reason=Reason.ISSUED if ready_ok else issued.reason,
        message=issued.message
        if not ready_ok
        else f"Secret holds a working credential; {identity.message}",
    )
    return [ready, identity, issued]
