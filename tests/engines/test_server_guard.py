"""The guard's pieces on their own: the per-caller token bucket and constant-time key lookup."""

from __future__ import annotations

from engines.server.guard import RateLimiter, key_index


def test_rate_limiter_allows_a_burst_then_refills_per_caller() -> None:
    now = [100.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(60)] == [0.0] * 60
    assert limiter.take("a") == 1.0  # one request a second from here on
    assert limiter.take("b") == 0.0  # another caller has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.5
    now[0] += 0.5
    assert limiter.take("a") == 0.0


def test_rate_limit_zero_is_no_limit() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.take("a") == 0.0 for _ in range(1000))


def test_key_index_finds_the_position_or_none() -> None:
    keys = ("alpha-key", "beta-key", "alpha-key")
    assert key_index("beta-key", keys) == 2
    assert key_index("alpha-key", keys) == 1  # the first match
    assert key_index("alpha", keys) is None and key_index("", keys) is None
