"""The verify tests' fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import Cli
from verifying import Archive, make_archive

from archiver.sandbox import Sandbox


@pytest.fixture
async def archive(sandbox: Sandbox, tmp_path: Path) -> Archive:
    """A local archive made by a real `backfill` (verifying.make_archive)."""
    return await make_archive(Cli(sandbox, tmp_path))
