"""The API tests' fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session for the test."""
    async with aiohttp.ClientSession() as session:
        yield session
