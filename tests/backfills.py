"""One user's `backfill` setup, run in process: the stand-in API, an archive folder, a state
file and a task-list file; what a run reports and how the stand-in names its audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archive_checks import verify_archive

from archiver.cli.backfill import BackfillReport, backfill
from archiver.config import (
    ApiConfig,
    Config,
    DownloadConfig,
    StateConfig,
    StorageConfig,
    TaggingConfig,
    TasksConfig,
)
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.tasks.taskstate import Phase

FAST_POLLS = 0.01  # the polling schedule compressed 100 times: a 60 s wait becomes 0.6 s


class Site:
    """A sandbox, an archive folder, a state file and a task-list file: one user's setup."""

    def __init__(self, sandbox: Sandbox, tmp_path: Path) -> None:
        self.sb = sandbox
        self.archive = tmp_path / "archive"
        self.state = tmp_path / "state.sqlite3"
        self.ids_file = tmp_path / "ids.txt"
        self.give_up_after_s = 120.0
        self.not_found_after_s = 1.0  # an unknown task is asked again for 1 s (100 s scaled)
        self.api_key = sandbox.api_key
        self.download = DownloadConfig(attempts=3)
        self.tagging = TaggingConfig()
        self.poll_time_scale = FAST_POLLS
        self.min_free_bytes = 0  # the tests run on machines with little free space too

    def config(self) -> Config:
        return Config(
            api=ApiConfig(base_url=self.sb.base_url, api_key=self.api_key, requests_per_second=50),
            tasks=TasksConfig(
                give_up_after_s=self.give_up_after_s, not_found_after_s=self.not_found_after_s
            ),
            storage=StorageConfig(path=self.archive, min_free_bytes=self.min_free_bytes),
            state=StateConfig(path=self.state),
            download=self.download,
            tagging=self.tagging,
        )

    async def backfill(self, *lines: str) -> BackfillReport:
        if lines:
            self.ids_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return await backfill(
            self.config(), self.ids_file, retry_base_s=0.05, poll_time_scale=self.poll_time_scale
        )

    def manifest(self, task_id: str) -> dict[str, Any]:
        return verify_archive(self.archive)[task_id]

    def source_bytes(self, name: str) -> bytes:
        """A file exactly as the file host serves it."""
        data = self.sb.cdn._files[name].data
        return data.read_bytes() if isinstance(data, Path) else data


def phases(report: BackfillReport) -> dict[str, Phase]:
    """Each listed task's phase: those not archived by name, the archived ones counted."""
    ended = {t.task_id: t.phase for t in report.not_archived}
    assert report.counts[Phase.ARCHIVED] + len(ended) == report.total
    return ended


def audio_id(task: str, track: int) -> str:
    """The stand-in's audio ID of a track (1-based), which names its files in the archive."""
    return fake_hex_id(f"{task}:audio:{track}")
