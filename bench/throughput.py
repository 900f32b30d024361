"""Throughput: many bindings, each selecting several pods, served at once by the operator.

The pods exist before the timing starts; the clock starts when the harness
begins creating the bindings, all at once from several threads. A binding
gets one credential, shared by its pods, after all of its selected pods
are attested, so B bindings of P pods cost B x P attestations and B
issuances.
"""

from __future__ import annotations

import time
from typing import Any

from bench.kubeops import (
    SecretWatcher,
    list_bindings,
    run_parallel,
    wait_until,
)
from bench.latency import BINDING_LABEL_KEY, check_login
from bench.stack import SERVICE_ACCOUNT, Stack
from operator_harness import pod_body

# One Secret in this many gets a real login after the timing.
LOGIN_SAMPLE_EVERY = 10

PodsByBinding = dict[str, list[tuple[str, str]]]


def binding_names(count: int) -> list[str]:
    """Return the names of the throughput bindings."""
    return [f"tp-{index:04d}" for index in range(count)]


def create_pods(
    stack: Stack, *, namespace: str, bindings: int, pods_per_binding: int, workers: int
) -> tuple[PodsByBinding, float]:
    """Create the pods of every binding; return their names and uids, and the seconds it took."""
    wanted = [
        (binding, f"{binding}-{index:02d}")
        for binding in binding_names(bindings)
        for index in range(pods_per_binding)
    ]

    def create(item: tuple[str, str]) -> tuple[str, str, str]:
        binding, pod = item
        created = stack.core.create_namespaced_pod(
            namespace,
            pod_body(
                name=pod, labels={BINDING_LABEL_KEY: binding}, service_account=SERVICE_ACCOUNT
            ),
        )
        return binding, pod, str(created.metadata.uid)

    started = time.perf_counter()
    results = run_parallel(create, wanted, workers=workers)
    seconds = time.perf_counter() - started
    pods: PodsByBinding = {}
    for binding, pod, uid in results:
        pods.setdefault(binding, []).append((pod, uid))
    return pods, seconds


def run_operator_throughput(
    stack: Stack, *, namespace: str, pods: PodsByBinding, workers: int, timeout_seconds: float
) -> dict[str, Any]:
    """Create one binding per entry of ``pods`` and time the operator until all are served."""
    names = sorted(pods)
    pods_per_binding = {name: len(pods[name]) for name in names}
    secret_names = [f"{name}-db" for name in names]

    def create(name: str) -> None:
        stack.create_binding(namespace=namespace, name=name, label_key=BINDING_LABEL_KEY)

    with SecretWatcher(stack.api_client, namespace, keep_uri=True) as watcher:
        started = time.perf_counter()
        run_parallel(create, names, workers=workers)
        bindings_created = time.perf_counter() - started
        seen = watcher.wait_for(secret_names, timeout_seconds=timeout_seconds)
        all_secrets = max(seen.values()) - started

        def all_pods_verified() -> bool:
            return all(
                (binding.get("status") or {}).get("verifiedPods")
                == pods_per_binding[binding["metadata"]["name"]]
                for binding in list_bindings(stack.custom, namespace)
            )

        wait_until(all_pods_verified, timeout_seconds=timeout_seconds, what="verifiedPods")
        all_verified = time.perf_counter() - started

        sampled = secret_names[::LOGIN_SAMPLE_EVERY]
        for secret_name in sampled:
            check_login(watcher.take_uri(secret_name))

    total_pods = sum(pods_per_binding.values())
    return {
        "bindings": len(names),
        "pods": total_pods,
        "binding_create_seconds": round(bindings_created, 3),
        "seconds_to_all_secrets": round(all_secrets, 3),
        "seconds_to_all_verified_in_status": round(all_verified, 3),
        "issuances_per_second": round(len(names) / all_secrets, 2),
        "attestations_per_second": round(total_pods / all_secrets, 2),
        "logins_checked": len(sampled),
    }
