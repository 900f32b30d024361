"""Polling helper for conditions that a cluster reaches eventually, such as garbage collection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_SECONDS = 0.2


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout_seconds: float,
    description: str,
    interval_seconds: float = POLL_INTERVAL_SECONDS,
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Raises TimeoutError naming ``description`` when ``timeout_seconds`` pass first.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {description}")
        time.sleep(interval_seconds)
