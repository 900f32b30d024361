"""revoke_binding: a deleted binding loses every credential it issued, and its Secret."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from credbroker.delivery import CREDENTIAL_ID_ANNOTATION
from credbroker.errors import TargetError
from credbroker.lifecycle.teardown import revoke_binding
from credbroker.reasons import Reason

from .fakes import START, TARGET_NAME, ProcessCrash, World, binding_body, unowned_secret

RENEW_AFTER = timedelta(minutes=10)


@pytest.fixture
def world() -> World:
    return World()


async def teardown(world: World, body: dict[str, Any] | None = None) -> int:
    return await revoke_binding(
        body=body if body is not None else binding_body(),
        kube=world.kube,  # type: ignore[arg-type]
        targets=world.targets,  # type: ignore[arg-type]
        secrets=world.secrets,
    )


def add_other_binding_credential(world: World) -> str:
    credential_id = "otherbinding00000000"
    world.target.add(
        credential_id,
        created_at=START,
        expires_at=START + timedelta(minutes=15),
        binding_name="api-db",
        secret_name="api-db-credentials",
    )
    return credential_id


async def test_teardown_revokes_everything(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    renewed = await world.reconciler.reconcile(binding_body())
    crashed_id = "crashleftover0000000"
    world.target.add(
        crashed_id, created_at=world.clock.now, expires_at=world.clock.now + timedelta(minutes=15)
    )
    other_id = add_other_binding_credential(world)
    own_ids = set(world.target.credentials) - {other_id}
    assert len(own_ids) == 3
    assert renewed.status["credentialId"] in own_ids

    revoked = await teardown(world)

    assert revoked == 3
    assert set(world.target.credentials) == {other_id}
    assert set(world.target.revoked) == own_ids
    assert world.secret() is None
    records = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "credbroker.audit"
    ]
    teardown_records = [record for record in records if record["reason"] == "BindingDeleted"]
    assert {record["credential_id"] for record in teardown_records} == own_ids
    assert {record["action"] for record in teardown_records} == {"revoke"}


async def test_teardown_without_secret(world):
    world.add_pod("web-1")
    world.core.fail["create"] = ProcessCrash()
    with pytest.raises(ProcessCrash):
        await world.reconciler.reconcile(binding_body())
    world.core.fail.clear()

    revoked = await teardown(world)

    assert revoked == 1
    assert world.target.credentials == {}


async def test_teardown_twice(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    await teardown(world)

    revoked_again = await teardown(world)

    assert revoked_again == 0
    assert world.secret() is None


async def test_teardown_missing_target(world, caplog):
    caplog.set_level(logging.WARNING)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    del world.kube.targets[TARGET_NAME]

    revoked = await teardown(world)

    assert revoked == 0
    assert world.secret() is None
    assert world.targets.calls == 1
    assert f"target {TARGET_NAME} not found" in caplog.text


async def test_teardown_target_failure_keeps_secret(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.target.fail_revoke = TargetError(Reason.TARGET_UNAVAILABLE, "connection refused")

    with pytest.raises(TargetError):
        await teardown(world)

    assert world.secret() is not None
    assert len(world.target.credentials) == 1


async def test_teardown_retry_after_failure(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.target.fail_revoke = TargetError(Reason.TARGET_UNAVAILABLE, "connection refused")
    with pytest.raises(TargetError):
        await teardown(world)
    world.target.fail_revoke = None

    revoked = await teardown(world)

    assert revoked == 1
    assert world.target.credentials == {}
    assert world.secret() is None


async def test_teardown_leaves_unowned_secret(world, caplog):
    caplog.set_level(logging.INFO)
    other_id = add_other_binding_credential(world)
    stored = world.core.put(unowned_secret())
    stored["metadata"]["annotations"][CREDENTIAL_ID_ANNOTATION] = other_id

    revoked = await teardown(world)

    assert revoked == 0
    assert other_id in world.target.credentials
    assert world.secret() is not None
    assert "removed" not in caplog.text


async def test_teardown_logs_no_password(world, caplog):
    caplog.set_level(logging.DEBUG)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())

    await teardown(world)

    assert len(world.target.passwords) == 1
    assert world.target.passwords[0] not in caplog.text
