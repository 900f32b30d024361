"""BindingReconciler.reconcile: issue, renew and revoke a binding's credential on fakes."""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from credbroker.delivery import (
    BINDING_LABEL,
    CREDENTIAL_ID_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    MANAGED_BY_LABEL,
    PREVIOUS_CREDENTIAL_ID_ANNOTATION,
    PREVIOUS_REVOKE_AT_ANNOTATION,
    TARGET_ANNOTATION,
)
from credbroker.errors import TargetError
from credbroker.lifecycle.binding import MAX_WAKEUP_SECONDS, ReconcileResult
from credbroker.reasons import Reason
from credbroker.timestamps import format_timestamp

from .fakes import (
    BINDING_NAME,
    BINDING_UID,
    NAMESPACE,
    ROLE,
    SECRET_NAME,
    START,
    TARGET_NAME,
    World,
    binding_body,
    target_body,
    unowned_secret,
)

TTL = timedelta(minutes=15)
RENEW_AFTER = timedelta(minutes=10)
GRACE = timedelta(minutes=2)


@pytest.fixture
def world() -> World:
    return World()


def condition(result: ReconcileResult, kind: str) -> dict[str, Any]:
    matches = [item for item in result.status["conditions"] if item["type"] == kind]
    assert len(matches) == 1, f"expected one {kind} condition in {result.status['conditions']}"
    return matches[0]


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "credbroker.audit"
    ]


def only_credential_id(world: World) -> str:
    ids = list(world.target.credentials)
    assert len(ids) == 1, f"expected one credential on the target, found {ids}"
    return ids[0]


# First issuance


