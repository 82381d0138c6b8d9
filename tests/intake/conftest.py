"""The intake tests' fixture: here `site` is a daemon work folder with the HTTP intake on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from intakes import TOKEN, IntakeSite

from archiver.sandbox import Sandbox


@pytest.fixture
async def site(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[IntakeSite]:
    """Configured for the intake, an empty task list; its daemons are killed at the end, and
    none of them ever logged the token."""
    s = IntakeSite(tmp_path, sandbox)
    s.configure_intake()
    s.list_tasks()
    try:
        yield s
    finally:
        for d in s.daemons:
            await d.kill()
        for d in s.daemons:  # whatever happened, the token was never logged
            assert not [line for line in d.raw if TOKEN in line]
