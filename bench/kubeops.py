"""Cluster helpers for the benchmarks: clients, bulk creation, waiting and a Secret watch."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from credbroker.delivery import MANAGED_SELECTOR

GROUP, VERSION, BINDINGS = "credbroker.dev", "v1alpha1", "credentialbindings"
WATCH_SERVER_TIMEOUT_SECONDS = 5
POLL_INTERVAL_SECONDS = 0.25

T = TypeVar("T")
R = TypeVar("R")


def pooled_api_client(kubeconfig: Path, *, pool_size: int) -> client.ApiClient:
    """Return an admin client whose HTTP pool keeps ``pool_size`` connections for threads."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def run_parallel(function: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
    """Call ``function`` on every item from ``workers`` threads; re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench") as pool:
        return list(pool.map(function, items))


def create_namespace(core: client.CoreV1Api, name: str, *, service_account: str) -> None:
    """Create a namespace and a ServiceAccount in it for the benchmark's pods."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_service_account(
        name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account))
    )


def delete_namespace(core: client.CoreV1Api, name: str, *, timeout_seconds: float) -> bool:
    """Delete a namespace and wait until it is gone; return False if it outlived the timeout."""
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        time.sleep(POLL_INTERVAL_SECONDS)
    return False


def count_pods(core: client.CoreV1Api) -> int:
    """Return how many pods exist in the whole cluster."""
    total = 0
    token: str | None = None
    while True:
        page = core.list_pod_for_all_namespaces(limit=500, _continue=token)
        total += len(page.items)
        token = page.metadata._continue
        if not token:
            return total


def list_bindings(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    """Return the CredentialBindings of a namespace as plain dicts."""
    result = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, BINDINGS)
    return list(result.get("items") or [])


def wait_until(probe: Callable[[], bool], *, timeout_seconds: float, what: str) -> float:
    """Poll ``probe`` until it returns True; return the seconds waited or raise TimeoutError."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_seconds
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)
    return time.perf_counter() - started


class SecretWatcher:
    """Records when each managed Secret of one namespace first appears, from a watch.

    Times are ``time.perf_counter()`` values taken when the event arrives.
    With ``keep_uri`` the ``uri`` key of each new Secret is decoded and kept
    in memory until ``take_uri`` removes it. Nothing here logs Secret data.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str, *, keep_uri: bool) -> None:
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._keep_uri = keep_uri
        self._first_seen: dict[str, float] = {}
        self._uris: dict[str, str] = {}
        self._condition = threading.Condition()
        self._stopped = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="secret-watch", daemon=True)
        self._resource_version = ""

    def __enter__(self) -> SecretWatcher:
        self._resource_version = self._relist()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=WATCH_SERVER_TIMEOUT_SECONDS * 3)

    def wait_for(self, names: Iterable[str], *, timeout_seconds: float) -> dict[str, float]:
        """Block until every Secret in ``names`` was seen; return when each appeared."""
        wanted = set(names)
        deadline = time.monotonic() + timeout_seconds
        with self._condition:
            while True:
                if self._failure is not None:
                    raise RuntimeError(f"the Secret watch failed: {self._failure!r}")
                missing = wanted - self._first_seen.keys()
                if not missing:
                    return {name: self._first_seen[name] for name in wanted}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout_seconds:.0f} s waiting for {len(missing)} "
                        f"Secret(s) in namespace {self._namespace}, such as {min(missing)}"
                    )
                self._condition.wait(timeout=min(remaining, 1.0))

    def take_uri(self, name: str) -> str:
        """Remove and return the connection URI of a seen Secret."""
        with self._condition:
            return self._uris.pop(name)

    def _relist(self) -> str:
        listing = self._core.list_namespaced_secret(
            self._namespace, label_selector=MANAGED_SELECTOR
        )
        now = time.perf_counter()
        for secret in listing.items:
            self._record(secret, now)
        return str(listing.metadata.resource_version)

    def _record(self, secret: Any, when: float) -> None:
        name = secret.metadata.name
        with self._condition:
            if name in self._first_seen:
                return
            self._first_seen[name] = when
            if self._keep_uri:
                self._uris[name] = _decode(secret.data or {}, "uri")
            self._condition.notify_all()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                stream = watch.Watch()
                try:
                    for event in stream.stream(
                        self._core.list_namespaced_secret,
                        self._namespace,
                        label_selector=MANAGED_SELECTOR,
                        resource_version=self._resource_version,
                        timeout_seconds=WATCH_SERVER_TIMEOUT_SECONDS,
                    ):
                        secret = event["object"]
                        self._resource_version = str(secret.metadata.resource_version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._record(secret, time.perf_counter())
                        if self._stopped.is_set():
                            stream.stop()
                except ApiException as error:
                    if error.status != 410:
                        raise
                    # The resource version is too old: list again and watch from there.
                    self._resource_version = self._relist()
        except BaseException as error:
            with self._condition:
                self._failure = error
                self._condition.notify_all()


def _decode(data: Mapping[str, str], key: str) -> str:
    return base64.b64decode(data[key]).decode()
