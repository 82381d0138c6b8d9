"""The CLI as a user runs it: `python -m archiver.cli` in a child process, in a working folder
whose archive.toml points at the stand-in API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from archiver.sandbox import Sandbox


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def log_events(self) -> list[dict[str, object]]:
        """stderr's JSON log lines (stderr is not a terminal here)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


class Cli:
    """A working folder with archive.toml pointing at the sandbox; runs the CLI in it."""

    def __init__(self, sandbox: Sandbox, workdir: Path) -> None:
        self.sb = sandbox
        self.workdir = workdir
        self.archive = workdir / "archive"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUNO_")}
        self.env["SUNO_API_KEY"] = sandbox.api_key
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        """archive.toml for the sandbox, plus `extra`; an unknown task is asked again for 0.5 s
        (tasks.not_found_after_s), not 15 minutes. An `extra` [tasks] table adds to that one."""
        tasks = "[tasks]\nnot_found_after_s = 0.5\n"
        if extra.startswith("[tasks]\n"):
            tasks, extra = tasks + extra.removeprefix("[tasks]\n"), ""
        self.workdir.joinpath("archive.toml").write_text(
            f'[api]\nbase_url = "{self.sb.base_url}"\nrequests_per_second = 50.0\n'
            "[download]\nattempts = 2\n" + tasks + extra,
            encoding="utf-8",
        )

    def ids(self, *lines: str) -> Path:
        path = self.workdir / "ids.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver.cli", *args,
            cwd=self.workdir, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def run(self, *args: str, timeout: float = 60.0) -> Result:
        proc = await self.start(*args)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
