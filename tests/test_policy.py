"""Tests for credbroker.policy: target grants and pod authorization."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from credbroker.errors import PolicyRejected
from credbroker.identity.workload import WorkloadIdentity
from credbroker.policy import Grant, authorize_identity, grant_for_binding
from credbroker.reasons import Reason
from credbroker.resources import CredentialBindingSpec, CredentialTargetSpec


def make_target(**overrides: Any) -> CredentialTargetSpec:
    spec: dict[str, Any] = {
        "type": "postgresql",
        "postgresql": {
            "host": "db.example.internal",
            "database": "orders",
            "adminSecretRef": {"name": "orders-db-admin"},
        },
        "allowedNamespaces": ["shop", "billing"],
        "allowedRoles": ["orders_reader", "orders_writer"],
        "maxTTL": "1h",
        "defaultTTL": "15m",
    }
    spec.update(overrides)
    return CredentialTargetSpec.model_validate(spec)


def make_binding(**overrides: Any) -> CredentialBindingSpec:
    spec: dict[str, Any] = {
        "targetRef": {"name": "orders-db"},
        "role": "orders_reader",
        "podSelector": {"matchLabels": {"app": "orders"}},
        "serviceAccounts": ["orders"],
        "secretName": "orders-db",
        "gracePeriod": "2m",
    }
    spec.update(overrides)
    return CredentialBindingSpec.model_validate(spec)


def make_identity(**overrides: Any) -> WorkloadIdentity:
    fields: dict[str, Any] = {
        "namespace": "shop",
        "service_account": "orders",
        "pod_name": "orders-7d9f-abcde",
        "pod_uid": "0b6f3c1e-1111-4222-8333-944455556666",
        "node_name": "node-1",
        "token_jti": "jti-1",
        "token_expires_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return WorkloadIdentity(**fields)


def grant(binding: CredentialBindingSpec, target: CredentialTargetSpec) -> Grant:
    return grant_for_binding(
        binding_namespace="shop", binding=binding, target_name="orders-db", target=target
    )


def test_grant_uses_default_ttl() -> None:
    result = grant(make_binding(), make_target())

    assert result.role == "orders_reader"
    assert result.ttl == timedelta(minutes=15)
    assert result.renew_after == timedelta(minutes=10)
    assert result.grace_period == timedelta(minutes=2)
    assert result.ttl_capped is False


def test_grant_uses_binding_ttl() -> None:
    result = grant(make_binding(ttl="30m", renewAfter="20m"), make_target())

    assert result.ttl == timedelta(minutes=30)
    assert result.renew_after == timedelta(minutes=20)
    assert result.ttl_capped is False


def test_grant_caps_ttl_at_max() -> None:
    result = grant(make_binding(ttl="3h"), make_target())

    assert result.ttl == timedelta(hours=1)
    assert result.ttl_capped is True
    assert result.renew_after == timedelta(minutes=40)


def test_grant_ttl_equal_to_max_not_capped() -> None:
    result = grant(make_binding(ttl="1h"), make_target())

    assert result.ttl == timedelta(hours=1)
    assert result.ttl_capped is False


def test_grant_scales_renew_after_when_capped() -> None:
    # 90m is valid against the requested 2h, but not against the 1h cap.
    result = grant(make_binding(ttl="2h", renewAfter="90m"), make_target())

    assert result.ttl == timedelta(hours=1)
    assert result.ttl_capped is True
    assert result.renew_after == timedelta(minutes=40)


def test_grant_scales_renew_after_equal_to_cap() -> None:
    result = grant(make_binding(ttl="2h", renewAfter="1h"), make_target())

    assert result.ttl == timedelta(hours=1)
    assert result.renew_after == timedelta(minutes=40)


def test_grant_keeps_renew_after_below_cap() -> None:
    result = grant(make_binding(ttl="2h", renewAfter="50m"), make_target())

    assert result.ttl == timedelta(hours=1)
    assert result.renew_after == timedelta(minutes=50)


def test_grant_scales_renew_after_above_default_ttl() -> None:
    # Without spec.ttl the model cannot compare renewAfter with the target's default.
    result = grant(make_binding(renewAfter="20m"), make_target(defaultTTL="15m"))

    assert result.ttl == timedelta(minutes=15)
    assert result.ttl_capped is False
    assert result.renew_after == timedelta(minutes=10)


def test_grant_renew_after_shorter_than_ttl() -> None:
    for ttl in ("1m", "7m", "59m", "1h", "5h"):
        result = grant(make_binding(ttl=ttl), make_target())

        assert timedelta(0) < result.renew_after < result.ttl, ttl


def test_grant_all_namespaces() -> None:
    target = make_target(allowedNamespaces=["*"])

    result = grant_for_binding(
        binding_namespace="anything", binding=make_binding(), target_name="orders-db", target=target
    )

    assert result.role == "orders_reader"


def test_grant_namespace_not_allowed() -> None:
    with pytest.raises(PolicyRejected) as caught:
        grant_for_binding(
            binding_namespace="marketing",
            binding=make_binding(),
            target_name="orders-db",
            target=make_target(),
        )

    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED
    assert "marketing" in caught.value.message
    assert "orders-db" in caught.value.message
    assert "shop, billing" in caught.value.message
    assert "spec.allowedNamespaces" in caught.value.message


def test_grant_role_not_allowed() -> None:
    with pytest.raises(PolicyRejected) as caught:
        grant(make_binding(role="orders_admin"), make_target())

    assert caught.value.reason is Reason.ROLE_NOT_ALLOWED
    assert "orders_admin" in caught.value.message
    assert "orders_reader, orders_writer" in caught.value.message


def test_grant_namespace_checked_before_role() -> None:
    with pytest.raises(PolicyRejected) as caught:
        grant_for_binding(
            binding_namespace="marketing",
            binding=make_binding(role="orders_admin"),
            target_name="orders-db",
            target=make_target(),
        )

    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED


def test_grant_rejects_unvalidated_durations() -> None:
    # model_copy(update=...) skips validation, like a spec admitted by an outdated CRD.
    valid = make_binding()
    zero_ttl = valid.model_copy(update={"ttl": timedelta(0)})
    negative_renew = valid.model_copy(
        update={"ttl": timedelta(minutes=10), "renew_after": timedelta(seconds=-1)}
    )
    negative_grace = valid.model_copy(update={"grace_period": timedelta(seconds=-5)})
    zero_max_target = make_target().model_copy(update={"max_ttl": timedelta(0)})

    cases = [
        (zero_ttl, make_target(), "spec.ttl"),
        (negative_renew, make_target(), "spec.renewAfter"),
        (negative_grace, make_target(), "spec.gracePeriod"),
        (valid, zero_max_target, "spec.maxTTL"),
    ]
    for binding, target, field in cases:
        with pytest.raises(PolicyRejected) as caught:
            grant(binding, target)

        assert caught.value.reason is Reason.INVALID_SPEC, field
        assert field in caught.value.message


def test_authorize_accepts_listed_account() -> None:
    binding = make_binding(serviceAccounts=["web", "orders"])

    authorize_identity(identity=make_identity(), binding_namespace="shop", binding=binding)


def test_authorize_rejects_other_namespace() -> None:
    identity = make_identity(namespace="billing", pod_name="orders-x")

    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(identity=identity, binding_namespace="shop", binding=make_binding())

    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED
    assert "billing/orders-x" in caught.value.message
    assert "shop" in caught.value.message


def test_authorize_rejects_unlisted_account() -> None:
    identity = make_identity(service_account="default")
    binding = make_binding(serviceAccounts=["orders", "orders-migrate"])

    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(identity=identity, binding_namespace="shop", binding=binding)

    assert caught.value.reason is Reason.SERVICE_ACCOUNT_NOT_ALLOWED
    assert "shop/orders-7d9f-abcde" in caught.value.message
    assert "service account default" in caught.value.message
    assert "orders, orders-migrate" in caught.value.message


def test_authorize_same_account_other_namespace() -> None:
    # A service account of the same name in another namespace is a different account.
    identity = make_identity(namespace="billing")

    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(identity=identity, binding_namespace="shop", binding=make_binding())

    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED


# --- Bindings in SPIFFE terms. ----------------------------------------------

SHOP_PREFIX = {"trustDomain": "example.org", "allowedIDs": [{"pathPrefix": "/ns/shop/"}]}


def svid_identity(spiffe_id: str) -> WorkloadIdentity:
    return make_identity(
        namespace="", service_account="", pod_name="", pod_uid="", spiffe_id=spiffe_id
    )


def test_authorize_derived_id_matches_prefix() -> None:
    binding = make_binding(serviceAccounts=["billing"], spiffe=SHOP_PREFIX)

    authorize_identity(identity=make_identity(), binding_namespace="shop", binding=binding)


def test_authorize_spiffe_only_binding() -> None:
    spec = {
        "trustDomain": "example.org",
        "allowedIDs": [{"exact": "spiffe://example.org/ns/shop/sa/orders"}],
    }
    binding = CredentialBindingSpec.model_validate(
        {
            "targetRef": {"name": "orders-db"},
            "role": "orders_reader",
            "podSelector": {},
            "secretName": "orders-db",
            "spiffe": spec,
        }
    )

    authorize_identity(identity=make_identity(), binding_namespace="shop", binding=binding)
    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(
            identity=make_identity(service_account="web"), binding_namespace="shop", binding=binding
        )
    assert caught.value.reason is Reason.SERVICE_ACCOUNT_NOT_ALLOWED
    assert "spiffe://example.org/ns/shop/sa/web" in caught.value.message


def test_authorize_derived_id_keeps_namespace_check() -> None:
    binding = make_binding(
        spiffe={"trustDomain": "example.org", "allowedIDs": [{"pathPrefix": "/"}]}
    )

    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(
            identity=make_identity(namespace="billing"), binding_namespace="shop", binding=binding
        )
    assert caught.value.reason is Reason.NAMESPACE_NOT_ALLOWED


def test_authorize_svid_matches_prefix() -> None:
    binding = make_binding(spiffe=SHOP_PREFIX)

    identity = svid_identity("spiffe://example.org/ns/shop/sa/batch")
    authorize_identity(identity=identity, binding_namespace="shop", binding=binding)


def test_authorize_svid_outside_prefix() -> None:
    binding = make_binding(spiffe=SHOP_PREFIX)

    for spiffe_id in (
        "spiffe://example.org/ns/shopping/sa/web",
        "spiffe://example.org/ns/shop",
        "spiffe://other.org/ns/shop/sa/web",
    ):
        with pytest.raises(PolicyRejected) as caught:
            authorize_identity(
                identity=svid_identity(spiffe_id), binding_namespace="shop", binding=binding
            )
        assert caught.value.reason is Reason.SPIFFE_ID_NOT_ALLOWED, spiffe_id
        assert spiffe_id in caught.value.message


def test_authorize_svid_ignores_account_list() -> None:
    # An SVID path that looks like a listed service account grants nothing by itself.
    binding = make_binding(serviceAccounts=["orders"])

    identity = svid_identity("spiffe://example.org/ns/shop/sa/orders")
    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(identity=identity, binding_namespace="shop", binding=binding)
    assert caught.value.reason is Reason.SPIFFE_ID_NOT_ALLOWED


def test_authorize_given_id_beats_derived() -> None:
    binding = make_binding(serviceAccounts=["billing"], spiffe=SHOP_PREFIX)
    identity = make_identity(spiffe_id="spiffe://example.org/ns/other/sa/orders")

    with pytest.raises(PolicyRejected) as caught:
        authorize_identity(identity=identity, binding_namespace="shop", binding=binding)
    assert caught.value.reason is Reason.SERVICE_ACCOUNT_NOT_ALLOWED
