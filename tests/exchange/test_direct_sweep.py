"""The sweeper and direct credentials: marked with a binding and no Secret, dropped only expired."""

from __future__ import annotations

from datetime import timedelta

from credbroker.lifecycle.sweeper import sweep_target
from lifecycle.fakes import START, TARGET_NAME, World

ORPHAN_AGE = timedelta(minutes=2)


async def sweep(world: World, *, minutes: int):
    return await sweep_target(
        target_name=TARGET_NAME,
        target=world.target,
        secrets=world.secrets,
        namespaces=None,
        now=START + timedelta(minutes=minutes),
        orphan_min_age=ORPHAN_AGE,
    )


async def test_direct_credential_kept_until_expiry():
    world = World()
    world.target.add(
        "direct00000000000001",
        created_at=START - timedelta(hours=1),
        expires_at=START + timedelta(minutes=10),
        secret_name="",
    )

    report = await sweep(world, minutes=5)

    assert "direct00000000000001" in world.target.credentials
    assert report.revoked_orphaned == 0

    report = await sweep(world, minutes=10)

    assert world.target.credentials == {}
    assert report.revoked_expired == 1


async def test_unmarked_credential_still_orphaned():
    # No binding in the marker: not a direct credential, so the orphan rule applies.
    world = World()
    world.target.add(
        "unmarked000000000001",
        created_at=START - timedelta(hours=1),
        expires_at=START + timedelta(minutes=10),
        namespace="",
        binding_name="",
        secret_name="",
    )

    report = await sweep(world, minutes=5)

    assert world.target.credentials == {}
    assert report.revoked_orphaned == 1
