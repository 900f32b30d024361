"""Pod list-and-watch that feeds the ``PodRegistry`` without kopf.

Watching pods through kopf cost about 15 KiB of resident memory per pod in
the memory benchmark (bench/), and kopf runs its handler machinery for
every event. credbroker needs only a few fields of each pod, so it lists and
watches pods itself. It reads raw JSON from the API server (no client model
objects) and keeps a small summary per pod. One daemon thread per watched
scope hands the events to the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from credbroker.pods import PodRegistry

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE_PODS = 500
WATCH_TIMEOUT_SECONDS = 300
WATCH_READ_TIMEOUT_SECONDS = 330
RETRY_DELAY_SECONDS = 2.0
HTTP_GONE = 410


class PodWatcher:
    """Keeps ``registry`` in step with the pods of a set of namespaces (or all of them)."""

    def __init__(
        self,
        *,
        core_api: k8s.CoreV1Api,
        registry: PodRegistry,
        namespaces: Sequence[str] = (),
        label_selector: str | None = None,
    ) -> None:
        self._core = core_api
        self._registry = registry
        self._scopes: list[str | None] = list(namespaces) or [None]
        self._label_selector = label_selector
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.synced = asyncio.Event()
        self._pending_syncs = len(self._scopes)

    def start(self) -> None:
        """Start one watch thread per scope; events reach the registry on the running loop."""
        self._loop = asyncio.get_running_loop()
        for scope in self._scopes:
            thread = threading.Thread(
                target=self._run_scope,
                args=(scope,),
                name=f"credbroker-pods-{scope or 'all'}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        logger.info(
            "Watching pods in %s (label selector: %s)",
            ", ".join(scope or "all namespaces" for scope in self._scopes),
            self._label_selector or "none",
        )

    def stop(self) -> None:
        """Ask the threads to stop; they end at their next event or watch timeout."""
        self._stopping.set()
        logger.info("Stopped watching pods")

    def _run_scope(self, namespace: str | None) -> None:
        first_sync = True
        while not self._stopping.is_set():
            try:
                resource_version = self._list(namespace)
                if first_sync:
                    first_sync = False
                    self._call_soon(self._mark_synced)
                while not self._stopping.is_set():
                    resource_version = self._watch(namespace, resource_version)
            except _WatchExpiredError:
                logger.info("Pod watch in %s expired; listing again", namespace or "all namespaces")
            except Exception as error:  # the thread must survive API outages
                logger.warning(
                    "Pod watch in %s failed, retrying in %.0f s: %s",
                    namespace or "all namespaces",
                    RETRY_DELAY_SECONDS,
                    _describe(error),
                )
                time.sleep(RETRY_DELAY_SECONDS)

    def _list(self, namespace: str | None) -> str:
        pods: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._request(namespace, watch=False, continue_token=token)
            document = json.loads(page.data)
            pods.extend(slim_pod(item) for item in document.get("items") or [])
            del document["items"]
            token = (document.get("metadata") or {}).get("continue") or None
            if token is None:
                break
        resource_version = str((document.get("metadata") or {}).get("resourceVersion", ""))
        self._call_soon(functools.partial(self._registry.resync, pods=pods, namespace=namespace))
        logger.debug("Listed %d pods in %s", len(pods), namespace or "all namespaces")
        return resource_version

    def _watch(self, namespace: str | None, resource_version: str) -> str:
        response = self._request(namespace, watch=True, resource_version=resource_version)
        try:
            for event in _events(response):
                if self._stopping.is_set():
                    break
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == HTTP_GONE:
                        raise _WatchExpiredError
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    resource_version = str(version)
                if kind == "BOOKMARK":
                    continue
                self._call_soon(
                    functools.partial(self._registry.observe, event_type=kind, pod=slim_pod(obj))
                )
        finally:
            response.release_conn()
        return resource_version

    def _request(
        self,
        namespace: str | None,
        *,
        watch: bool,
        resource_version: str | None = None,
        continue_token: str | None = None,
    ) -> Any:
        options: dict[str, Any] = {"_preload_content": False}
        if self._label_selector:
            options["label_selector"] = self._label_selector
        if watch:
            options.update(
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=resource_version,
                timeout_seconds=WATCH_TIMEOUT_SECONDS,
                _request_timeout=(10, WATCH_READ_TIMEOUT_SECONDS),
            )
        else:
            options["limit"] = LIST_PAGE_SIZE_PODS
            if continue_token:
                options["_continue"] = continue_token
        if namespace is None:
            return self._core.list_pod_for_all_namespaces(**options)
        return self._core.list_namespaced_pod(namespace, **options)

    def _call_soon(self, callback: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    def _mark_synced(self) -> None:
        self._pending_syncs -= 1
        if self._pending_syncs <= 0:
            self.synced.set()


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the fields ``PodRegistry`` reads, so a full pod body is not held in memory."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            "labels": metadata.get("labels") or {},
            "deletionTimestamp": metadata.get("deletionTimestamp"),
        },
        "spec": {
            "serviceAccountName": spec.get("serviceAccountName"),
            "nodeName": spec.get("nodeName"),
        },
        "status": {"phase": status.get("phase")},
    }


class _WatchExpiredError(Exception):
    """The watch's resource version is too old; the caller lists again."""


def _events(response: Any) -> Iterator[Mapping[str, Any]]:
    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
        if line:
            yield json.loads(line)


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
