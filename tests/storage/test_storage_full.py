"""A full disk (or bucket) is the storage's fault, never the file's: backfill stops taking new
files, records nothing against any task, leaves no temp file or partial manifest, and exits 2;
a rerun once space is back completes. A real small filesystem (tmpfs) where one can be mounted,
and the fault injected at the write call so every CI run covers it."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
from archive_checks import LOCK_FILE, TEMP_DIR, verify_archive
from backfills import Site
from clirun import Cli
from smallfs import fill, free_bytes, mounted_tmpfs

from archiver.errors import StorageFull
from archiver.fetch import partfile
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.sandbox.cdn import FileFaults
from archiver.state.outbox import NewEvent
from archiver.state.store import StateStore
from archiver.storage import local
from archiver.tasks.taskstate import Phase, TaskState

TASKS = [fake_hex_id(f"full:{n}") for n in range(3)]


@pytest.fixture
def site(site: Site) -> Site:
    """The shared backfill site, its stand-in API serving TASKS."""
    for task in TASKS:
        site.sb.add_music(task)
    return site


def leftovers(archive: Path) -> list[str]:
    temp = archive / TEMP_DIR
    return sorted(p.name for p in temp.iterdir() if p.name != LOCK_FILE) if temp.exists() else []


def assert_nothing_recorded(site: Site) -> None:
    """Every task is still pending as if never tried, with no manifest and no temp file."""
    with StateStore.open(site.state) as state:
        for task in state.get_many(TASKS).values():
            assert task.phase is Phase.PENDING
            assert (task.attempts, task.archive_attempts, task.last_error) == (0, 0, None)
    assert not list(site.archive.glob("*/manifest.json"))
    assert leftovers(site.archive) == []


def enospc(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_download_meeting_enospc_stops_backfill_and_a_rerun_completes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partfile.Part, "_write", enospc)

    report = await site.backfill(*TASKS)

    assert isinstance(report.stopped, StorageFull)
    assert str(site.archive) in str(report.stopped) and "free" in str(report.stopped)
    assert_nothing_recorded(site)

    monkeypatch.undo()
    report = await site.backfill()
    assert report.stopped is None and report.complete
    assert set(verify_archive(site.archive)) == set(TASKS)


async def test_a_manifest_meeting_enospc_is_not_written_and_a_rerun_completes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The manifest's folder is synced only when a manifest is published (see local.py).
    fsync = local._fsync_path
    monkeypatch.setattr(
        local, "_fsync_path", lambda p: enospc() if Path(p).name in TASKS else fsync(p)
    )

    report = await site.backfill(*TASKS)

    assert isinstance(report.stopped, StorageFull)
    assert_nothing_recorded(site)

    monkeypatch.undo()
    report = await site.backfill()
    assert report.complete
    assert set(verify_archive(site.archive)) == set(TASKS)


async def test_the_state_meeting_a_full_disk_stops_backfill(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object) -> None:
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        raise error

    real_save = StateStore.save

    def save(
        self: StateStore,
        task: TaskState,
        event: NewEvent | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        if task.phase is Phase.ARCHIVED:
            full()
        real_save(self, task, event, owner=owner)

    monkeypatch.setattr(StateStore, "save", save)

    report = await site.backfill(*TASKS)

    assert isinstance(report.stopped, StorageFull)
    assert "task state" in str(report.stopped)
    monkeypatch.undo()
    assert (await site.backfill()).complete


# --- a real small filesystem ----------------------------------------------------------------


async def test_a_full_tmpfs_exits_2_with_one_line_and_a_rerun_after_freeing_space_completes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    for task in TASKS:
        sandbox.add_music(task, seconds=20.0)
    cli = Cli(sandbox, tmp_path)
    cli.write_config("[storage]\nmin_free_bytes = 0\n")
    with mounted_tmpfs(cli.archive, 4 << 20) as archive:
        ballast = fill(archive)

        result = await cli.run("backfill", str(cli.ids(*TASKS)))

        assert result.code == 2, result
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
        assert len(errors) == 1, result.stderr
        assert str(archive) in errors[0] and "free" in errors[0]
        assert "run the same backfill again" in errors[0]
        events = [json.loads(line) for line in result.stderr.splitlines() if line[:1] == "{"]
        assert not [e for e in events if e["event"] == "file_unobtainable"]
        assert not list(archive.glob("*/manifest.json"))
        assert leftovers(archive) == []

        ballast.unlink()
        again = await cli.run("backfill", str(cli.ids(*TASKS)))
        assert again.code == 0, again
        assert set(verify_archive(archive)) == set(TASKS)


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "streamed"])
async def test_the_reserve_is_never_eaten_into(site: Site, sized: bool) -> None:
    """storage.min_free_bytes: a download that would leave less free waits as for a full disk,
    judged by its Content-Length, or as it streams when it has none."""
    if not sized:
        for name in list(site.sb.cdn._files):
            site.sb.cdn.set_faults(name, FileFaults(no_content_length=True))
    with mounted_tmpfs(site.archive, 8 << 20) as archive:
        site.min_free_bytes = free_bytes(archive) - 1024  # less than any file of the tasks
        before = free_bytes(archive)

        report = await site.backfill(*TASKS)

        assert isinstance(report.stopped, StorageFull)
        assert "storage.min_free_bytes" in str(report.stopped)
        assert_nothing_recorded(site)
        assert free_bytes(archive) >= before - 4096  # a folder's block at most

        site.min_free_bytes = 1 << 20
        assert (await site.backfill()).complete
        assert set(verify_archive(archive)) == set(TASKS)
