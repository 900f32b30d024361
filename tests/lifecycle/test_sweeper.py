"""sweep_target: expired and orphaned credentials, expired Secrets, and the cost of a sweep."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from credbroker.delivery import LIST_PAGE_SIZE_ITEMS, PreviousCredential, render_secret
from credbroker.errors import TargetError
from credbroker.lifecycle.sweeper import SweepReport, sweep_target
from credbroker.reasons import Reason
from credbroker.targets.base import IssuedCredential

from .fakes import (
    BINDING_NAME,
    BINDING_UID,
    NAMESPACE,
    SECRET_NAME,
    START,
    TARGET_NAME,
    ProcessCrash,
    World,
    binding_body,
)

TTL = timedelta(minutes=15)
RENEW_AFTER = timedelta(minutes=10)
GRACE = timedelta(minutes=2)
ORPHAN_AGE = timedelta(minutes=2)


@pytest.fixture
def world() -> World:
    return World()


async def sweep(world: World, *, now: datetime, namespaces: list[str] | None = None) -> SweepReport:
    return await sweep_target(
        target_name=TARGET_NAME,
        target=world.target,
        secrets=world.secrets,
        namespaces=namespaces,
        now=now,
        orphan_min_age=ORPHAN_AGE,
    )


def put_managed_secret(
    world: World,
    *,
    credential_id: str,
    expires_at: datetime,
    issued_at: datetime,
    namespace: str = NAMESPACE,
    name: str = SECRET_NAME,
    binding_name: str = BINDING_NAME,
    binding_uid: str = BINDING_UID,
    target_name: str = TARGET_NAME,
    previous: PreviousCredential | None = None,
) -> dict[str, Any]:
    """Store a Secret as an earlier credbroker process would have written it."""
    credential = IssuedCredential(
        credential_id=credential_id,
        username=f"cb_{credential_id}",
        expires_at=expires_at,
        data={"username": f"cb_{credential_id}", "password": "not-a-real-password"},
    )
    body = render_secret(
        binding_namespace=namespace,
        binding_name=binding_name,
        binding_uid=binding_uid,
        secret_name=name,
        target_name=target_name,
        credential=credential,
        issued_at=issued_at,
        previous=previous,
    )
    return world.core.put(body)


def sweep_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    records = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "credbroker.audit"
    ]
    return [record for record in records if record["action"] == "sweep"]


# Live credentials stay


async def test_referenced_credential_kept(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())

    report = await sweep(world, now=START + timedelta(minutes=5))

    assert len(world.target.credentials) == 1
    assert world.secret() is not None
    assert report.revoked_expired == 0
    assert report.revoked_orphaned == 0
    assert report.credentials_seen == 1
    assert report.secrets_seen == 1


# Crash between issuing and writing the Secret


async def test_crash_before_secret_write(world, caplog):
    caplog.set_level(logging.INFO)
    world.add_pod("web-1")
    world.core.fail["create"] = ProcessCrash()
    with pytest.raises(ProcessCrash):
        await world.reconciler.reconcile(binding_body())
    assert world.secret() is None
    [credential_id] = list(world.target.credentials)

    early = await sweep(world, now=START + ORPHAN_AGE - timedelta(seconds=1))
    kept_while_young = credential_id in world.target.credentials
    late = await sweep(world, now=START + ORPHAN_AGE)

    assert kept_while_young
    assert early.revoked_orphaned == 0
    assert credential_id not in world.target.credentials
    assert late.revoked_orphaned == 1
    assert late.revoked_expired == 0
    records = sweep_records(caplog)
    assert len(records) == 1
    assert records[0]["reason"] == "Orphaned"
    assert records[0]["credential_id"] == credential_id
    assert records[0]["binding"] == f"{NAMESPACE}/{BINDING_NAME}"


async def test_failed_write_and_revoke_swept(world):
    # The Secret write failed and the immediate revocation of the new
    # credential failed too, so only the sweeper can remove it.
    world.add_pod("web-1")
    world.core.fail["create"] = ApiException(status=500, reason="Internal Server Error")
    world.target.fail_revoke = TargetError(Reason.TARGET_UNAVAILABLE, "connection refused")
    await world.reconciler.reconcile(binding_body())
    world.target.fail_revoke = None
    [credential_id] = list(world.target.credentials)

    await sweep(world, now=START + ORPHAN_AGE - timedelta(seconds=1))
    kept_while_young = credential_id in world.target.credentials
    report = await sweep(world, now=START + ORPHAN_AGE)

    assert kept_while_young
    assert world.target.credentials == {}
    assert report.revoked_orphaned == 1


async def test_unreferenced_old_credential_revoked(world):
    world.target.add(
        "orphan0000000000000a",
        created_at=START - timedelta(hours=1),
        expires_at=START + timedelta(minutes=5),
    )

    report = await sweep(world, now=START)

    assert world.target.credentials == {}
    assert report.revoked_orphaned == 1


async def test_credential_without_creation_time_revoked(world):
    # A target that cannot tell when a credential was made leaves the age
    # unknown, and an unreferenced credential of unknown age is an orphan.
    world.target.add(
        "orphan0000000000000b",
        created_at=START,
        expires_at=START + timedelta(minutes=5),
    )
    world.target.credentials["orphan0000000000000b"].created_at = None  # type: ignore[assignment]

    report = await sweep(world, now=START)

    assert world.target.credentials == {}
    assert report.revoked_orphaned == 1


# Crash after a renewal wrote the Secret and before the old credential was revoked


async def test_sweeper_revokes_replaced_after_revoke_time(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    [old_id] = list(world.target.credentials)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    renewed = await world.reconciler.reconcile(binding_body())
    new_id = renewed.status["credentialId"]
    revoke_at = world.clock.now + GRACE

    early = await sweep(world, now=revoke_at - timedelta(seconds=1))
    kept_before_revoke_time = old_id in world.target.credentials
    late = await sweep(world, now=revoke_at)

    assert kept_before_revoke_time
    assert early.revoked_orphaned == 0
    assert old_id not in world.target.credentials
    assert new_id in world.target.credentials
    assert late.revoked_orphaned == 1
    assert world.secret() is not None


# Expiry


async def test_expired_credential_swept(world, caplog):
    caplog.set_level(logging.INFO)
    world.target.add(
        "expired0000000000000",
        created_at=START - timedelta(minutes=20),
        expires_at=START - timedelta(seconds=1),
    )
    world.target.add(
        "young000000000000000",
        created_at=START - timedelta(seconds=10),
        expires_at=START - timedelta(seconds=1),
    )

    report = await sweep(world, now=START)

    assert world.target.credentials == {}
    assert report.revoked_expired == 2
    assert report.revoked_orphaned == 0
    assert {record["reason"] for record in sweep_records(caplog)} == {"Expired"}


async def test_expired_referenced_credential_swept(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.remove_pod("web-1")

    report = await sweep(world, now=START + TTL)

    assert world.target.credentials == {}
    assert world.secret() is None
    assert report.revoked_expired == 1
    assert report.secrets_deleted == 1


async def test_expired_secret_deleted(world, caplog):
    caplog.set_level(logging.INFO)
    put_managed_secret(
        world,
        credential_id="gone0000000000000000",
        issued_at=START - TTL,
        expires_at=START - timedelta(seconds=1),
    )

    report = await sweep(world, now=START)

    assert world.secret() is None
    assert report.secrets_deleted == 1
    records = sweep_records(caplog)
    assert len(records) == 1
    assert records[0]["reason"] == "Expired"
    assert records[0]["credential_id"] == "gone0000000000000000"


async def test_unexpired_secret_kept(world):
    put_managed_secret(
        world,
        credential_id="live0000000000000000",
        issued_at=START,
        expires_at=START + TTL,
    )

    report = await sweep(world, now=START + TTL - timedelta(seconds=1))

    assert world.secret() is not None
    assert report.secrets_deleted == 0


async def test_secret_of_other_target_ignored(world):
    put_managed_secret(
        world,
        credential_id="other000000000000000",
        issued_at=START - TTL,
        expires_at=START - timedelta(seconds=1),
        target_name="pg-other",
    )

    report = await sweep(world, now=START)

    assert world.secret() is not None
    assert report.secrets_seen == 0
    assert report.secrets_deleted == 0


async def test_unmanaged_secret_ignored(world):
    body = {
        "metadata": {
            "namespace": NAMESPACE,
            "name": "hand-made",
            "annotations": {
                "credbroker.dev/target": TARGET_NAME,
                "credbroker.dev/expires-at": "2020-01-01T00:00:00Z",
            },
        },
        "data": {},
    }
    world.core.put(body)

    report = await sweep(world, now=START)

    assert world.secret("hand-made") is not None
    assert report.secrets_seen == 0


async def test_expired_secret_without_owner(world):
    # A Secret carries the managed-by label and the annotations but no
    # controller ownerReference, for example after a manual copy. The sweep
    # must still drop the expired credentials on the target.
    put_managed_secret(
        world,
        credential_id="copy0000000000000000",
        issued_at=START - TTL,
        expires_at=START - timedelta(seconds=1),
        name="copied",
    )
    del world.core.secrets[(NAMESPACE, "copied")]["metadata"]["ownerReferences"]
    world.target.add(
        "expired0000000000000",
        created_at=START - TTL,
        expires_at=START - timedelta(seconds=1),
    )

    report = await sweep(world, now=START)

    assert world.target.credentials == {}
    assert report.revoked_expired == 1
    assert world.secret("copied") is not None


# Scope of a sweep


async def test_sweep_reads_only_given_namespaces(world):
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.core.calls.clear()

    await sweep(world, now=START, namespaces=[NAMESPACE, "other"])

    assert world.core.calls["list"] == 2


async def test_namespaced_sweep_keeps_other_namespaces(world):
    # An operator that watches only "apps" cannot see the Secrets of "other",
    # so it must not judge the credentials of bindings there.
    world.target.add(
        "othernamespace000000",
        created_at=START - timedelta(hours=1),
        expires_at=START + TTL,
        namespace="other",
        binding_name="other-db",
        secret_name="other-credentials",
    )
    put_managed_secret(
        world,
        credential_id="othernamespace000000",
        issued_at=START - timedelta(minutes=5),
        expires_at=START + TTL,
        namespace="other",
        name="other-credentials",
        binding_name="other-db",
        binding_uid="uid-other-db",
    )

    report = await sweep(world, now=START, namespaces=[NAMESPACE])

    assert "othernamespace000000" in world.target.credentials
    assert report.revoked_orphaned == 0


# Cost of a sweep


def populate(world: World, *, live: int, expired: int) -> None:
    """Put ``live`` referenced credentials and ``expired`` expired ones, each with its Secret."""
    for index in range(live):
        credential_id = f"live{index:016d}"
        world.target.add(
            credential_id,
            created_at=START - timedelta(minutes=5),
            expires_at=START + TTL,
            binding_name=f"live-{index}",
            secret_name=f"live-{index}",
        )
        put_managed_secret(
            world,
            credential_id=credential_id,
            issued_at=START - timedelta(minutes=5),
            expires_at=START + TTL,
            name=f"live-{index}",
            binding_name=f"live-{index}",
            binding_uid=f"uid-live-{index}",
        )
    for index in range(expired):
        credential_id = f"expired{index:013d}"
        world.target.add(
            credential_id,
            created_at=START - TTL - timedelta(minutes=1),
            expires_at=START - timedelta(minutes=1),
            binding_name=f"expired-{index}",
            secret_name=f"expired-{index}",
        )
        put_managed_secret(
            world,
            credential_id=credential_id,
            issued_at=START - TTL - timedelta(minutes=1),
            expires_at=START - timedelta(minutes=1),
            name=f"expired-{index}",
            binding_name=f"expired-{index}",
            binding_uid=f"uid-expired-{index}",
        )
    world.core.calls.clear()


@pytest.mark.parametrize("live", [10, 1000])
async def test_sweep_cost_follows_expired(live):
    world = World()
    expired = 10
    populate(world, live=live, expired=expired)

    report = await sweep(world, now=START)

    pages = math.ceil((live + expired) / LIST_PAGE_SIZE_ITEMS)
    assert len(world.target.credentials) == live
    assert report.revoked_expired == expired
    assert report.secrets_deleted == expired
    assert world.target.calls["list_credentials"] == 1
    assert world.target.calls["revoke"] == expired
    assert world.target.calls["issue"] == 0
    assert report.target_calls == 1 + expired
    assert world.core.calls["list"] == pages
    assert world.core.calls["delete"] == expired
    assert world.core.calls["read"] == expired
    assert world.core.calls["create"] == 0
    assert world.core.calls["replace"] == 0


async def test_report_counts_api_calls(world):
    populate(world, live=LIST_PAGE_SIZE_ITEMS, expired=3)

    report = await sweep(world, now=START)

    assert report.api_calls == sum(world.core.calls.values())


async def test_sweep_logs_no_password(world, caplog):
    caplog.set_level(logging.DEBUG)
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.core.fail["create"] = ProcessCrash()
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    with pytest.raises(ProcessCrash):
        await world.reconciler.reconcile(binding_body())

    await sweep(world, now=START + TTL)

    assert len(world.target.passwords) == 2
    for password in world.target.passwords:
        assert password not in caplog.text
