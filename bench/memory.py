"""Memory: the operator's resident set size at rest, for a given set of pods in the cluster.

Each measurement starts a new operator process, waits until it has attested
every selected pod (counted in its log), lets it idle for the settle time,
then reads VmRSS a few times. A new process per state keeps the peaks of
earlier benchmarks out of the number. Pods are plain objects: with no
kubelet they stay Pending, which is all the operator reads.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.kubeops import count_pods, wait_until
from bench.stack import Stack, operator_rss

RSS_SAMPLES = 5


def measure_operator_memory(
    stack: Stack,
    *,
    state: str,
    selected_pods: int,
    settle_seconds: float,
    timeout_seconds: float,
) -> dict[str, Any]:
    """Restart the operator, wait for it to attest ``selected_pods`` pods, and read its RSS."""
    stack.stop_operator()
    stack.start_operator()
    wait_until(
        lambda: stack.attestations_logged() >= selected_pods,
        timeout_seconds=timeout_seconds,
        what=f"the operator to attest {selected_pods} pods after its start",
    )
    time.sleep(settle_seconds)
    pid = stack.operator_pid()
    samples: list[int] = []
    peak = 0
    for _ in range(RSS_SAMPLES):
        reading = operator_rss(pid)
        samples.append(reading["rss_bytes"])
        peak = max(peak, reading["peak_rss_bytes"])
        time.sleep(settle_seconds / RSS_SAMPLES)
    return {
        "state": state,
        "pods_in_cluster": count_pods(stack.core),
        "selected_pods": selected_pods,
        "rss_bytes": int(statistics.median(samples)),
        "peak_rss_bytes": peak,
    }
