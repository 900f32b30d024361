"""Latency: from a Pod's creation to a working credential in its binding's Secret.

Each pod has a binding of its own, created before the timing starts, so every
pod leads to one TokenRequest, one JWT verification, one TokenReview, one
CREATE ROLE and one Secret create. Pods are created one at a time: the next
pod is created only after the previous one's credential logged in, so the
samples measure one request on an otherwise idle operator.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench.kubeops import SecretWatcher, list_bindings, wait_until
from bench.stack import SERVICE_ACCOUNT, Stack
from bench.stats import summarize
from operator_harness import pod_body

LOGIN_TIMEOUT_SECONDS = 5
BINDING_LABEL_KEY = "bench.credbroker.dev/binding"


def run_latency(
    stack: Stack, *, namespace: str, pods: int, timeout_seconds: float
) -> dict[str, Any]:
    """Create ``pods`` pods one at a time and time each until its credential logs in."""
    names = [f"lat-{index:04d}" for index in range(pods)]
    for name in names:
        stack.create_binding(namespace=namespace, name=name, label_key=BINDING_LABEL_KEY)

    # Every binding's first pass writes its status; after that its daemon
    # waits for pods, so the timing below does not include daemon start-up.
    def all_bindings_waiting() -> bool:
        bindings = list_bindings(stack.custom, namespace)
        return len(bindings) == pods and all(
            (binding.get("status") or {}).get("observedGeneration") for binding in bindings
        )

    wait_until(
        all_bindings_waiting, timeout_seconds=timeout_seconds, what="the first pass of each binding"
    )

    to_secret: list[float] = []
    to_login: list[float] = []
    with SecretWatcher(stack.api_client, namespace, keep_uri=True) as watcher:
        for name in names:
            started = time.perf_counter()
            stack.core.create_namespaced_pod(
                namespace,
                pod_body(
                    name=name, labels={BINDING_LABEL_KEY: name}, service_account=SERVICE_ACCOUNT
                ),
            )
            secret_name = f"{name}-db"
            seen = watcher.wait_for([secret_name], timeout_seconds=timeout_seconds)
            to_secret.append(seen[secret_name] - started)
            check_login(watcher.take_uri(secret_name))
            to_login.append(time.perf_counter() - started)

    return {
        "pods": pods,
        "logins_checked": len(to_login),
        "secret_seconds": summarize(to_secret),
        "working_login_seconds": summarize(to_login),
    }


def check_login(uri: str) -> None:
    """Log in with the delivered credential and run one query; raise if either fails."""
    with psycopg.connect(uri, connect_timeout=LOGIN_TIMEOUT_SECONDS) as connection:
        row = connection.execute("SELECT 1").fetchone()
    if row != (1,):
        raise RuntimeError(f"the delivered credential's test query returned {row!r}, expected (1,)")