async def test_first_pod_issues_credential(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")

    result = await world.reconciler.reconcile(binding_body())

    credential_id = only_credential_id(world)
    secret = world.secret()
    assert secret is not None
    annotations = world.annotations()
    assert annotations[CREDENTIAL_ID_ANNOTATION] == credential_id
    assert annotations[ISSUED_AT_ANNOTATION] == format_timestamp(START)
    assert annotations[EXPIRES_AT_ANNOTATION] == format_timestamp(START + TTL)
    assert annotations[TARGET_ANNOTATION] == TARGET_NAME
    assert PREVIOUS_CREDENTIAL_ID_ANNOTATION not in annotations
    assert secret["metadata"]["labels"][MANAGED_BY_LABEL] == "credbroker"
    assert secret["metadata"]["labels"][BINDING_LABEL] == BINDING_NAME
    assert secret["metadata"]["ownerReferences"][0]["uid"] == BINDING_UID
    assert world.secret_data()["password"] == world.target.passwords[0]

    assert condition(result, "Ready")["status"] == "True"
    assert condition(result, "Ready")["reason"] == "Issued"
    assert condition(result, "IdentityVerified")["status"] == "True"
    assert condition(result, "CredentialIssued")["status"] == "True"
    assert result.status["credentialId"] == credential_id
    assert result.status["issuedAt"] == format_timestamp(START)
    assert result.status["expiresAt"] == format_timestamp(START + TTL)
    assert result.status["secretName"] == SECRET_NAME
    assert result.status["verifiedPods"] == 1
    assert result.status["rejectedPods"] == 0
    assert result.status["observedGeneration"] == 1
    assert result.next_run_seconds == min(RENEW_AFTER.total_seconds(), MAX_WAKEUP_SECONDS)

    issued_events = world.recorder.of("CredentialBinding", reason="Issued")
    assert len(issued_events) == 1
    assert not issued_events[0].warning

    issue_records = [record for record in audit_records(caplog) if record["action"] == "issue"]
    assert len(issue_records) == 1
    assert issue_records[0]["credential_id"] == credential_id
    assert issue_records[0]["binding"] == f"{NAMESPACE}/{BINDING_NAME}"
    assert issue_records[0]["pod_name"] == "web-1"
    assert issue_records[0]["service_account"] == "web"
    assert issue_records[0]["outcome"] == "success"
    assert issue_records[0]["role"] == ROLE
    assert issue_records[0]["target"] == TARGET_NAME


async def test_repeated_pass_issues_nothing(world):
    world.add_pod("web-1")

    first = await world.reconciler.reconcile(binding_body())
    world.clock.advance(minutes=1)
    second = await world.reconciler.reconcile(binding_body(status=first.status))

    assert world.target.calls["issue"] == 1
    assert second.status["credentialId"] == first.status["credentialId"]
    assert len(world.attestor.attested) == 1


async def test_no_pods_issues_nothing(world):
    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 0
    assert world.secret() is None
    assert condition(result, "Ready")["status"] == "False"
    assert condition(result, "Ready")["reason"] == "WaitingForPods"
    assert result.status["credentialId"] is None


async def test_unselected_pod_issues_nothing(world):
    world.add_pod("batch-1", app="batch")

    await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 0
    assert world.attestor.attested == []


async def test_ttl_capped_at_max_ttl(world):
    world.kube.targets[TARGET_NAME] = target_body(max_ttl="30m", default_ttl="15m")
    world.add_pod("web-1")

    result = await world.reconciler.reconcile(binding_body(ttl="1h"))

    assert result.status["expiresAt"] == format_timestamp(START + timedelta(minutes=30))
    assert "capped" in world.recorder.of("CredentialBinding", reason="Issued")[0].message


async def test_default_ttl_from_target(world):
    world.kube.targets[TARGET_NAME] = target_body(default_ttl="20m")
    world.add_pod("web-1")

    result = await world.reconciler.reconcile(binding_body(ttl=None))

    assert result.status["expiresAt"] == format_timestamp(START + timedelta(minutes=20))


# Rejected pods


async def test_wrong_service_account_rejected(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1", service_account="batch")

    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 0
    assert world.secret() is None
    assert result.status["rejectedPods"] == 1
    assert result.status["verifiedPods"] == 0
    assert len(result.status["rejected"]) == 1
    assert result.status["rejected"][0]["pod"] == "web-1"
    assert result.status["rejected"][0]["reason"] == "ServiceAccountNotAllowed"
    assert "batch" in result.status["rejected"][0]["message"]
    assert condition(result, "IdentityVerified")["status"] == "False"
    assert condition(result, "IdentityVerified")["reason"] == "ServiceAccountNotAllowed"
    assert condition(result, "Ready")["status"] == "False"

    pod_events = world.recorder.of("Pod", reason="ServiceAccountNotAllowed")
    binding_events = world.recorder.of("CredentialBinding", reason="ServiceAccountNotAllowed")
    assert len(pod_events) == 1
    assert pod_events[0].name == "web-1"
    assert pod_events[0].warning
    assert len(binding_events) == 1
    assert binding_events[0].name == BINDING_NAME
    assert binding_events[0].warning

    reject_records = [record for record in audit_records(caplog) if record["action"] == "reject"]
    assert len(reject_records) == 1
    assert reject_records[0]["reason"] == "ServiceAccountNotAllowed"
    assert reject_records[0]["pod_name"] == "web-1"
    assert reject_records[0]["outcome"] == "failure"


async def test_rejected_pod_not_checked_again(world):
    world.add_pod("web-1", service_account="batch")

    await world.reconciler.reconcile(binding_body())
    world.clock.advance(minutes=5)
    await world.reconciler.reconcile(binding_body())

    assert len(world.attestor.attested) == 1
    assert len(world.recorder.of("Pod")) == 1


async def test_transient_rejection_retried(world):
    world.add_pod("web-1")
    world.attestor.reject("web-1", Reason.TOKEN_REQUEST_FAILED, "TokenRequest failed with 503")

    first = await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=5)
    await world.reconciler.reconcile(binding_body())
    checks_before_delay = len(world.attestor.attested)
    world.attestor.rejections.clear()
    world.clock.advance(seconds=5)
    third = await world.reconciler.reconcile(binding_body())

    assert condition(first, "IdentityVerified")["reason"] == "TokenRequestFailed"
    assert checks_before_delay == 1
    assert len(world.attestor.attested) == 2
    assert condition(third, "Ready")["status"] == "True"


async def test_attestor_rejection_reported(world):
    world.add_pod("web-1")
    world.attestor.reject("web-1", Reason.POD_MISMATCH, "token is bound to another pod uid")

    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 0
    assert result.status["rejected"][0]["reason"] == "PodMismatch"
    assert len(world.recorder.of("Pod", reason="PodMismatch")) == 1


async def test_one_good_pod_is_enough(world):
    world.add_pod("web-1")
    world.add_pod("web-2", service_account="batch")

    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 1
    assert result.status["verifiedPods"] == 1
    assert result.status["rejectedPods"] == 1
    assert result.status["rejected"][0]["pod"] == "web-2"
    assert condition(result, "Ready")["status"] == "True"


async def test_new_generation_verifies_again(world):
    world.add_pod("web-1")

    await world.reconciler.reconcile(binding_body(generation=1))
    await world.reconciler.reconcile(binding_body(generation=2))

    assert len(world.attestor.attested) == 2


# Renewal


async def test_renewal_at_two_thirds(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    old_id = only_credential_id(world)

    world.clock.advance(seconds=RENEW_AFTER.total_seconds() - 1)
    await world.reconciler.reconcile(binding_body())
    issues_before_due = world.target.calls["issue"]

    renewed_at = world.clock.advance(seconds=1)
    result = await world.reconciler.reconcile(binding_body())

    new_id = result.status["credentialId"]
    annotations = world.annotations()
    assert issues_before_due == 1
    assert world.target.calls["issue"] == 2
    assert new_id != old_id
    assert set(world.target.credentials) == {old_id, new_id}
    assert annotations[CREDENTIAL_ID_ANNOTATION] == new_id
    assert annotations[ISSUED_AT_ANNOTATION] == format_timestamp(renewed_at)
    assert annotations[EXPIRES_AT_ANNOTATION] == format_timestamp(renewed_at + TTL)
    assert annotations[PREVIOUS_CREDENTIAL_ID_ANNOTATION] == old_id
    assert annotations[PREVIOUS_REVOKE_AT_ANNOTATION] == format_timestamp(renewed_at + GRACE)
    assert world.secret_data()["password"] == world.target.passwords[1]
    assert condition(result, "CredentialIssued")["reason"] == "Renewed"
    assert condition(result, "Ready")["status"] == "True"
    assert len(world.recorder.of("CredentialBinding", reason="Renewed")) == 1
    assert [record["action"] for record in audit_records(caplog)] == ["issue", "renew"]


async def test_previous_revoked_after_grace(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    old_id = only_credential_id(world)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    renewed = await world.reconciler.reconcile(binding_body())
    new_id = renewed.status["credentialId"]

    world.clock.advance(seconds=GRACE.total_seconds() - 1)
    await world.reconciler.reconcile(binding_body())
    kept_inside_grace = old_id in world.target.credentials

    world.clock.advance(seconds=1)
    result = await world.reconciler.reconcile(binding_body())

    annotations = world.annotations()
    assert kept_inside_grace
    assert old_id not in world.target.credentials
    assert new_id in world.target.credentials
    assert world.target.revoked == [old_id]
    assert PREVIOUS_CREDENTIAL_ID_ANNOTATION not in annotations
    assert PREVIOUS_REVOKE_AT_ANNOTATION not in annotations
    assert annotations[CREDENTIAL_ID_ANNOTATION] == new_id
    assert result.status["credentialId"] == new_id
    assert condition(result, "Ready")["status"] == "True"

    revoke_records = [record for record in audit_records(caplog) if record["action"] == "revoke"]
    assert len(revoke_records) == 1
    assert revoke_records[0]["credential_id"] == old_id
    assert revoke_records[0]["reason"] == "Renewed"


async def test_renewal_wakes_at_revoke_time(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())

    result = await world.reconciler.reconcile(binding_body())

    assert result.next_run_seconds == GRACE.total_seconds()


async def test_second_renewal_revokes_oldest(world):
    body = binding_body(ttl="10m", grace_period="5m")
    body["spec"]["renewAfter"] = "1m"
    world.add_pod("web-1")
    await world.reconciler.reconcile(body)
    first_id = only_credential_id(world)
    world.clock.advance(minutes=1)
    second = await world.reconciler.reconcile(body)
    second_id = second.status["credentialId"]

    world.clock.advance(minutes=1)
    third = await world.reconciler.reconcile(body)

    annotations = world.annotations()
    assert first_id not in world.target.credentials
    assert second_id in world.target.credentials
    assert third.status["credentialId"] in world.target.credentials
    assert annotations[PREVIOUS_CREDENTIAL_ID_ANNOTATION] == second_id


async def test_late_pass_revokes_previous_once(world):
    # The operator was away past both the revocation time of the replaced
    # credential and the next renewal, so one pass handles both.
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    first_id = only_credential_id(world)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    await world.reconciler.reconcile(binding_body())

    world.clock.advance(seconds=RENEW_AFTER.total_seconds() + 60)
    await world.reconciler.reconcile(binding_body())

    assert first_id not in world.target.credentials
    assert world.target.revoked.count(first_id) == 1


async def test_fresh_reconciler_revokes_previous(world):
    # A renewal wrote the Secret, then the process died. The next process
    # starts with an empty cache and finds the replaced credential in the
    # Secret's annotations.
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    old_id = only_credential_id(world)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    await world.reconciler.reconcile(binding_body())

    world.clock.advance(seconds=GRACE.total_seconds() - 1)
    early = world.new_reconciler()
    await early.reconcile(binding_body())
    kept_before_revoke_time = old_id in world.target.credentials

    world.clock.advance(seconds=1)
    restarted = world.new_reconciler()
    result = await restarted.reconcile(binding_body())

    assert kept_before_revoke_time
    assert old_id not in world.target.credentials
    assert PREVIOUS_CREDENTIAL_ID_ANNOTATION not in world.annotations()
    assert world.target.calls["issue"] == 2
    assert condition(result, "Ready")["status"] == "True"


async def test_transition_time_kept_on_renewal(world):
    world.add_pod("web-1")
    first = await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())

    renewed = await world.reconciler.reconcile(binding_body(status=first.status))

    assert condition(renewed, "Ready")["lastTransitionTime"] == format_timestamp(START)
    assert condition(renewed, "CredentialIssued")["reason"] == "Renewed"


# Grace period without verified pods


async def test_no_pods_within_grace_keeps_credential(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    credential_id = only_credential_id(world)
    world.remove_pod("web-1")

    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=GRACE.total_seconds() - 1)
    result = await world.reconciler.reconcile(binding_body())

    assert credential_id in world.target.credentials
    assert world.secret() is not None
    assert world.target.calls["revoke"] == 0
    assert result.status["verifiedPods"] == 0
    assert result.next_run_seconds == 1.0


async def test_no_pods_for_grace_revokes(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    credential_id = only_credential_id(world)
    world.remove_pod("web-1")
    await world.reconciler.reconcile(binding_body())

    world.clock.advance(seconds=GRACE.total_seconds())
    result = await world.reconciler.reconcile(binding_body())

    assert world.target.credentials == {}
    assert world.target.revoked == [credential_id]
    assert world.secret() is None
    assert result.status["credentialId"] is None
    assert result.status["expiresAt"] is None
    assert condition(result, "Ready")["status"] == "False"
    revoked_events = world.recorder.of("CredentialBinding", reason="Revoked")
    assert len(revoked_events) == 1
    assert "No verified pod remained for 2m;" in revoked_events[0].message
    revoke_records = [record for record in audit_records(caplog) if record["action"] == "revoke"]
    assert [record["reason"] for record in revoke_records] == ["NoVerifiedPods"]


async def test_no_pods_revokes_previous_too(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    await world.reconciler.reconcile(binding_body())
    assert len(world.target.credentials) == 2
    world.remove_pod("web-1")
    await world.reconciler.reconcile(binding_body())

    world.clock.advance(seconds=GRACE.total_seconds() - 1)
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=1)
    await world.reconciler.reconcile(binding_body())

    assert world.target.credentials == {}
    assert world.secret() is None
    revoked_twice = [key for key, count in Counter(world.target.revoked).items() if count > 1]
    assert revoked_twice == []


async def test_pod_back_within_grace_resets_timer(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    credential_id = only_credential_id(world)
    world.remove_pod("web-1")
    await world.reconciler.reconcile(binding_body())

    world.clock.advance(minutes=1)
    world.add_pod("web-2")
    await world.reconciler.reconcile(binding_body())
    world.remove_pod("web-2")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=GRACE.total_seconds() - 1)
    await world.reconciler.reconcile(binding_body())

    assert credential_id in world.target.credentials
    assert world.target.calls["revoke"] == 0


async def test_revoked_binding_issues_again(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.remove_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=GRACE.total_seconds())
    await world.reconciler.reconcile(binding_body())

    world.add_pod("web-2")
    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 2
    assert result.status["credentialId"] in world.target.credentials
    assert world.secret() is not None


# Failures of the target and the Secret


async def test_issue_failure_reported(world):
    world.add_pod("web-1")
    world.target.fail_issue = TargetError(
        Reason.TARGET_UNAVAILABLE, "connection to 127.0.0.1 refused"
    )

    result = await world.reconciler.reconcile(binding_body())

    assert world.secret() is None
    assert condition(result, "Ready")["status"] == "False"
    assert condition(result, "Ready")["reason"] == "TargetUnavailable"
    assert result.next_run_seconds == world.settings.retry_delay_seconds
    assert len(world.recorder.of("CredentialBinding", reason="TargetUnavailable")) == 1


async def test_secret_write_failure_revokes_new(world):
    world.add_pod("web-1")
    world.core.fail["create"] = ApiException(status=500, reason="Internal Server Error")

    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 1
    assert world.target.credentials == {}
    assert world.secret() is None
    assert condition(result, "Ready")["status"] == "False"
    assert condition(result, "CredentialIssued")["reason"] == "IssueFailed"
    assert result.status["credentialId"] is None


async def test_secret_conflict_not_overwritten(world):
    world.add_pod("web-1")
    stored = world.core.put(unowned_secret())
    original = json.dumps(stored, sort_keys=True)

    result = await world.reconciler.reconcile(binding_body())

    assert world.target.calls["issue"] == 0
    assert world.core.calls["create"] == 0
    assert world.core.calls["replace"] == 0
    assert json.dumps(world.secret(), sort_keys=True) == original
    assert condition(result, "Ready")["status"] == "False"
    assert condition(result, "Ready")["reason"] == "SecretConflict"
    assert condition(result, "CredentialIssued")["reason"] == "SecretConflict"
    assert len(world.recorder.of("CredentialBinding", reason="SecretConflict")) == 1


async def test_secret_conflict_names_binding(world):
    world.add_pod("web-1")
    world.core.put(unowned_secret())

    result = await world.reconciler.reconcile(binding_body())

    message = condition(result, "Ready")["message"]
    assert f"Secret {NAMESPACE}/{SECRET_NAME} exists" in message
    assert f"CredentialBinding {NAMESPACE}/{BINDING_NAME}" in message


async def test_secret_of_other_binding_conflicts(world):
    world.add_pod("web-1")
    world.add_pod("api-1", app="api")
    await world.reconciler.reconcile(binding_body())
    other = binding_body(name="api-db", uid="uid-api-db", app="api")

    result = await world.reconciler.reconcile(other)

    assert world.target.calls["issue"] == 1
    assert world.annotations()[CREDENTIAL_ID_ANNOTATION] == only_credential_id(world)
    assert condition(result, "Ready")["reason"] == "SecretConflict"


async def test_long_binding_name_leaves_nothing(world):
    # A binding name is a DNS subdomain of up to 253 characters, but the
    # Secret's binding label allows at most 63, so no Secret can be written.
    long_name = "b" * 64
    world.add_pod("web-1")

    result = await world.reconciler.reconcile(binding_body(name=long_name))
    world.clock.advance(seconds=world.settings.retry_delay_seconds)
    await world.reconciler.reconcile(binding_body(name=long_name))

    assert condition(result, "Ready")["reason"] == "InvalidSpec"
    assert world.secret() is None
    assert world.target.credentials == {}


# Invalid bindings, and the reconciler keeps serving the others


def _invalid_spec(world: World) -> dict[str, Any]:
    body = binding_body(name="bad", uid="uid-bad", secret_name="bad-credentials")
    body["spec"]["role"] = "Not-A-Role"
    return body


def _missing_target(world: World) -> dict[str, Any]:
    return binding_body(name="bad", uid="uid-bad", secret_name="bad-credentials", target="absent")


def _namespace_not_allowed(world: World) -> dict[str, Any]:
    world.add_pod("web-1", namespace="other")
    return binding_body(namespace="other", name="bad", uid="uid-bad", secret_name="bad-credentials")


def _role_not_allowed(world: World) -> dict[str, Any]:
    return binding_body(name="bad", uid="uid-bad", secret_name="bad-credentials", role="admin")


@pytest.mark.parametrize(
    ("make_body", "reason"),
    [
        (_invalid_spec, "InvalidSpec"),
        (_missing_target, "TargetNotFound"),
        (_namespace_not_allowed, "NamespaceNotAllowed"),
        (_role_not_allowed, "RoleNotAllowed"),
    ],
    ids=["invalid-spec", "missing-target", "namespace-not-allowed", "role-not-allowed"],
)
async def test_invalid_binding_reported(world, make_body, reason):
    world.add_pod("web-1")
    bad_body = make_body(world)

    bad = await world.reconciler.reconcile(bad_body)
    good = await world.reconciler.reconcile(binding_body())

    assert condition(bad, "Ready")["status"] == "False"
    assert condition(bad, "Ready")["reason"] == reason
    assert condition(bad, "IdentityVerified")["status"] == "Unknown"
    assert condition(bad, "CredentialIssued")["status"] == "False"
    assert bad.status["credentialId"] is None
    assert world.secret("bad-credentials") is None
    assert world.secret("bad-credentials", namespace="other") is None
    assert len(world.recorder.of("CredentialBinding", reason=reason)) == 1
    assert condition(good, "Ready")["status"] == "True"
    assert world.target.calls["issue"] == 1
    assert world.secret() is not None


async def test_invalid_spec_message_names_field(world):
    body = binding_body()
    del body["spec"]["secretName"]

    result = await world.reconciler.reconcile(body)

    assert condition(result, "Ready")["reason"] == "InvalidSpec"
    assert "spec.secretName" in condition(result, "Ready")["message"]


# Secrets stay out of logs, events and status


async def test_no_password_leaks(world, caplog):
    caplog.set_level(logging.DEBUG)
    statuses: list[dict[str, Any]] = []
    world.add_pod("web-1")
    world.add_pod("web-2", service_account="batch")

    statuses.append((await world.reconciler.reconcile(binding_body())).status)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    statuses.append((await world.reconciler.reconcile(binding_body())).status)
    world.clock.advance(seconds=GRACE.total_seconds())
    statuses.append((await world.reconciler.reconcile(binding_body())).status)
    world.core.fail["replace"] = ApiException(status=500, reason="Internal Server Error")
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    statuses.append((await world.reconciler.reconcile(binding_body())).status)
    world.core.fail.clear()
    world.remove_pod("web-1")
    statuses.append((await world.reconciler.reconcile(binding_body())).status)
    world.clock.advance(seconds=GRACE.total_seconds())
    statuses.append((await world.reconciler.reconcile(binding_body())).status)

    assert len(world.target.passwords) == 3
    texts = {
        "logs": caplog.text,
        "events": "\n".join(event.message for event in world.recorder.events),
        "statuses": json.dumps(statuses),
    }
    for password in world.target.passwords:
        encoded = base64.b64encode(password.encode()).decode()
        for where, text in texts.items():
            assert password not in text, f"a password appears in {where}"
            assert encoded not in text, f"a base64-encoded password appears in {where}"
