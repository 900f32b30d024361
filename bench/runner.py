"""Run every benchmark in order on one cluster and one PostgreSQL server.

Order: JWT verification (no cluster); operator memory with no pods;
latency; the floor over the throughput pods (operator stopped); operator
throughput; memory with the selected pods; memory with the unselected pods
added; the sweeps (operator stopped). Each step has a time limit and a fixed
count, so a run ends by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import environment
from bench.floor import FloorRun
from bench.kubeops import create_namespace, delete_namespace, run_parallel
from bench.latency import run_latency
from bench.memory import measure_operator_memory
from bench.scales import Scale
from bench.stack import SERVICE_ACCOUNT, Stack
from bench.sweep import SweepBench
from bench.throughput import create_pods, run_operator_throughput
from bench.verification import run_verification
from localcluster import ClusterAccess
from operator_harness import apply_crds, pod_body
from pgserver import PostgresServer

logger = logging.getLogger(__name__)

PURPOSES = ["latency", "throughput", "idle", "sweep"]
UNSELECTED_LABELS = {"app": "not-selected"}
OPERATOR_WATCH_START_SECONDS = 2.0


def run_benchmarks(
    *,
    cluster: ClusterAccess,
    postgres: PostgresServer,
    database: str,
    scale: Scale,
    work_dir: Path,
    progress: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Run every benchmark at ``scale`` and return the results (numbers and versions only)."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scale": scale.as_dict(),
        "machine": environment.machine_info(),
        "load_average_at_start": environment.load_average(),
    }

    progress(f"verification: {scale.verifications} JWTs")
    results["verification"] = run_verification(scale.verifications)

    stack = Stack(
        cluster=cluster,
        postgres=postgres,
        database=database,
        work_dir=work_dir,
        pool_size=scale.workers * 2,
    )
    try:
        results["versions"] = {
            **environment.package_versions(),
            "kubernetes": environment.kubernetes_version(stack.api_client),
            "postgresql": postgres.version,
        }
        _run_cluster_benchmarks(stack, scale=scale, results=results, progress=progress)
    finally:
        _clean_up(stack, timeout_seconds=scale.wait_timeout_seconds, progress=progress)
        stack.close()

    results["load_average_at_end"] = environment.load_average()
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    return results


def _run_cluster_benchmarks(
    stack: Stack, *, scale: Scale, results: dict[str, Any], progress: Callable[[str], None]
) -> None:
    timeout = scale.wait_timeout_seconds
    apply_crds(stack.cluster.kubectl)
    for purpose in PURPOSES:
        create_namespace(stack.core, stack.namespace(purpose), service_account=SERVICE_ACCOUNT)
        stack.created_namespaces.append(stack.namespace(purpose))
    stack.install_target(PURPOSES)

    memory: list[dict[str, Any]] = []
    progress("memory: no pods")
    memory.append(
        measure_operator_memory(
            stack,
            state="no pods",
            selected_pods=0,
            settle_seconds=scale.settle_seconds,
            timeout_seconds=timeout,
        )
    )

    progress(f"latency: {scale.latency_pods} pods, one at a time")
    results["latency"] = run_latency(
        stack,
        namespace=stack.namespace("latency"),
        pods=scale.latency_pods,
        timeout_seconds=timeout,
    )
    # Deleting the namespace revokes the latency credentials through the operator.
    if not delete_namespace(stack.core, stack.namespace("latency"), timeout_seconds=timeout):
        raise TimeoutError(f"namespace {stack.namespace('latency')} was not deleted in {timeout} s")
    stack.stop_operator()

    progress(f"floor: {scale.throughput_bindings} bindings x {scale.pods_per_binding} pods")
    pods, pod_seconds = create_pods(
        stack,
        namespace=stack.namespace("throughput"),
        bindings=scale.throughput_bindings,
        pods_per_binding=scale.pods_per_binding,
        workers=scale.workers,
    )
    floor = FloorRun(stack, namespace=stack.namespace("throughput"), workers=scale.workers)
    results["floor"] = floor.run(pods)
    floor.clean_up()

    progress("throughput: the operator on the same pods")
    stack.start_operator()
    time.sleep(OPERATOR_WATCH_START_SECONDS)
    throughput = run_operator_throughput(
        stack,
        namespace=stack.namespace("throughput"),
        pods=pods,
        workers=scale.workers,
        timeout_seconds=timeout,
    )
    throughput["pod_create_seconds"] = round(pod_seconds, 3)
    results["throughput"] = throughput
    results["overhead"] = {
        "operator_seconds": throughput["seconds_to_all_secrets"],
        "floor_seconds": results["floor"]["seconds"],
        "ratio": round(throughput["seconds_to_all_secrets"] / results["floor"]["seconds"], 2),
    }

    progress(f"memory: {scale.throughput_pods} selected pods")
    memory.append(
        measure_operator_memory(
            stack,
            state="selected pods only",
            selected_pods=scale.throughput_pods,
            settle_seconds=scale.settle_seconds,
            timeout_seconds=timeout,
        )
    )

    progress(f"memory: {scale.unselected_pods} unselected pods added")
    stack.stop_operator()
    _create_unselected_pods(stack, count=scale.unselected_pods, workers=scale.workers)
    memory.append(
        measure_operator_memory(
            stack,
            state="selected and unselected pods",
            selected_pods=scale.throughput_pods,
            settle_seconds=scale.settle_seconds,
            timeout_seconds=timeout,
        )
    )
    results["memory"] = memory
    stack.stop_operator()

    sweep = SweepBench(stack, namespace=stack.namespace("sweep"), workers=scale.workers)
    runs = []
    for live in (scale.sweep_live_small, scale.sweep_live_large):
        progress(f"sweep: {live} live and {scale.sweep_expired} expired credentials")
        plant_seconds = sweep.plant(live=live - sweep.live, expired=scale.sweep_expired)
        run = sweep.sweep()
        run["plant_seconds"] = round(plant_seconds, 1)
        runs.append(run)
    results["sweep"] = {
        "runs": runs,
        "seconds_ratio_large_to_small": round(runs[1]["seconds"] / runs[0]["seconds"], 2),
    }


def _create_unselected_pods(stack: Stack, *, count: int, workers: int) -> None:
    namespace = stack.namespace("idle")

    def create(index: int) -> None:
        stack.core.create_namespaced_pod(
            namespace,
            pod_body(
                name=f"idle-{index:05d}", labels=UNSELECTED_LABELS, service_account=SERVICE_ACCOUNT
            ),
        )

    run_parallel(create, range(count), workers=workers)


def _clean_up(stack: Stack, *, timeout_seconds: float, progress: Callable[[str], None]) -> None:
    """Delete what the run created; the operator runs meanwhile to release binding finalizers."""
    progress("clean-up")
    try:
        if stack.operator is None:
            stack.start_operator()
        for namespace in stack.created_namespaces:
            if namespace in (stack.namespace("idle"), stack.namespace("sweep")):
                # No finalizers hold these, so the namespace controller removes them alone.
                stack.core.delete_namespace(namespace)
            elif not delete_namespace(stack.core, namespace, timeout_seconds=timeout_seconds):
                logger.warning("namespace %s was not deleted in %.0f s", namespace, timeout_seconds)
        stack.custom.delete_cluster_custom_object(
            "credbroker.dev", "v1alpha1", "credentialtargets", stack.target_name
        )
    except Exception:
        logger.exception("clean-up of benchmark run %s failed", stack.run_id)
    finally:
        stack.stop_operator()
