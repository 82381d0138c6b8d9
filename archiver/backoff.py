"""Exponential backoff with full jitter: the one retry schedule every caller shares."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    base_s: float = 1.0,
    cap_s: float = 300.0,
    retry_after_s: float | None = None,
    rand: float | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    Full jitter (AWS architecture blog) spreads clients that failed together; a server's
    Retry-After is a floor, never shortened by jitter. `rand` in [0, 1) makes it pure for tests.
    """
    r = random.random() if rand is None else rand
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    delay = ceiling / 2 + r * ceiling / 2  # at least half the ceiling: never a tight loop
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay
