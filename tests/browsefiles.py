"""The browse files as a test reads them: the table of shards, and every task the page lists."""

from __future__ import annotations

import json
from pathlib import Path


def call(path: Path, name: str) -> list:
    """The arguments of the one `SUNO.<name>(...)` call a browse script makes (JSON each)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"SUNO.{name}(") and text.endswith(");\n"), text[:80]
    return json.loads("[" + text[len(name) + 6 : -3] + "]")


def table(archive: Path) -> dict:
    return call(archive / "browse" / "shards.js", "table")[0]


def page_tasks(archive: Path) -> list[dict]:
    """Every task the page lists, newest first: the table's shards, newest first, each read."""
    tasks = []
    for shard, *_ in reversed(table(archive)["shards"]):
        number, shard_tasks, _lyrics = call(archive / "browse" / "t" / f"{shard:05d}.js", "tasks")
        assert number == shard
        tasks += shard_tasks
    return tasks
