"""Prometheus metrics: counters move with the lifecycle, labels stay bounded, no secret leaks."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from credbroker.cli import build_parser, settings_from_args
from credbroker.errors import TargetError
from credbroker.lifecycle.binding import BindingReconciler
from credbroker.lifecycle.sweeper import sweep_target
from credbroker.lifecycle.teardown import revoke_binding
from credbroker.metrics import Metrics, start_metrics_server
from credbroker.pods import PodRegistry
from credbroker.reasons import Reason
from credbroker.settings import DEFAULT_METRICS_ADDRESS, DEFAULT_METRICS_PORT
from lifecycle.fakes import (
    BINDING_NAME,
    BINDING_UID,
    NAMESPACE,
    SECRET_NAME,
    TARGET_NAME,
    World,
    binding_body,
    pod_body,
)

TARGET_TYPE = "postgresql"
RENEW_AFTER = timedelta(minutes=10)
GRACE = timedelta(minutes=2)
ORPHAN_AGE = timedelta(minutes=2)
BOUNDED_LABELS = {"target_type", "reason", "object", "le"}


class FakeMonotonic:
    """A monotonic clock in seconds that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MetricsWorld(World):
    """The lifecycle fakes, with one ``Metrics`` and a fake monotonic clock."""

    def __init__(self) -> None:
        self.monotonic = FakeMonotonic()
        self.metrics = Metrics()
        super().__init__()
        self.pods = PodRegistry(monotonic=self.monotonic)
        # The fake target reports the kind a real PostgreSQL target has.
        self.target.kind = TARGET_TYPE
        self.reconciler = self.new_reconciler()

    def new_reconciler(self) -> BindingReconciler:
        return BindingReconciler(
            settings=self.settings,
            kube=self.kube,  # type: ignore[arg-type]
            pods=self.pods,
            attestor=self.attestor,  # type: ignore[arg-type]
            targets=self.targets,  # type: ignore[arg-type]
            secrets=self.secrets,
            recorder=self.recorder,
            clock=self.clock,
            metrics=self.metrics,
            monotonic=self.monotonic,
        )

    def value(self, name: str, **labels: str) -> float:
        sample = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if sample is None else sample

    def counted(self, name: str, reason: Reason) -> float:
        return self.value(name, target_type=TARGET_TYPE, reason=reason.value)

    def exposition(self) -> str:
        return generate_latest(self.metrics.registry).decode("utf-8")


@pytest.fixture
def world() -> MetricsWorld:
    return MetricsWorld()


async def issue(world: MetricsWorld) -> None:
    world.add_pod("web-1")
    await world.reconciler.reconcile(binding_body())


# Issue, renew, revoke


async def test_issue_counted(world):
    await world.reconciler.reconcile(binding_body())
    world.monotonic.now += 5.0
    world.add_pod("web-1")
    world.monotonic.now += 0.25

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_issued_total", Reason.ISSUED) == 1
    assert world.counted("credbroker_credentials_renewed_total", Reason.RENEWED) == 0
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 1
    assert world.value("credbroker_issuance_latency_seconds_count") == 1
    assert world.value("credbroker_issuance_latency_seconds_sum") == pytest.approx(0.25)
    assert world.value("credbroker_issuance_latency_seconds_bucket", le="0.25") == 1
    assert world.value("credbroker_issuance_latency_seconds_bucket", le="0.1") == 0


async def test_quiet_pass_counts_nothing(world):
    await issue(world)
    world.clock.advance(minutes=1)

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_issued_total", Reason.ISSUED) == 1
    assert world.value("credbroker_issuance_latency_seconds_count") == 1
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 1


async def test_latency_starts_at_binding(world):
    world.add_pod("web-1")
    world.monotonic.now += 3600.0  # the pod ran an hour before its binding existed
    await world.reconciler.reconcile(binding_body(app="other"))
    world.monotonic.now += 2.0

    await world.reconciler.reconcile(binding_body())

    assert world.value("credbroker_issuance_latency_seconds_sum") == pytest.approx(2.0)


async def test_renew_counted(world):
    await issue(world)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_renewed_total", Reason.RENEWED) == 1
    assert world.counted("credbroker_credentials_issued_total", Reason.ISSUED) == 1
    assert world.value("credbroker_issuance_latency_seconds_count") == 1
    assert world.counted("credbroker_credentials_revoked_total", Reason.RENEWED) == 0

    world.clock.advance(seconds=GRACE.total_seconds())
    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_revoked_total", Reason.RENEWED) == 1
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 1


