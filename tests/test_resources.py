"""The spec models: defaults, label selectors, and the messages of rejected specs."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from crd_examples import BINDING_SPEC, REMOVE, TARGET_SPEC, replaced
from credbroker.errors import PolicyRejected
from credbroker.reasons import Reason
from credbroker.resources import (
    CredentialBindingSpec,
    LabelSelector,
    LabelSelectorRequirement,
    PostgresTarget,
    SecretKeySelector,
    TargetRef,
    parse_binding,
    parse_target,
)


def rejection_message(parse: Any, spec: dict[str, Any]) -> str:
    with pytest.raises(PolicyRejected) as caught:
        parse(spec)
    assert caught.value.reason is Reason.INVALID_SPEC
    return caught.value.message


# --- Defaults. -------------------------------------------------------------


def test_target_defaults() -> None:
    target = parse_target(TARGET_SPEC)

    assert target.type == "postgresql"
    assert target.postgresql is not None
    assert target.postgresql.port == 5432
    assert target.postgresql.ssl_mode == "prefer"
    assert target.postgresql.connect_timeout == timedelta(seconds=10)
    assert target.postgresql.admin_secret_ref.username_key == "username"
    assert target.postgresql.admin_secret_ref.password_key == "password"
    assert target.max_ttl == timedelta(hours=1)
    assert target.default_ttl == timedelta(minutes=15)
    assert target.allowed_namespaces == ["shop"]
    assert target.allowed_roles == ["orders_rw", "orders_ro"]


def test_binding_defaults() -> None:
    binding = parse_binding(BINDING_SPEC)

    assert binding.target_ref.name == "orders-postgres"
    assert binding.role == "orders_rw"
    assert binding.pod_selector.match_labels == {"app": "orders"}
    assert binding.pod_selector.match_expressions == []
    assert binding.service_accounts == ["orders"]
    assert binding.ttl is None
    assert binding.renew_after is None
    assert binding.grace_period == timedelta(minutes=2)
    assert binding.secret_name == "orders-db"


def test_binding_durations_parsed() -> None:
    binding = parse_binding(replaced(BINDING_SPEC, ttl="1h30m", renewAfter="1h", gracePeriod="0s"))

    assert binding.ttl == timedelta(minutes=90)
    assert binding.renew_after == timedelta(hours=1)
    assert binding.grace_period == timedelta(0)


def test_target_ttl_aliases() -> None:
    target = parse_target(replaced(TARGET_SPEC, maxTTL="2h", defaultTTL="30m"))

    assert target.max_ttl == timedelta(hours=2)
    assert target.default_ttl == timedelta(minutes=30)
    assert target.model_dump(by_alias=True)["maxTTL"] == timedelta(hours=2)


# --- Round trips and Python construction. -----------------------------------


def test_target_dump_round_trip() -> None:
    target = parse_target(replaced(TARGET_SPEC, maxTTL="1h30m", defaultTTL="90s"))
    dumped = target.model_dump(by_alias=True, mode="json", exclude_none=True)

    assert dumped["maxTTL"] == "1h30m"
    assert dumped["defaultTTL"] == "1m30s"
    assert dumped["postgresql"]["connectTimeout"] == "10s"
    assert parse_target(dumped) == target


def test_binding_dump_round_trip() -> None:
    binding = parse_binding(replaced(BINDING_SPEC, ttl="15m", renewAfter="10m"))
    dumped = binding.model_dump(by_alias=True, mode="json", exclude_none=True)

    assert dumped["ttl"] == "15m"
    assert dumped["renewAfter"] == "10m"
    assert dumped["gracePeriod"] == "2m"
    assert parse_binding(dumped) == binding


def test_construct_by_python_names() -> None:
    binding = CredentialBindingSpec(
        target_ref=TargetRef(name="orders-postgres"),
        role="orders_rw",
        pod_selector=LabelSelector(match_labels={"app": "orders"}),
        service_accounts=["orders"],
        ttl=timedelta(minutes=15),
        secret_name="orders-db",
    )

    assert binding == parse_binding(replaced(BINDING_SPEC, ttl="15m"))


def test_construct_checks_rules() -> None:
    with pytest.raises(ValidationError, match="shorter than ttl"):
        CredentialBindingSpec(
            target_ref=TargetRef(name="orders-postgres"),
            role="orders_rw",
            pod_selector=LabelSelector(),
            service_accounts=["orders"],
            ttl=timedelta(minutes=15),
            renew_after=timedelta(minutes=15),
            secret_name="orders-db",
        )


def test_construct_negative_timedelta() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        PostgresTarget(
            host="127.0.0.1",
            database="shop",
            admin_secret_ref=SecretKeySelector(name="admin"),
            connect_timeout=timedelta(seconds=-5),
        )


def test_models_frozen() -> None:
    binding = parse_binding(BINDING_SPEC)

    with pytest.raises(ValidationError, match="frozen"):
        binding.role = "orders_ro"  # type: ignore[misc]


def test_parse_read_only_mappings() -> None:
    spec = MappingProxyType(
        {**BINDING_SPEC, "podSelector": MappingProxyType({"matchLabels": {"app": "orders"}})}
    )

    assert parse_binding(spec) == parse_binding(BINDING_SPEC)


def test_parse_rejects_python_names() -> None:
    spec = replaced(BINDING_SPEC, secret_name="orders-db", secretName=REMOVE)

    message = rejection_message(parse_binding, spec)

    assert "spec.secretName: is required" in message
    assert "spec.secret_name: is not a known field" in message


# --- Rejection messages. ----------------------------------------------------


def test_message_lists_every_field() -> None:
    spec = replaced(
        BINDING_SPEC,
        role="Orders",
        ttl="15 minutes",
        serviceAccounts=[],
        targetRef={},
        podSelector={"matchExpressions": [{"key": "app", "operator": "Equals"}]},
    )

    message = rejection_message(parse_binding, spec)

    assert message.startswith("invalid CredentialBinding spec: ")
    assert "spec.targetRef.name: is required" in message
    assert "spec.role: expected a PostgreSQL role name" in message
    assert "got 'Orders'" in message
    assert "spec.podSelector.matchExpressions[0].operator: " in message
    assert "spec.serviceAccounts: " in message
    assert "spec.ttl: invalid duration '15 minutes'" in message
    assert message.count("; ") == 4


def test_message_cross_field_rules() -> None:
    target_message = rejection_message(parse_target, replaced(TARGET_SPEC, maxTTL="10m"))
    binding_message = rejection_message(
        parse_binding, replaced(BINDING_SPEC, ttl="10m", renewAfter="10m")
    )

    assert "spec.defaultTTL: must not exceed maxTTL (10m), got 15m" in target_message
    assert "spec.renewAfter: must be shorter than ttl (10m), got 10m" in binding_message


def test_message_duration_minimum() -> None:
    message = rejection_message(parse_binding, replaced(BINDING_SPEC, ttl="59s"))

    assert message == "invalid CredentialBinding spec: spec.ttl: must be at least 1m, got 59s"


def test_message_duplicate_index() -> None:
    spec = replaced(TARGET_SPEC, allowedRoles=["orders_rw", "orders_ro", "orders_rw"])

    message = rejection_message(parse_target, spec)

    assert "spec.allowedRoles[2]: repeats 'orders_rw'" in message


def test_message_truncates_input() -> None:
    long_host = "h" * 300

    message = rejection_message(parse_target, replaced(TARGET_SPEC, postgresql__host=long_host))

    assert "spec.postgresql.host: " in message
    assert long_host not in message
    assert len(message) < 200


def test_message_label_key() -> None:
    spec = replaced(BINDING_SPEC, podSelector={"matchLabels": {"app,tier": "orders"}})

    message = rejection_message(parse_binding, spec)

    assert "spec.podSelector.matchLabels['app,tier'] (key): expected a label key" in message


@pytest.mark.parametrize("port", [True, "5432", 5432.0, 0, 65536])
def test_port_invalid(port: object) -> None:
    message = rejection_message(parse_target, replaced(TARGET_SPEC, postgresql__port=port))

    assert "spec.postgresql.port: " in message


def test_duration_number_rejected() -> None:
    message = rejection_message(parse_binding, replaced(BINDING_SPEC, ttl=900))

    assert "spec.ttl: invalid duration of type int" in message


# --- Label selectors. -------------------------------------------------------


def requirement(
    key: str, operator: str, values: list[str] | None = None
) -> LabelSelectorRequirement:
    return LabelSelectorRequirement.model_validate(
        {"key": key, "operator": operator, "values": values or []}
    )


@pytest.mark.parametrize(
    ("operator", "values", "labels", "expected"),
    [
        ("In", ["a", "b"], {"tier": "a"}, True),
        ("In", ["a", "b"], {"tier": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"tier": "b"}, True),
        ("NotIn", ["a"], {"tier": "a"}, False),
        ("NotIn", ["a"], {}, True),
        ("Exists", None, {"tier": ""}, True),
        ("Exists", None, {"app": "x"}, False),
        ("DoesNotExist", None, {"app": "x"}, True),
        ("DoesNotExist", None, {"tier": "a"}, False),
    ],
)
def test_requirement_matches(
    operator: str, values: list[str] | None, labels: dict[str, str], expected: bool
) -> None:
    assert requirement("tier", operator, values).matches(labels) is expected


def test_selector_empty_matches_all() -> None:
    selector = LabelSelector()

    assert selector.matches({}) is True
    assert selector.matches({"app": "anything"}) is True
    assert selector.to_query() == ""


def test_selector_labels_and_expressions() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"app": "orders", "example.com/tier": "backend"},
            "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}],
        }
    )

    assert selector.matches({"app": "orders", "example.com/tier": "backend"}) is True
    assert selector.matches({"app": "orders", "example.com/tier": "backend", "x": "y"}) is True
    assert selector.matches({"app": "orders"}) is False
    assert selector.matches({"app": "orders", "example.com/tier": "frontend"}) is False
    assert (
        selector.matches({"app": "orders", "example.com/tier": "backend", "track": "canary"})
        is False
    )


def test_selector_empty_label_value() -> None:
    selector = LabelSelector.model_validate({"matchLabels": {"canary": ""}})

    assert selector.matches({"canary": ""}) is True
    assert selector.matches({}) is False
    assert selector.to_query() == "canary="


def test_selector_to_query() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "backend", "app": "orders"},
            "matchExpressions": [
                {"key": "track", "operator": "In", "values": ["stable", "beta"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "example.com/owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )

    assert selector.to_query() == (
        "app=orders,tier=backend,track in (beta,stable),env notin (dev),example.com/owner,!legacy"
    )


@pytest.mark.parametrize(
    ("operator", "values"),
    [("In", []), ("NotIn", []), ("Exists", ["a"]), ("DoesNotExist", ["a"])],
)
def test_requirement_values_checked(operator: str, values: list[str]) -> None:
    with pytest.raises(ValidationError, match="values"):
        LabelSelectorRequirement.model_validate(
            {"key": "tier", "operator": operator, "values": values}
        )
