"""A local archive made by a real `backfill` (two music tasks, one cover task), ways to damage
it, and the problem lines `verify` reports about it."""

from __future__ import annotations

import json
from pathlib import Path

from clirun import Cli, Result

from archiver.sandbox import fake_hex_id
from archiver.verify.findings import Category

CATEGORIES = {c.value for c in Category}


class Archive:
    """A backfilled archive (two music tasks, one cover task) and the CLI that made it."""

    def __init__(self, cli: Cli, tasks: list[str]) -> None:
        self.cli = cli
        self.root = cli.archive
        self.tasks = tasks
        self.state = cli.workdir / "archive.state.sqlite3"

    def manifest(self, task_id: str) -> dict:
        return json.loads((self.root / task_id / "manifest.json").read_text(encoding="utf-8"))

    def audio(self, task_id: str, n: int = 0) -> Path:
        return self.root / self.manifest(task_id)["tracks"][n]["audio"]["path"]

    def image(self, task_id: str, n: int = 0) -> Path:
        return self.root / self.manifest(task_id)["tracks"][n]["image"]["path"]

    async def verify(self, *args: str) -> Result:
        return await self.cli.run("verify", *args)


async def make_archive(cli: Cli) -> Archive:
    music = [fake_hex_id(f"verify:{n}") for n in range(2)]
    cover = fake_hex_id("verify:cover")
    for task in music:
        cli.sb.add_music(task)
    cli.sb.add_cover(cover, parent_task_id=music[0])
    result = await cli.run("backfill", str(cli.ids(*music, cover)))
    assert result.code == 0, result.stderr
    return Archive(cli, [*music, cover])


def problem_lines(result: Result) -> list[str]:
    """The problem lines of a text report (those that start with a category)."""
    return [line for line in result.stdout.splitlines() if line.split()[0] in CATEGORIES]


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
