"""Per-identity token buckets: how many exchanges one workload identity may make, and how fast."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from credbroker.errors import CredbrokerError
from credbroker.exchange.settings import RateLimit
from credbroker.reasons import Reason

logger = logging.getLogger(__name__)

# Buckets that have refilled completely carry no state, so they are dropped
# once the table grows past this many entries.
MAX_TRACKED_IDENTITIES = 10_000


class RateLimited(CredbrokerError):  # noqa: N818 (named like the other rejections)
    """An identity has used up its bucket; ``retry_after_seconds`` says when one token is back."""

    def __init__(self, *, identity: str, retry_after_seconds: int) -> None:
        super().__init__(
            Reason.RATE_LIMITED,
            f"identity {identity} made too many exchange requests; retry after "
            f"{retry_after_seconds} s",
        )
        self.retry_after_seconds = retry_after_seconds


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class TokenBucketLimiter:
    """Token buckets keyed by identity, read from a monotonic clock in seconds."""

    def __init__(self, rate: RateLimit, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def take(self, identity: str) -> None:
        """Take one token from the identity's bucket; raise ``RateLimited`` when it is empty."""
        now = self._monotonic()
        bucket = self._buckets.get(identity)
        if bucket is None:
            self._forget_full_buckets(now)
            bucket = _Bucket(tokens=float(self._rate.burst), updated_at=now)
            self._buckets[identity] = bucket
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(
                float(self._rate.burst), bucket.tokens + elapsed * self._rate.refill_per_second
            )
            bucket.updated_at = now

        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait_seconds = (1.0 - bucket.tokens) / self._rate.refill_per_second
        retry_after = max(1, math.ceil(wait_seconds))
        logger.info("Rate limit reached for %s; retry after %d s", identity, retry_after)
        raise RateLimited(identity=identity, retry_after_seconds=retry_after)

    def _forget_full_buckets(self, now: float) -> None:
        if len(self._buckets) < MAX_TRACKED_IDENTITIES:
            return
        refill_seconds = self._rate.burst / self._rate.refill_per_second
        for key in [k for k, b in self._buckets.items() if now - b.updated_at >= refill_seconds]:
            del self._buckets[key]
