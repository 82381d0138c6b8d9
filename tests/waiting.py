"""Waiting for something the code under test does on its own time, without timed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Return once `condition()` holds (checked every 5 ms); fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")
