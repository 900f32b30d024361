"""PodRegistry: which live pods a binding selects, and which bindings a pod event wakes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from credbroker.pods import PodRegistry, PodSummary, is_pod_live


def make_pod(
    name: str,
    *,
    namespace: str = "apps",
    uid: str | None = None,
    labels: Mapping[str, str] | None = None,
    service_account: str | None = "web",
    node_name: str | None = "node-1",
    phase: str = "Running",
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "uid": uid if uid is not None else f"uid-{namespace}-{name}",
        "labels": dict(labels if labels is not None else {"app": "web"}),
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-02T03:04:05Z"
    spec: dict[str, Any] = {}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    if node_name is not None:
        spec["nodeName"] = node_name
    return {"metadata": metadata, "spec": spec, "status": {"phase": phase}}


def app_is(value: str):
    return lambda labels: labels.get("app") == value


def names(pods: list[PodSummary]) -> list[str]:
    return [pod.name for pod in pods]


# PodSummary and is_pod_live


def test_summary_reads_fields():
    summary = PodSummary.from_pod(make_pod("a", labels={"app": "web", "tier": "1"}))

    assert summary.namespace == "apps"
    assert summary.name == "a"
    assert summary.uid == "uid-apps-a"
    assert summary.service_account == "web"
    assert summary.node_name == "node-1"
    assert summary.labels == {"app": "web", "tier": "1"}
    assert summary.ref == "apps/a"


def test_summary_defaults_service_account():
    summary = PodSummary.from_pod(make_pod("a", service_account=None, node_name=None))

    assert summary.service_account == "default"
    assert summary.node_name is None


def test_summary_of_empty_object():
    summary = PodSummary.from_pod({})

    assert summary.uid == ""
    assert summary.labels == {}


def test_live_running_pod():
    assert is_pod_live(make_pod("a"))


def test_live_pending_pod():
    assert is_pod_live(make_pod("a", phase="Pending"))


def test_live_finished_pods():
    assert not is_pod_live(make_pod("a", phase="Succeeded"))
    assert not is_pod_live(make_pod("a", phase="Failed"))


def test_live_terminating_pod():
    assert not is_pod_live(make_pod("a", deleting=True))


# Selection


def test_selected_filters_and_sorts():
    registry = PodRegistry()
    for name in ("c", "a", "b"):
        registry.observe(event_type="ADDED", pod=make_pod(name))
    registry.observe(event_type="ADDED", pod=make_pod("z", labels={"app": "db"}))
    registry.observe(event_type="ADDED", pod=make_pod("y", namespace="other"))

    assert names(registry.selected(namespace="apps", matches=app_is("web"))) == ["a", "b", "c"]
    assert names(registry.selected(namespace="apps", matches=app_is("db"))) == ["z"]
    assert names(registry.selected(namespace="other", matches=app_is("web"))) == ["y"]
    assert registry.selected(namespace="absent", matches=app_is("web")) == []
    assert len(registry) == 5


def test_selected_uses_current_labels():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.observe(event_type="MODIFIED", pod=make_pod("a", labels={"app": "db"}))

    assert registry.selected(namespace="apps", matches=app_is("web")) == []
    assert names(registry.selected(namespace="apps", matches=app_is("db"))) == ["a"]
    assert len(registry) == 1


def test_observe_ignores_pod_without_uid():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a", uid=""))

    assert len(registry) == 0


def test_pods_with_same_name_kept_by_uid():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a", uid="first"))
    registry.observe(event_type="ADDED", pod=make_pod("a", uid="second"))

    uids = sorted(pod.uid for pod in registry.selected(namespace="apps", matches=app_is("web")))
    assert uids == ["first", "second"]


# Pods that go away


def test_deleted_pod_disappears():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.observe(event_type="DELETED", pod=make_pod("a"))

    assert registry.selected(namespace="apps", matches=app_is("web")) == []
    assert len(registry) == 0


def test_finished_pod_disappears():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.observe(event_type="ADDED", pod=make_pod("b"))
    registry.observe(event_type="MODIFIED", pod=make_pod("a", phase="Succeeded"))
    registry.observe(event_type="MODIFIED", pod=make_pod("b", phase="Failed"))

    assert registry.selected(namespace="apps", matches=app_is("web")) == []
    assert len(registry) == 0


def test_terminating_pod_disappears():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.observe(event_type="MODIFIED", pod=make_pod("a", deleting=True))

    assert registry.selected(namespace="apps", matches=app_is("web")) == []


def test_finished_pod_never_added():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a", phase="Succeeded"))
    registry.observe(event_type=None, pod=make_pod("b", deleting=True))

    assert len(registry) == 0


def test_deleting_one_pod_keeps_others():
    registry = PodRegistry()
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.observe(event_type="ADDED", pod=make_pod("b"))
    registry.observe(event_type="DELETED", pod=make_pod("a"))

    assert names(registry.selected(namespace="apps", matches=app_is("web"))) == ["b"]


# Subscriptions and wake-ups


def test_new_pod_wakes_matching_subscriber():
    registry = PodRegistry()
    web = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    database = registry.subscribe(key="apps/db", namespace="apps", matches=app_is("db"))
    elsewhere = registry.subscribe(key="other/web", namespace="other", matches=app_is("web"))

    registry.observe(event_type="ADDED", pod=make_pod("a"))

    assert web.is_set()
    assert not database.is_set()
    assert not elsewhere.is_set()


def test_unchanged_pod_does_not_wake():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    wake.clear()

    registry.observe(event_type="MODIFIED", pod=make_pod("a"))

    assert not wake.is_set()


def test_changed_service_account_wakes():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    wake.clear()

    registry.observe(event_type="MODIFIED", pod=make_pod("a", service_account="other"))

    assert wake.is_set()


def test_label_change_wakes_old_and_new():
    registry = PodRegistry()
    web = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    database = registry.subscribe(key="apps/db", namespace="apps", matches=app_is("db"))
    cache = registry.subscribe(key="apps/cache", namespace="apps", matches=app_is("cache"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    web.clear()

    registry.observe(event_type="MODIFIED", pod=make_pod("a", labels={"app": "db"}))

    assert web.is_set()
    assert database.is_set()
    assert not cache.is_set()


def test_deletion_wakes_subscriber():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    wake.clear()

    registry.observe(event_type="DELETED", pod=make_pod("a"))

    assert wake.is_set()


def test_deletion_wakes_by_stored_labels():
    # The DELETED object may carry other labels than the last one seen. The
    # binding that selected the pod must still be woken.
    registry = PodRegistry()
    web = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    web.clear()

    registry.observe(event_type="DELETED", pod=make_pod("a", labels={"app": "db"}))

    assert web.is_set()


def test_finishing_pod_wakes_subscriber():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.observe(event_type="ADDED", pod=make_pod("a"))
    wake.clear()

    registry.observe(event_type="MODIFIED", pod=make_pod("a", phase="Succeeded"))

    assert wake.is_set()


def test_unknown_deletion_does_not_wake():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))

    registry.observe(event_type="DELETED", pod=make_pod("a"))

    assert not wake.is_set()


def test_subscribe_again_returns_same_event():
    registry = PodRegistry()
    first = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    second = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("db"))

    assert first is second


def test_subscribe_again_updates_selector():
    registry = PodRegistry()
    registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("db"))

    registry.observe(event_type="ADDED", pod=make_pod("a", labels={"app": "web"}))
    woken_by_old_selector = wake.is_set()
    registry.observe(event_type="ADDED", pod=make_pod("b", labels={"app": "db"}))

    assert not woken_by_old_selector
    assert wake.is_set()


def test_subscribe_again_updates_namespace():
    registry = PodRegistry()
    registry.subscribe(key="web", namespace="apps", matches=app_is("web"))
    wake = registry.subscribe(key="web", namespace="other", matches=app_is("web"))

    registry.observe(event_type="ADDED", pod=make_pod("a", namespace="apps"))
    woken_by_old_namespace = wake.is_set()
    registry.observe(event_type="ADDED", pod=make_pod("b", namespace="other"))

    assert not woken_by_old_namespace
    assert wake.is_set()


def test_unsubscribed_is_not_woken():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.unsubscribe("apps/web")

    registry.observe(event_type="ADDED", pod=make_pod("a"))
    registry.wake("apps/web")

    assert not wake.is_set()


def test_unsubscribe_unknown_key():
    registry = PodRegistry()
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))
    registry.unsubscribe("apps/absent")

    registry.observe(event_type="ADDED", pod=make_pod("a"))

    assert wake.is_set()


def test_wake_one_subscriber():
    registry = PodRegistry()
    first = registry.subscribe(key="apps/first", namespace="apps", matches=app_is("web"))
    second = registry.subscribe(key="apps/second", namespace="apps", matches=app_is("web"))

    registry.wake("apps/first")
    registry.wake("apps/absent")

    assert first.is_set()
    assert not second.is_set()


def test_wake_all_subscribers():
    registry = PodRegistry()
    events = [
        registry.subscribe(key=f"apps/{index}", namespace="apps", matches=app_is("web"))
        for index in range(3)
    ]

    registry.wake_all()

    assert all(event.is_set() for event in events)


def test_wake_all_named_keys():
    registry = PodRegistry()
    first = registry.subscribe(key="apps/first", namespace="apps", matches=app_is("web"))
    second = registry.subscribe(key="apps/second", namespace="apps", matches=app_is("web"))

    registry.wake_all(["apps/second", "apps/absent"])

    assert not first.is_set()
    assert second.is_set()


def test_failing_selector_does_not_block_others(caplog):
    def broken(labels: Mapping[str, str]) -> bool:
        raise RuntimeError("selector failed")

    registry = PodRegistry()
    registry.subscribe(key="apps/broken", namespace="apps", matches=broken)
    wake = registry.subscribe(key="apps/web", namespace="apps", matches=app_is("web"))

    with caplog.at_level(logging.ERROR, logger="credbroker.pods"):
        registry.observe(event_type="ADDED", pod=make_pod("a"))

    assert wake.is_set()
    assert len(registry) == 1
    assert "Label selector of a binding in namespace apps failed" in caplog.text


def test_resync_removes_unlisted_pods():
    registry = PodRegistry()
    kept = {"metadata": {"namespace": "shop", "name": "kept", "uid": "u1", "labels": {"app": "a"}}}
    gone = {"metadata": {"namespace": "shop", "name": "gone", "uid": "u2", "labels": {"app": "a"}}}
    other = {"metadata": {"namespace": "other", "name": "x", "uid": "u3", "labels": {"app": "a"}}}
    for pod in (kept, gone, other):
        registry.observe(event_type="ADDED", pod=pod)
    wake = registry.subscribe(key="shop/b", namespace="shop", matches=lambda labels: True)
    wake.clear()

    registry.resync(pods=[kept], namespace="shop")

    assert [pod.name for pod in registry.selected(namespace="shop", matches=lambda _: True)] == [
        "kept"
    ]
    assert [pod.name for pod in registry.selected(namespace="other", matches=lambda _: True)] == [
        "x"
    ]
    assert wake.is_set()


def test_resync_all_namespaces_adds_new_pods():
    registry = PodRegistry()
    old = {"metadata": {"namespace": "a", "name": "old", "uid": "u1"}}
    new = {"metadata": {"namespace": "b", "name": "new", "uid": "u2"}}
    registry.observe(event_type="ADDED", pod=old)

    registry.resync(pods=[new], namespace=None)

    assert registry.selected(namespace="a", matches=lambda _: True) == []
    assert [pod.name for pod in registry.selected(namespace="b", matches=lambda _: True)] == ["new"]


def test_slim_pod_keeps_registry_fields():
    from credbroker.podwatch import slim_pod

    pod = {
        "metadata": {
            "namespace": "shop",
            "name": "orders-0",
            "uid": "u1",
            "labels": {"app": "orders"},
            "annotations": {"big": "x" * 1000},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"serviceAccountName": "orders", "nodeName": "n1", "containers": [{}]},
        "status": {"phase": "Running", "conditions": [{}]},
    }

    slim = slim_pod(pod)

    assert PodSummary.from_pod(slim) == PodSummary.from_pod(pod)
    assert is_pod_live(slim) == is_pod_live(pod)
    assert "annotations" not in slim["metadata"]
    assert "containers" not in slim["spec"]