async def test_revoke_without_pods_counted(world):
    await issue(world)
    world.remove_pod("web-1")
    await world.reconciler.reconcile(binding_body())
    world.clock.advance(seconds=GRACE.total_seconds())

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_revoked_total", Reason.NO_VERIFIED_PODS) == 1
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 0


async def test_teardown_revoke_counted(world):
    await issue(world)

    await revoke_binding(
        body=binding_body(),
        kube=world.kube,  # type: ignore[arg-type]
        targets=world.targets,  # type: ignore[arg-type]
        secrets=world.secrets,
        metrics=world.metrics,
    )
    world.reconciler.forget(f"{NAMESPACE}/{BINDING_NAME}")

    assert world.counted("credbroker_credentials_revoked_total", Reason.BINDING_DELETED) == 1
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 0


async def test_active_counts_bindings(world):
    world.add_pod("web-1")
    world.add_pod("api-1", app="api")
    await world.reconciler.reconcile(binding_body())
    await world.reconciler.reconcile(
        binding_body(name="api-db", uid="uid-api-db", secret_name="api-db-credentials", app="api")
    )

    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 2

    world.reconciler.forget(f"{NAMESPACE}/api-db")

    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 1


# Rejections and failures


async def test_identity_failure_counted(world):
    world.add_pod("web-1")
    world.attestor.reject("web-1", Reason.SIGNATURE_INVALID, "signature does not verify")

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_credentials_rejected_total", Reason.SIGNATURE_INVALID) == 1
    failures = world.value(
        "credbroker_identity_verification_failures_total", reason=Reason.SIGNATURE_INVALID.value
    )
    assert failures == 1
    assert world.counted("credbroker_credentials_issued_total", Reason.ISSUED) == 0
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 0


async def test_pod_policy_rejection_counted(world):
    world.pods.observe(event_type="ADDED", pod=pod_body("web-1", service_account="intruder"))

    await world.reconciler.reconcile(binding_body())

    rejected = world.counted(
        "credbroker_credentials_rejected_total", Reason.SERVICE_ACCOUNT_NOT_ALLOWED
    )
    assert rejected == 1
    identity_failures = world.value(
        "credbroker_identity_verification_failures_total",
        reason=Reason.SERVICE_ACCOUNT_NOT_ALLOWED.value,
    )
    assert identity_failures == 0


async def test_target_refusal_counted(world):
    world.add_pod("web-1")

    await world.reconciler.reconcile(binding_body(role="superuser"))

    assert world.counted("credbroker_credentials_rejected_total", Reason.ROLE_NOT_ALLOWED) == 1
    assert world.counted("credbroker_reconcile_failures_total", Reason.ROLE_NOT_ALLOWED) == 1


async def test_missing_target_labelled_unknown(world):
    world.add_pod("web-1")

    await world.reconciler.reconcile(binding_body(target="absent"))

    rejected = world.value(
        "credbroker_credentials_rejected_total",
        target_type="unknown",
        reason=Reason.TARGET_NOT_FOUND.value,
    )
    assert rejected == 1


async def test_issue_failure_counted(world):
    world.add_pod("web-1")
    world.target.fail_issue = TargetError(Reason.TARGET_UNAVAILABLE, "connection refused")

    await world.reconciler.reconcile(binding_body())

    assert world.counted("credbroker_reconcile_failures_total", Reason.TARGET_UNAVAILABLE) == 1
    assert world.counted("credbroker_credentials_rejected_total", Reason.TARGET_UNAVAILABLE) == 0
    assert world.counted("credbroker_credentials_issued_total", Reason.ISSUED) == 0


# Sweep


