"""Tests for credbroker.audit: JSON records on the audit logger, without secrets."""

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from credbroker.audit import (
    AUDIT_LOGGER_NAME,
    AuditAction,
    AuditRecord,
    emit,
    record_from_identity,
)
from credbroker.delivery import render_secret
from credbroker.errors import PolicyRejected
from credbroker.identity.workload import WorkloadIdentity
from credbroker.reasons import Reason
from credbroker.targets.base import IssuedCredential

PASSWORD = "Vb3-audit-test-password-77e2"

EXPECTED_KEYS = {
    "action",
    "binding",
    "credential_id",
    "expires_at",
    "message",
    "namespace",
    "outcome",
    "pod_name",
    "pod_uid",
    "reason",
    "role",
    "service_account",
    "target",
    "time",
    "token_jti",
}


@pytest.fixture
def audit_stream() -> Iterator[io.StringIO]:
    """Capture the audit logger through a plain handler that prints only the message."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit_logger = logging.getLogger(AUDIT_LOGGER_NAME)
    previous_level = audit_logger.level
    audit_logger.addHandler(handler)
    audit_logger.setLevel(logging.INFO)
    yield stream
    audit_logger.removeHandler(handler)
    audit_logger.setLevel(previous_level)


def make_identity() -> WorkloadIdentity:
    return WorkloadIdentity(
        namespace="shop",
        service_account="orders",
        pod_name="orders-7d9f-abcde",
        pod_uid="0b6f3c1e-1111-4222-8333-944455556666",
        node_name="node-1",
        token_jti="jti-42",
        token_expires_at=datetime(2026, 1, 2, 3, 14, 5, tzinfo=UTC),
    )


def make_credential() -> IssuedCredential:
    return IssuedCredential(
        credential_id="a1b2c3d4e5f6g7h8i9j0",
        username="cb_a1b2c3d4e5f6g7h8i9j0",
        expires_at=datetime(2026, 1, 2, 3, 19, 5, 500000, tzinfo=UTC),
        data={
            "username": "cb_a1b2c3d4e5f6g7h8i9j0",
            "password": PASSWORD,
            "uri": f"postgresql://cb_a1b2c3d4e5f6g7h8i9j0:{PASSWORD}@pg.internal.test/commerce",
        },
    )


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_emit_json_shape(audit_stream: io.StringIO) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    record = AuditRecord(
        action=AuditAction.ISSUE,
        outcome="success",
        reason=Reason.ISSUED,
        binding="shop/orders",
        namespace="shop",
        pod_name="orders-7d9f-abcde",
        pod_uid="0b6f3c1e-1111-4222-8333-944455556666",
        service_account="orders",
        token_jti="jti-42",
        target="orders-pg",
        role="orders_reader",
        credential_id="a1b2c3d4e5f6g7h8i9j0",
        expires_at=datetime(2026, 1, 2, 5, 19, 5, 500000, tzinfo=timezone(timedelta(hours=2))),
    )

    emit(record)

    lines = lines_of(audit_stream)
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert set(entry) == EXPECTED_KEYS
    assert entry["action"] == "issue"
    assert entry["outcome"] == "success"
    assert entry["reason"] == "Issued"
    assert entry["binding"] == "shop/orders"
    assert entry["credential_id"] == "a1b2c3d4e5f6g7h8i9j0"
    assert entry["expires_at"] == "2026-01-02T03:19:05Z"
    assert entry["message"] == ""
    assert entry["time"].endswith("Z")
    logged_at = datetime.fromisoformat(entry["time"])
    assert before <= logged_at <= datetime.now(UTC)


def test_emit_sorted_keys(audit_stream: io.StringIO) -> None:
    emit(AuditRecord(action=AuditAction.SWEEP, outcome="success", reason=Reason.SWEPT))

    line = lines_of(audit_stream)[0]
    keys = list(json.loads(line))
    assert keys == sorted(keys)
    assert line.startswith('{"action": "sweep"')


def test_emit_nulls_for_missing_fields(audit_stream: io.StringIO) -> None:
    emit(AuditRecord(action=AuditAction.SWEEP, outcome="success", reason=Reason.SWEPT))

    entry = json.loads(lines_of(audit_stream)[0])
    assert set(entry) == EXPECTED_KEYS
    assert entry["pod_name"] is None
    assert entry["expires_at"] is None


def test_emit_one_line_per_record(audit_stream: io.StringIO) -> None:
    records = [
        AuditRecord(
            action=AuditAction.REJECT,
            outcome="failure",
            reason=Reason.ROLE_NOT_ALLOWED,
            message="first line\nsecond line",
        ),
        AuditRecord(action=AuditAction.REVOKE, outcome="success", reason=Reason.REVOKED),
        AuditRecord(action=AuditAction.RENEW, outcome="failure", reason=Reason.ISSUE_FAILED),
    ]

    for record in records:
        emit(record)

    lines = lines_of(audit_stream)
    assert len(lines) == 3
    assert [json.loads(line)["action"] for line in lines] == ["reject", "revoke", "renew"]
    assert json.loads(lines[0])["message"] == "first line\nsecond line"


def test_emit_log_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER_NAME):
        emit(AuditRecord(action=AuditAction.SWEEP, outcome="success", reason=Reason.SWEPT))

    assert len(caplog.records) == 1
    log_record = caplog.records[0]
    assert log_record.name == "credbroker.audit"
    assert log_record.levelno == logging.INFO
    assert json.loads(log_record.getMessage())["reason"] == "Swept"


def test_record_from_identity() -> None:
    identity = make_identity()

    record = record_from_identity(
        identity=identity,
        action=AuditAction.ISSUE,
        outcome="success",
        reason=Reason.ISSUED,
        binding="shop/orders",
        role="orders_reader",
    )

    assert record.namespace == "shop"
    assert record.pod_name == "orders-7d9f-abcde"
    assert record.pod_uid == identity.pod_uid
    assert record.service_account == "orders"
    assert record.token_jti == "jti-42"
    assert record.role == "orders_reader"
    assert record.target is None


def test_issue_flow_omits_password(
    audit_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    credential = make_credential()
    secret = render_secret(
        binding_namespace="shop",
        binding_name="orders",
        binding_uid="5d1e2f3a-aaaa-4bbb-8ccc-0123456789ab",
        secret_name="orders-db",
        target_name="orders-pg",
        credential=credential,
        issued_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )

    with caplog.at_level(logging.DEBUG):
        record = record_from_identity(
            identity=make_identity(),
            action=AuditAction.ISSUE,
            outcome="success",
            reason=Reason.ISSUED,
            binding="shop/orders",
            target="orders-pg",
            role="orders_reader",
            credential_id=credential.credential_id,
            expires_at=credential.expires_at,
            message=f"delivered to Secret shop/{secret['metadata']['name']}",
        )
        emit(record)

    output = audit_stream.getvalue()
    assert credential.credential_id in output
    assert PASSWORD not in output
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(record)
    assert PASSWORD not in repr(credential)


def test_reject_flow_omits_password(audit_stream: io.StringIO) -> None:
    credential = make_credential()
    error = PolicyRejected(Reason.ROLE_NOT_ALLOWED, "role orders_admin is not offered")

    emit(
        record_from_identity(
            identity=make_identity(),
            action=AuditAction.REJECT,
            outcome="failure",
            reason=error.reason,
            binding="shop/orders",
            credential_id=credential.credential_id,
            message=error.message,
        )
    )

    entry = json.loads(lines_of(audit_stream)[0])
    assert entry["reason"] == "RoleNotAllowed"
    assert entry["message"] == "role orders_admin is not offered"
    assert PASSWORD not in audit_stream.getvalue()


def test_record_rejects_data_mapping() -> None:
    credential = make_credential()
    wrong: Any = credential.data

    with pytest.raises(TypeError, match="credential_id") as caught:
        AuditRecord(
            action=AuditAction.ISSUE,
            outcome="success",
            reason=Reason.ISSUED,
            credential_id=wrong,
        )

    assert PASSWORD not in str(caught.value)


def test_record_has_no_free_form_field() -> None:
    with pytest.raises(TypeError):
        AuditRecord(  # type: ignore[call-arg]
            action=AuditAction.ISSUE,
            outcome="success",
            reason=Reason.ISSUED,
            data={"password": PASSWORD},
        )


def test_record_rejects_bad_values() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    bad_outcome: Any = "maybe"
    bad_action: Any = "issue"
    bad_reason: Any = "Issued"
    bad_expiry: Any = "2026-01-02T03:04:05Z"

    with pytest.raises(ValueError, match="time zone"):
        AuditRecord(
            action=AuditAction.ISSUE, outcome="success", reason=Reason.ISSUED, expires_at=naive
        )
    with pytest.raises(ValueError, match="maybe"):
        AuditRecord(action=AuditAction.ISSUE, outcome=bad_outcome, reason=Reason.ISSUED)
    with pytest.raises(TypeError, match="AuditAction"):
        AuditRecord(action=bad_action, outcome="success", reason=Reason.ISSUED)
    with pytest.raises(TypeError, match="Reason"):
        AuditRecord(action=AuditAction.ISSUE, outcome="success", reason=bad_reason)
    with pytest.raises(TypeError, match="expires_at"):
        AuditRecord(
            action=AuditAction.ISSUE, outcome="success", reason=Reason.ISSUED, expires_at=bad_expiry
        )


def test_record_is_frozen() -> None:
    record = AuditRecord(action=AuditAction.SWEEP, outcome="success", reason=Reason.SWEPT)

    with pytest.raises(AttributeError):
        record.message = "changed"  # type: ignore[misc]
