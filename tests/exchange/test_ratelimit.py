"""TokenBucketLimiter: burst, refill, Retry-After and separate identities."""

from __future__ import annotations

import pytest

from credbroker.exchange.ratelimit import RateLimited, TokenBucketLimiter
from credbroker.exchange.settings import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_limited():
    clock = Clock()
    limiter = TokenBucketLimiter(RateLimit(burst=3, refill_per_second=0.25), monotonic=clock)
    for _ in range(3):
        limiter.take("spiffe://example.org/a")

    with pytest.raises(RateLimited) as caught:
        limiter.take("spiffe://example.org/a")
    assert caught.value.retry_after_seconds == 4
    assert "spiffe://example.org/a" in caught.value.message


def test_refill_after_wait():
    clock = Clock()
    limiter = TokenBucketLimiter(RateLimit(burst=1, refill_per_second=0.5), monotonic=clock)
    limiter.take("a")
    clock.now += 1.0
    with pytest.raises(RateLimited):
        limiter.take("a")

    clock.now += 2.0
    limiter.take("a")


def test_identities_have_own_buckets():
    limiter = TokenBucketLimiter(RateLimit(burst=1, refill_per_second=0.1), monotonic=Clock())
    limiter.take("a")

    limiter.take("b")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_rate_settings_validated():
    with pytest.raises(ValueError, match="burst"):
        RateLimit(burst=0)
    with pytest.raises(ValueError, match="refill_per_second"):
        RateLimit(refill_per_second=0)
