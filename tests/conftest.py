"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from archiver.sandbox import Sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A started stand-in API + file host on a free loopback port (key "sandbox-key")."""
    sb = Sandbox()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()
