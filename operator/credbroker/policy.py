"""Policy: whether a binding may have a credential from a target, and on which terms.

Two checks guard every credential. ``grant_for_binding`` compares a
CredentialBinding with the CredentialTarget it names and returns the
``Grant`` (role and lifetimes) that the target permits. ``authorize_identity``
checks that a verified workload (a pod's service account or a SPIFFE ID) is
one the binding serves. Both raise ``PolicyRejected`` on refusal and never
return a yes/no value that a caller could ignore.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from credbroker.errors import IdentityRejected, PolicyRejected
from credbroker.identity.workload import WorkloadIdentity
from credbroker.reasons import Reason
from credbroker.resources import ALL_NAMESPACES, CredentialBindingSpec, CredentialTargetSpec
from credbroker.spiffe.ids import (
    SpiffeId,
    SpiffeIdPattern,
    TrustDomain,
    derive_from_service_account,
)

logger = logging.getLogger(__name__)

"""The ``allowedNamespaces`` entry that allows bindings from every namespace."""

DEFAULT_RENEW_FRACTION = 2 / 3
"""Fraction of the TTL after which a credential is renewed unless the binding sets renewAfter."""


@dataclass(frozen=True)
class Grant:
    """The role and lifetimes a binding receives from its target.

    ``ttl`` is the effective lifetime after the target's ``maxTTL`` cap,
    ``ttl_capped`` is true when that cap shortened the requested TTL, and
    ``renew_after`` is always shorter than ``ttl``.
    """

    role: str
    ttl: timedelta
    renew_after: timedelta
    grace_period: timedelta
    ttl_capped: bool


def grant_for_binding(
    *,
    binding_namespace: str,
    binding: CredentialBindingSpec,
    target_name: str,
    target: CredentialTargetSpec,
) -> Grant:
    """Check a binding against its target and return the grant the target permits.

    The TTL is the binding's ``ttl`` or else the target's ``defaultTTL``,
    capped at the target's ``maxTTL``. ``renew_after`` defaults to two thirds
    of that TTL, and an explicit value that is not shorter than the TTL is
    replaced by the same two thirds.

    Raises:
        PolicyRejected: NAMESPACE_NOT_ALLOWED or ROLE_NOT_ALLOWED when the
            target does not offer this, INVALID_SPEC when a duration is not
            positive (or, for the grace period, negative).
    """
    _check_namespace_allowed(
        binding_namespace=binding_namespace, target_name=target_name, target=target
    )
    _check_role_allowed(role=binding.role, target_name=target_name, target=target)

    requested_ttl = binding.ttl if binding.ttl is not None else target.default_ttl
    if binding.ttl is not None:
        ttl_source = "spec.ttl of the binding"
    else:
        ttl_source = f"spec.defaultTTL of CredentialTarget {target_name}"
    _require_positive(requested_ttl, field=ttl_source)
    _require_positive(target.max_ttl, field=f"spec.maxTTL of CredentialTarget {target_name}")
    if binding.grace_period < timedelta(0):
        raise PolicyRejected(
            Reason.INVALID_SPEC,
            f"spec.gracePeriod {binding.grace_period} is negative; set it to 0s or longer",
        )

    ttl_capped = requested_ttl > target.max_ttl
    ttl = target.max_ttl if ttl_capped else requested_ttl
    if ttl_capped:
        logger.info(
            "Requested TTL %s for namespace %s is above maxTTL %s of target %s; using %s",
            requested_ttl,
            binding_namespace,
            target.max_ttl,
            target_name,
            ttl,
        )

    renew_after = _resolve_renew_after(binding.renew_after, ttl=ttl)
    return Grant(
        role=binding.role,
        ttl=ttl,
        renew_after=renew_after,
        grace_period=binding.grace_period,
        ttl_capped=ttl_capped,
    )


def authorize_identity(
    *,
    identity: WorkloadIdentity,
    binding_namespace: str,
    binding: CredentialBindingSpec,
) -> None:
    """Raise ``PolicyRejected`` unless the binding serves this verified workload.

    A workload that proved a service account (``identity.service_account``
    set) must run in the binding's own namespace (NAMESPACE_NOT_ALLOWED).
    It is served when its service account is in ``serviceAccounts``, or when
    its derived SPIFFE ID ``spiffe://<trustDomain>/ns/<namespace>/sa/<name>``
    matches ``spiffe.allowedIDs``. A workload that proved only a SPIFFE ID
    (an SVID) is served when that ID matches ``spiffe.allowedIDs``. Otherwise
    the reason is SERVICE_ACCOUNT_NOT_ALLOWED for a service account and
    SPIFFE_ID_NOT_ALLOWED for an SVID. The pod selector is not checked here,
    because ``WorkloadIdentity`` carries no pod labels.
    """
    proved_service_account = bool(identity.service_account)
    if proved_service_account and identity.namespace != binding_namespace:
        raise PolicyRejected(
            Reason.NAMESPACE_NOT_ALLOWED,
            f"pod {identity.pod_ref} runs in namespace {identity.namespace}, but the binding "
            f"is in namespace {binding_namespace}; a binding serves only pods in its own "
            "namespace, so create the binding there",
        )
    if proved_service_account and identity.service_account in binding.service_accounts:
        return

    spiffe_id = spiffe_id_of(identity=identity, binding=binding)
    if spiffe_id is not None and any(
        pattern.matches(spiffe_id) for pattern in _patterns_of(binding)
    ):
        return

    if proved_service_account:
        allowed = _format_list(binding.service_accounts)
        derived = f" or SPIFFE ID {spiffe_id} in spec.spiffe.allowedIDs" if spiffe_id else ""
        raise PolicyRejected(
            Reason.SERVICE_ACCOUNT_NOT_ALLOWED,
            f"pod {identity.pod_ref} runs as service account {identity.service_account}, "
            f"which is not in spec.serviceAccounts ({allowed}){derived}; add it to "
            "spec.serviceAccounts or run the pod as one of the listed accounts",
        )
    allowed_ids = _format_list([str(pattern) for pattern in _patterns_of(binding)])
    raise PolicyRejected(
        Reason.SPIFFE_ID_NOT_ALLOWED,
        f"SPIFFE ID {identity.spiffe_id or 'none'} does not match spec.spiffe.allowedIDs "
        f"({allowed_ids}); add the ID or a path prefix that covers it to spec.spiffe.allowedIDs",
    )


def spiffe_id_of(*, identity: WorkloadIdentity, binding: CredentialBindingSpec) -> SpiffeId | None:
    """Return the workload's SPIFFE ID: the proved one, or the one derived from its account.

    The derived ID needs the binding's ``spiffe.trustDomain``, so without it
    a service-account identity has none. An ID that does not parse counts as none.
    """
    try:
        if identity.spiffe_id:
            return SpiffeId.parse(identity.spiffe_id)
        if binding.spiffe is None or not identity.service_account:
            return None
        return derive_from_service_account(
            trust_domain=TrustDomain(binding.spiffe.trust_domain),
            namespace=identity.namespace,
            service_account=identity.service_account,
        )
    except IdentityRejected as rejection:
        logger.info("No SPIFFE ID for workload %s: %s", identity.pod_ref, rejection)
        return None


def _patterns_of(binding: CredentialBindingSpec) -> list[SpiffeIdPattern]:
    return binding.spiffe.patterns() if binding.spiffe is not None else []


def _check_namespace_allowed(
    *, binding_namespace: str, target_name: str, target: CredentialTargetSpec
) -> None:
    allowed = target.allowed_namespaces
    if ALL_NAMESPACES in allowed or binding_namespace in allowed:
        return
    raise PolicyRejected(
        Reason.NAMESPACE_NOT_ALLOWED,
        f"CredentialTarget {target_name} does not allow namespace {binding_namespace} "
        f"(spec.allowedNamespaces: {_format_list(allowed)}); "
        f"add {binding_namespace} "
        "to the target's spec.allowedNamespaces",
    )


def _check_role_allowed(*, role: str, target_name: str, target: CredentialTargetSpec) -> None:
    if role in target.allowed_roles:
        return
    raise PolicyRejected(
        Reason.ROLE_NOT_ALLOWED,
        f"CredentialTarget {target_name} does not offer role {role}; offered roles: "
        f"{_format_list(target.allowed_roles)}. Set spec.role to one of them or add "
        f"{role} to the target's spec.allowedRoles",
    )


def _resolve_renew_after(requested: timedelta | None, *, ttl: timedelta) -> timedelta:
    default = ttl * DEFAULT_RENEW_FRACTION
    if requested is None:
        return default
    _require_positive(requested, field="spec.renewAfter of the binding")
    if requested >= ttl:
        logger.info(
            "renewAfter %s is not shorter than the effective TTL %s; renewing after %s",
            requested,
            ttl,
            default,
        )
        return default
    return requested


def _require_positive(duration: timedelta, *, field: str) -> None:
    if duration <= timedelta(0):
        raise PolicyRejected(
            Reason.INVALID_SPEC,
            f"{field} is {duration}; it must be longer than zero",
        )


def _format_list(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "none"
