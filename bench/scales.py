"""Benchmark sizes: one ``Scale`` per ``--scale`` value."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Scale:
    """The sizes and waits of one benchmark run."""

    name: str
    # Latency: one binding per pod, pods created one at a time.
    latency_pods: int
    # Throughput and floor: bindings, each selecting this many pods.
    throughput_bindings: int
    pods_per_binding: int
    # Memory: pods that no binding selects, added for the last memory state.
    unselected_pods: int
    # Sweep: live credentials in the small and the large run, and expired ones in each.
    sweep_live_small: int
    sweep_live_large: int
    sweep_expired: int
    # JWT verifications timed in the verification benchmark.
    verifications: int
    # Seconds the operator idles before its RSS is read.
    settle_seconds: float
    # Client threads for bulk creation and for the floor script.
    workers: int
    # Upper bound of each wait for the operator, in seconds.
    wait_timeout_seconds: float

    @property
    def throughput_pods(self) -> int:
        """Pods selected by the throughput bindings."""
        return self.throughput_bindings * self.pods_per_binding

    def as_dict(self) -> dict[str, Any]:
        """Return the sizes as plain data for the results file."""
        return asdict(self)


SCALES = {
    "tiny": Scale(
        name="tiny",
        latency_pods=3,
        throughput_bindings=2,
        pods_per_binding=2,
        unselected_pods=8,
        sweep_live_small=10,
        sweep_live_large=40,
        sweep_expired=3,
        verifications=200,
        settle_seconds=1.0,
        workers=4,
        wait_timeout_seconds=60.0,
    ),
    "small": Scale(
        name="small",
        latency_pods=50,
        throughput_bindings=20,
        pods_per_binding=10,
        unselected_pods=1_800,
        sweep_live_small=200,
        sweep_live_large=2_000,
        sweep_expired=20,
        verifications=5_000,
        settle_seconds=5.0,
        workers=16,
        wait_timeout_seconds=180.0,
    ),
    "full": Scale(
        name="full",
        latency_pods=200,
        throughput_bindings=100,
        pods_per_binding=10,
        unselected_pods=9_000,
        sweep_live_small=1_000,
        sweep_live_large=10_000,
        sweep_expired=100,
        verifications=20_000,
        settle_seconds=15.0,
        workers=16,
        wait_timeout_seconds=300.0,
    ),
}
