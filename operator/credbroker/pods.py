"""The operator's view of live pods, kept from watch events and matched against bindings.

Only the few fields credbroker needs are kept (no spec, no status body), so
memory grows by a small record per pod. Bindings subscribe with their
namespace and selector and are woken when a matching pod appears, changes
or goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSummary:
    """The parts of a Pod that identity and selection need."""

    namespace: str
    name: str
    uid: str
    service_account: str
    node_name: str | None
    labels: Mapping[str, str]

    @property
    def ref(self) -> str:
        """The pod as ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodSummary:
        """Summarise a Pod object given as a dict, as watch events carry it."""
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            service_account=str(spec.get("serviceAccountName") or "default"),
            node_name=spec.get("nodeName") or None,
            labels=dict(metadata.get("labels") or {}),
        )


def is_pod_live(pod: Mapping[str, Any]) -> bool:
    """Tell whether a pod may still hold a credential: not terminating and not finished."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return False
    return status.get("phase") not in _FINISHED_PHASES


Matcher = Callable[[Mapping[str, str]], bool]


@dataclass(slots=True)
class _Subscription:
    namespace: str
    matches: Matcher
    wake: asyncio.Event


class PodRegistry:
    """Live pods by namespace and uid, with wake-ups for the bindings that select them.

    It also stores when each live pod was first observed, read from
    ``monotonic`` (seconds), for the issuance latency metric.
    """

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._pods: dict[str, dict[str, PodSummary]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._first_seen: dict[str, float] = {}
        self._monotonic = monotonic

    def __len__(self) -> int:
        return sum(len(pods) for pods in self._pods.values())

    def observe(self, *, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """Apply one watch event; ``DELETED`` or a dead pod removes it."""
        summary = PodSummary.from_pod(pod)
        if not summary.uid:
            return

        if event_type == "DELETED" or not is_pod_live(pod):
            self._first_seen.pop(summary.uid, None)
            in_namespace = self._pods.get(summary.namespace, {})
            previous = in_namespace.pop(summary.uid, None)
            if previous is None:
                return
            if not in_namespace:
                del self._pods[summary.namespace]
            self._wake(summary.namespace, previous.labels)
            return

        in_namespace = self._pods.setdefault(summary.namespace, {})
        previous = in_namespace.get(summary.uid)
        if previous == summary:
            return
        if previous is None:
            self._first_seen.setdefault(summary.uid, self._monotonic())
        in_namespace[summary.uid] = summary
        self._wake(summary.namespace, summary.labels)
        if previous is not None and previous.labels != summary.labels:
            self._wake(summary.namespace, previous.labels)

    def resync(self, *, pods: Sequence[Mapping[str, Any]], namespace: str | None) -> None:
        """Replace what is known of ``namespace`` (or of every namespace) with a fresh list.

        Pods missing from the list were deleted while no watch was running,
        so they are removed as if a ``DELETED`` event had arrived.
        """
        listed = {str((pod.get("metadata") or {}).get("uid", "")) for pod in pods}
        scopes = [namespace] if namespace is not None else list(self._pods)
        for scope in scopes:
            for uid, summary in list(self._pods.get(scope, {}).items()):
                if uid not in listed:
                    gone = {"metadata": {"namespace": scope, "name": summary.name, "uid": uid}}
                    self.observe(event_type="DELETED", pod=gone)
        for pod in pods:
            self.observe(event_type=None, pod=pod)

    def selected(self, *, namespace: str, matches: Matcher) -> list[PodSummary]:
        """Return the live pods of ``namespace`` whose labels ``matches`` accepts, by name."""
        # NOTE: this scans every pod of the namespace on each pass; an index by
        # label would make a pass cheaper in namespaces with many pods.
        pods = self._pods.get(namespace, {}).values()
        return sorted((pod for pod in pods if matches(pod.labels)), key=lambda pod: pod.name)

    def first_seen(self, uid: str) -> float | None:
        """Return the monotonic time when the live pod ``uid`` was first observed."""
        return self._first_seen.get(uid)

    def subscribe(self, *, key: str, namespace: str, matches: Matcher) -> asyncio.Event:
        """Register a binding; the returned event is set whenever a matching pod changes."""
        subscription = self._subscriptions.get(key)
        if subscription is None:
            subscription = _Subscription(namespace=namespace, matches=matches, wake=asyncio.Event())
            self._subscriptions[key] = subscription
        subscription.namespace = namespace
        subscription.matches = matches
        return subscription.wake

    def unsubscribe(self, key: str) -> None:
        """Forget a binding's subscription."""
        self._subscriptions.pop(key, None)

    def wake(self, key: str) -> None:
        """Wake one subscriber, for changes that are not pod events (its spec, its target)."""
        subscription = self._subscriptions.get(key)
        if subscription is not None:
            subscription.wake.set()

    def wake_all(self, keys: Iterable[str] | None = None) -> None:
        """Wake several subscribers, or all of them."""
        for key in list(self._subscriptions if keys is None else keys):
            self.wake(key)

    def _wake(self, namespace: str, labels: Mapping[str, str]) -> None:
        for subscription in self._subscriptions.values():
            if subscription.namespace != namespace:
                continue
            try:
                selected = subscription.matches(labels)
            except Exception:
                logger.exception("Label selector of a binding in namespace %s failed", namespace)
                continue
            if selected:
                subscription.wake.set()
