"""The API client as the tests make it: against the stand-in API, fast retries, no rate limit to
speak of; the task IDs they ask about; a clock that moves only when told."""

from __future__ import annotations

import aiohttp

from archiver.api.client import RateLimiter, SunoApi
from archiver.sandbox import Sandbox

TASK = "0123456789abcdef0123456789abcdef"
COVER = "fedcba9876543210fedcba9876543210"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_api(
    sb: Sandbox,
    http: aiohttp.ClientSession,
    *,
    api_key: str | None = None,
    base_path: str = "",
    attempts: int = 4,
    per_second: float = 1000.0,
    timeout_s: float = 5.0,
) -> SunoApi:
    return SunoApi(
        http,
        base_url=sb.base_url + base_path,
        api_key=sb.api_key if api_key is None else api_key,
        limiter=RateLimiter(per_second),
        attempts=attempts,
        backoff_base_s=0.01,
        timeout_s=timeout_s,
    )
