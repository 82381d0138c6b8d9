"""The view rows in the state, and index.html and playlist.m3u8 written from them: streamed in
full, or spliced (new rows, then the old rows' bytes copied from the files written last time).
Whichever way, the files are byte for byte what the whole page rendered at once would be."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from manifestdocs import music, track
from smallfs import mounted_tmpfs

from archiver.browse import draft
from archiver.browse import indexer as indexer_module
from archiver.browse.indexer import CLOCK_MARGIN_S, Indexer, Written
from archiver.browse.render import render_index, render_playlist
from archiver.browse.store import ViewStore, newest_first
from archiver.browse.view import ViewRow
from archiver.errors import StorageError, StorageFull
from archiver.kinds.records import Kind
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage
from archiver.tasks.manifest import encode_manifest
from archiver.tasks.taskstate import Phase, TaskState

NOW = 1_767_225_600.0  # the page's "listed" date: fixed, so that two writes can be compared


def row(task_id: str, when: str, *, tracks: int = 1, lyrics: str = "[]") -> ViewRow:
    m3u = "".join(f"#EXTINF:3,{task_id} {n}\n{task_id}/{n}.mp3\n" for n in range(tracks))
    data = f'{{"i":"{task_id}","w":"{when}","é":"ü"}}'  # not ASCII: offsets are bytes
    return ViewRow(task_id, when, data, lyrics, m3u, tracks)


def every_row(state: StateStore) -> list[ViewRow]:
    return [row for batch in newest_first(state.connection) for row in batch]


@dataclass
class Site:
    state: StateStore
    storage: LocalStorage
    archive: Path

    @property
    def views(self) -> ViewStore:
        return ViewStore(self.state)

    def indexer(self) -> Indexer:
        return Indexer(self.state, self.storage, clock=lambda: NOW, version="test")

    def put(self, *rows: ViewRow) -> None:
        self.views.put([(r, 1.0) for r in rows])

    async def write(self) -> Written:
        """Write both files (a new indexer each time: the layout lives in the state), and
        check them against the page rendered whole from the rows."""
        written = await self.indexer().write()
        rows = every_row(self.state)
        generated = "2026-01-01 00:00:00 UTC"
        assert (self.archive / "index.html").read_bytes() == render_index(
            rows, generated_at=generated, version="test"
        )
        assert (self.archive / "playlist.m3u8").read_bytes() == render_playlist(rows)
        assert (written.tasks, written.tracks) == (len(rows), sum(r.tracks for r in rows))
        return written


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    storage = LocalStorage(tmp_path / "archive")
    with StateStore.open(tmp_path / "state.sqlite3") as state:
        yield Site(state, storage, tmp_path / "archive")
    await storage.close()


def dated(prefix: str, days: range) -> Iterator[ViewRow]:
    return (row(f"{prefix}{d}", f"2025-01-{d:02d}T00:00:00Z", tracks=d % 3) for d in days)


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "plain"])
async def test_new_rows_newer_than_every_written_one_are_spliced(
    site: Site, kernel_copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernel_copy:  # as on a system without copy_file_range: bytes through Python
        monkeypatch.setattr(draft, "_COPY_FILE_RANGE", None)
    assert not (await site.write()).spliced  # nothing written before: in full (and empty)
    site.put(*dated("a", range(1, 4)))
    assert (await site.write()).spliced  # onto an empty page
    site.put(*dated("b", range(4, 6)))
    assert (await site.write()).spliced
    assert (await site.write()).spliced  # no new row: the counts and date are written again
    site.put(row("c", "2025-02-01T00:00:00Z", tracks=0))  # no track, no playlist line
    assert (await site.write()).spliced
    site.put(*(row(f"d{n}", "2025-03-01T00:00:00Z", lyrics=f'["{n}"]') for n in range(2500)))
    assert (await site.write()).spliced  # more than one batch of new rows


@pytest.mark.parametrize(
    "change",
    ["older row", "row replaced", "row removed", "newest row replaced", "equal to the newest"],
)
async def test_any_other_change_writes_in_full(site: Site, change: str) -> None:
    site.put(*dated("a", range(1, 10)))
    await site.write()
    if change == "older row":
        site.put(row("z", "2025-01-05T12:00:00Z"), *dated("b", range(20, 22)))
    elif change == "row replaced":
        site.put(row("a3", "2025-01-03T00:00:00Z", tracks=2))
    elif change == "row removed":
        site.views.put([], drop=["a4"])
    elif change == "newest row replaced":  # SQLite gives the new row the old rowid again
        site.put(row("a9", "2025-01-09T00:00:00Z", tracks=2))
    else:  # the same date as the newest: the order falls to the task ID
        site.put(row("a85", "2025-01-09T00:00:00Z"))  # after a9, newest first
    assert not (await site.write()).spliced
    site.put(*dated("c", range(25, 27)))
    assert (await site.write()).spliced  # and the layout is known again after it


@pytest.mark.parametrize(
    "tamper",
    ["page appended to", "page rewritten, same size", "playlist replaced", "page removed"],
)
async def test_files_changed_behind_our_back_are_written_in_full(site: Site, tamper: str) -> None:
    site.put(*dated("a", range(1, 10)))
    await site.write()
    page, playlist = site.archive / "index.html", site.archive / "playlist.m3u8"
    if tamper == "page appended to":
        with page.open("ab") as f:
            f.write(b"<!-- edited -->")
    elif tamper == "page rewritten, same size":
        data = page.read_bytes()
        page.write_bytes(data.replace(b"a5", b"x5"))
        os.utime(page, ns=(0, 1))  # an mtime the writer never saw
    elif tamper == "playlist replaced":
        (site.archive / "other.m3u8").write_bytes(playlist.read_bytes())
        (site.archive / "other.m3u8").replace(playlist)
    else:
        page.unlink()
    site.put(*dated("b", range(20, 22)))
    assert not (await site.write()).spliced


async def test_view_rows_follow_their_task_and_come_back_newest_first(site: Site) -> None:
    store, views = site.state, site.views
    store.add([("old", Kind.MUSIC), ("new", Kind.MUSIC), ("waiting", None)], now=1.0)
    for task_id in ("old", "new"):
        store.save(TaskState(task_id, Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, 2.0))
    assert sorted(views.stale([Phase.ARCHIVED])) == [("new", 2.0), ("old", 2.0)]

    rows = {t: row(t, f"2025-0{n}") for n, t in ((1, "old"), (2, "new"))}
    views.put([(rows["old"], 2.0), (rows["new"], 2.0)])
    assert views.stale([Phase.ARCHIVED]) == []
    assert every_row(store) == [rows["new"], rows["old"]]

    store.save(TaskState("old", Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, 3.0))
    assert views.stale([Phase.ARCHIVED]) == [("old", 3.0)]  # changed since: read again
    assert views.stale([Phase.ARCHIVED], changed_since=3.0) == [("old", 3.0)]
    assert views.stale([Phase.ARCHIVED], changed_since=3.5) == []  # looked at before
    views.put([], drop=["old"])
    assert every_row(store) == [rows["new"]]
    views.put([(rows["old"], 3.0)], replace_all=True)
    assert every_row(store) == [rows["old"]]


async def test_a_restart_looks_only_at_the_tasks_changed_since_the_last_look(
    site: Site,
) -> None:
    """The first look of a new state reads every task; one after a restart only the tasks
    updated since the last look (less the clock margin), not every task again."""
    state = site.state
    state.add([("gone", Kind.MUSIC), ("later", Kind.MUSIC)], now=1.0)
    state.save(TaskState("gone", Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, 2.0))
    assert await site.indexer().update_rows() == 1  # no manifest: looked at, no row
    assert await site.indexer().update_rows() == 0  # restarted: not looked at again

    state.save(TaskState("later", Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, NOW))
    assert await site.indexer().update_rows() == 1
    assert site.views.looked() == NOW - CLOCK_MARGIN_S


async def test_a_rebuild_stores_its_rows_a_chunk_at_a_time_and_one_cut_short_is_finished(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "_REBUILD_CHUNK", 2)
    ids = [f"task{n}" for n in range(5)]
    site.state.adopt(((t, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS") for t in ids), now=1.0)
    for task_id in ids:
        (site.archive / task_id).mkdir()
        doc = music(task_id=task_id, tracks=[track(1)])
        (site.archive / task_id / "manifest.json").write_bytes(encode_manifest(doc))

    written = await site.indexer().rebuild()
    assert (written.tasks, written.read) == (5, 5)
    assert sorted(r.task_id for r in every_row(site.state)) == ids
    assert site.views.looked() == NOW - CLOCK_MARGIN_S

    (site.archive / "task3" / "manifest.json").unlink()
    (site.archive / "task3" / "manifest.json").mkdir()  # unreadable: the storage fails
    with pytest.raises(StorageError):
        await site.indexer().rebuild()
    assert [r.task_id for r in every_row(site.state)] == ["task1", "task0"]  # the first chunk
    assert site.views.looked() is None  # cut short: the next look is at every task
    (site.archive / "task3" / "manifest.json").rmdir()
    assert await site.indexer().update_rows() == 3  # task2, task3 (no manifest now), task4
    assert len(every_row(site.state)) == 4


async def test_a_failed_store_leaves_no_draft_and_no_layout(site: Site) -> None:
    site.put(*dated("a", range(1, 4)))
    await site.write()
    (site.archive / "index.html").unlink()
    (site.archive / "index.html").mkdir()  # os.replace cannot put a file over a folder
    site.put(*dated("b", range(5, 7)))
    with pytest.raises(StorageError):
        await site.indexer().write()
    assert [p.name for p in site.storage.temp_dir.iterdir()] == [".suno-archiver.lock"]
    (site.archive / "index.html").rmdir()
    assert not (await site.write()).spliced


async def test_a_full_disk_fails_the_write_as_storage_full_and_leaves_the_files(
    tmp_path: Path,
) -> None:
    """The drafts are files now: a temp folder that fills up is the storage's "full", which
    `run` logs, and the last files stay as they were."""
    with (
        mounted_tmpfs(tmp_path / "small", 256 * 1024) as small,
        StateStore.open(tmp_path / "state.sqlite3") as state,
    ):
        storage = LocalStorage(small)
        try:
            site = Site(state, storage, small)
            site.put(*dated("a", range(1, 4)))
            await site.write()
            before = (small / "index.html").read_bytes()
            site.put(*(row(f"b{n}", "2026-01-01T00:00:00Z") for n in range(3000)))
            with pytest.raises(StorageFull):
                await site.indexer().write()
            assert (small / "index.html").read_bytes() == before
            assert [p.name for p in storage.temp_dir.iterdir()] == [".suno-archiver.lock"]
        finally:
            await storage.close()