async def test_sweep_counted(world):
    await issue(world)
    world.target.add(
        "orphan00000000000000",
        created_at=world.clock.now - timedelta(hours=1),
        expires_at=world.clock.now + timedelta(minutes=30),
        binding_name="gone",
    )
    expiry = world.clock.advance(minutes=16)

    await sweep_target(
        target_name=TARGET_NAME,
        target=world.target,
        secrets=world.secrets,
        namespaces=None,
        now=expiry,
        orphan_min_age=ORPHAN_AGE,
        metrics=world.metrics,
    )

    def swept(reason: Reason, kind: str) -> float:
        return world.value(
            "credbroker_swept_total", target_type=TARGET_TYPE, reason=reason.value, object=kind
        )

    assert swept(Reason.EXPIRED, "credential") == 1
    assert swept(Reason.ORPHANED, "credential") == 1
    assert swept(Reason.EXPIRED, "secret") == 1
    assert world.value("credbroker_sweep_duration_seconds_count", target_type=TARGET_TYPE) == 1


# JWKS


class JWKSCounts:
    def __init__(self) -> None:
        self.fetch_count = 0
        self.fetch_failure_count = 0


def test_jwks_counters_read_at_scrape():
    metrics = Metrics()
    jwks = JWKSCounts()
    metrics.watch_jwks(jwks)
    jwks.fetch_count = 3
    jwks.fetch_failure_count = 1

    assert metrics.registry.get_sample_value("credbroker_jwks_fetches_total") == 3
    assert metrics.registry.get_sample_value("credbroker_jwks_fetch_failures_total") == 1


# Bounded labels and secrecy


async def test_labels_bounded(world):
    for index in range(20):
        app = f"app{index}"
        world.add_pod(f"{app}-pod", app=app)
        await world.reconciler.reconcile(
            binding_body(
                name=f"{app}-db", uid=f"uid-{app}", secret_name=f"{app}-credentials", app=app
            )
        )
    world.attestor.reject("bad-pod", Reason.POD_MISMATCH, "token is bound to another pod uid")
    world.add_pod("bad-pod")
    await world.reconciler.reconcile(binding_body())
    assert world.value("credbroker_active_credentials", target_type=TARGET_TYPE) == 20

    text = world.exposition()
    reasons = {reason.value for reason in Reason}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS, sample
            if "target_type" in sample.labels:
                assert sample.labels["target_type"] in {TARGET_TYPE, "unknown"}, sample
            if "reason" in sample.labels:
                assert sample.labels["reason"] in reasons, sample
    issued = world.counted("credbroker_credentials_issued_total", Reason.ISSUED)
    assert issued == 20
    for leaked in ("app3", "bad-pod", BINDING_UID, *world.target.credentials):
        assert leaked not in text


async def test_exposition_has_no_secret(world):
    await issue(world)
    world.clock.advance(seconds=RENEW_AFTER.total_seconds())
    await world.reconciler.reconcile(binding_body())

    text = world.exposition()

    assert len(world.target.passwords) == 2
    for password in world.target.passwords:
        assert password not in text
    assert world.secret_data(SECRET_NAME)["password"] not in text
    assert "credbroker_credentials_renewed_total" in text


# Wiring


def test_pod_first_seen_forgotten():
    clock = FakeMonotonic()
    pods = PodRegistry(monotonic=clock)
    pods.observe(event_type="ADDED", pod=pod_body("web-1"))
    clock.now += 5.0
    pods.observe(event_type="MODIFIED", pod=pod_body("web-1", app="relabelled"))

    assert pods.first_seen(f"uid-{NAMESPACE}-web-1") == 1000.0

    pods.observe(event_type="DELETED", pod=pod_body("web-1"))

    assert pods.first_seen(f"uid-{NAMESPACE}-web-1") is None


def test_cli_metrics_port():
    parser = build_parser()

    default = settings_from_args(parser.parse_args(["run"]))
    chosen = settings_from_args(parser.parse_args(["run", "--metrics-port", "9300"]))
    disabled = settings_from_args(parser.parse_args(["run", "--metrics-port", "0"]))

    assert default.metrics_port == DEFAULT_METRICS_PORT
    assert default.metrics_address == DEFAULT_METRICS_ADDRESS
    assert chosen.metrics_port == 9300
    assert disabled.metrics_port is None


def test_cli_rejects_bad_port():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--metrics-port", "65536"])


def test_server_serves_registry():
    metrics = Metrics()
    metrics.credential_issued(target_type=TARGET_TYPE)
    server = start_metrics_server(port=0, registry=metrics.registry, address="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode("utf-8")
    finally:
        server.close()

    assert 'credbroker_credentials_issued_total{reason="Issued",target_type="postgresql"} 1.0' in (
        text
    )
    assert "python_gc_objects_collected_total" not in text
