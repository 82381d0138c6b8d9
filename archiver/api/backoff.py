"""Exponential backoff with full jitter, and the servers' Retry-After: the one retry schedule
every caller (API client, downloads, engine) shares."""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime


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


def parse_retry_after(
    value: str | None, *, cap_s: float, now: Callable[[], datetime] | None = None
) -> float | None:
    """Retry-After as seconds (a number, or an HTTP date), within [0, cap_s]; None if absent
    or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or _utcnow)()).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), cap_s)


def _utcnow() -> datetime:
    return datetime.now(UTC)
