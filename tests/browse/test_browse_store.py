"""The view rows in the state, each in a shard for good, and the shard files written from
them: a write renders only the shards whose rows changed (new tasks: the newest; a task
archived again: its own), then the table of shards, which names only shards already stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browsefiles import call, page_tasks, table
from manifestdocs import music, track
from smallfs import mounted_tmpfs

from archiver.browse import indexer as indexer_module
from archiver.browse.dialect import open_snapshot, view_store
from archiver.browse.indexer import CLOCK_MARGIN_S, Indexer, Written
from archiver.browse.view import ViewRow
from archiver.errors import StorageError, StorageFull
from archiver.kinds.records import Kind
from archiver.state.protocol import Store
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage
from archiver.tasks.manifest import encode_manifest
from archiver.tasks.taskstate import Phase, TaskState

NOW = 1_767_225_600.0  # the table's "listed" date: fixed, so that two writes can be compared
SHARD = 4  # tasks a shard holds here


def row(task_id: str, when: str, *, tracks: int = 1, lyrics: str = "[]") -> ViewRow:
    m3u = "".join(f"#EXTINF:3,{task_id} {n}\n{task_id}/{n}.mp3\n" for n in range(tracks))
    data = f'{{"i":"{task_id}","w":"{when}","é":"ü"}}'
    return ViewRow(task_id, when, data, lyrics, m3u, f"{task_id} ü", tracks)


def every_row(state: Store) -> list[ViewRow]:
    """Every row, in the page's order: the newest shard first, newest first in each."""
    db = open_snapshot(state)
    try:
        db.begin()
        return [r for s in db.shards() for r in db.shard_rows(s)]
    finally:
        db.close()


def marks(archive: Path) -> dict[str, tuple[int, int]]:
    """Each browse file's (inode, mtime): a file written again gets a new inode (a rename)."""
    return {
        str(p.relative_to(archive)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for folder in ("browse", "playlists")
        for p in (archive / folder).rglob("*")
        if p.is_file()
    }


@dataclass
class Site:
    state: Store
    storage: LocalStorage
    archive: Path

    @property
    def views(self) -> Any:
        return view_store(self.state)

    def indexer(self) -> Indexer:
        return Indexer(
            self.state, self.storage, clock=lambda: NOW, version="test", shard_tasks=SHARD
        )

    def put(self, *rows: ViewRow) -> None:
        self.views.put([(r, 1.0) for r in rows], shard_tasks=SHARD)

    async def write(self) -> tuple[Written, set[str]]:
        """Write what changed (a new indexer each time: what was written lives in the state),
        check the files against the rows; return what was written and the files written."""
        before = marks(self.archive) if (self.archive / "browse").exists() else {}
        written = await self.indexer().write()
        rows = every_row(self.state)
        assert [t["i"] for t in page_tasks(self.archive)] == [r.task_id for r in rows]
        assert (written.tasks, written.tracks) == (len(rows), sum(r.tracks for r in rows))
        after = marks(self.archive)
        return written, {name for name, mark in after.items() if before.get(name) != mark}


@pytest.fixture
async def site(tmp_path: Path, any_store: Store) -> AsyncIterator[Site]:
    """On each store: the view's questions are asked in SQLite's and PostgreSQL's SQL."""
    storage = LocalStorage(tmp_path / "archive")
    yield Site(any_store, storage, tmp_path / "archive")
    await storage.close()


def dated(prefix: str, days: range) -> Iterator[ViewRow]:
    return (row(f"{prefix}{d}", f"2025-01-{d:02d}T00:00:00Z", tracks=d % 3) for d in days)


def shard_files(*shards: int) -> set[str]:
    return {
        f"{folder}/{n:05d}.{ext}"
        for n in shards
        for folder, ext in (("browse/t", "js"), ("browse/s", "js"), ("playlists", "m3u8"))
    }


async def test_new_tasks_rewrite_only_the_newest_shard_and_the_table(site: Site) -> None:
    site.put(*dated("a", range(1, 11)))  # 10 tasks: shards of 4, 4 and 2
    written, files = await site.write()
    assert (written.shards, files) == (3, shard_files(0, 1, 2) | {"browse/shards.js"})
    assert [s[2] for s in table(site.archive)["shards"]] == [4, 4, 2]

    site.put(*dated("b", range(11, 14)))  # fills the newest shard, opens one more
    written, files = await site.write()
    assert (written.shards, files) == (2, shard_files(2, 3) | {"browse/shards.js"})
    assert [s[2] for s in table(site.archive)["shards"]] == [4, 4, 4, 1]

    written, files = await site.write()  # nothing changed: only the table (its date)
    assert (written.shards, files) == (0, {"browse/shards.js"})


async def test_a_task_archived_again_rewrites_only_its_own_shard(site: Site) -> None:
    site.put(*dated("a", range(1, 11)))
    await site.write()
    versions = [s[1] for s in table(site.archive)["shards"]]

    site.put(row("a2", "2025-01-02T00:00:00Z", tracks=2))  # in the oldest shard: stays there
    written, files = await site.write()
    assert (written.shards, files) == (1, shard_files(0) | {"browse/shards.js"})
    assert [s[1] for s in table(site.archive)["shards"]] == [versions[0] + 1, *versions[1:]]

    site.views.put([], drop=["a6"], shard_tasks=SHARD)  # its manifest is gone
    written, files = await site.write()
    assert (written.shards, files) == (1, shard_files(1) | {"browse/shards.js"})
    assert [s[2] for s in table(site.archive)["shards"]] == [4, 3, 2]


async def test_an_old_task_new_to_the_state_goes_to_the_newest_shard(site: Site) -> None:
    site.put(*dated("a", range(5, 9)))
    site.put(row("z", "2024-12-31T00:00:00Z"))  # archived later, created earlier
    written, _files = await site.write()
    assert [r.task_id for r in every_row(site.state)] == ["z", "a8", "a7", "a6", "a5"]
    assert written.shards == 2


async def test_the_table_never_names_a_shard_not_stored(site: Site) -> None:
    site.put(*dated("a", range(1, 5)))
    await site.write()
    (site.archive / "browse" / "t" / "00001.js").mkdir(parents=True)  # cannot be replaced
    site.put(*dated("b", range(5, 7)))
    with pytest.raises(StorageError):
        await site.indexer().write()
    assert [s[0] for s in table(site.archive)["shards"]] == [0]  # the table as it was
    assert [p.name for p in site.storage.temp_dir.iterdir()] == [".suno-archiver.lock"]

    (site.archive / "browse" / "t" / "00001.js").rmdir()
    written, files = await site.write()  # still due: written now
    assert written.shards == 1 and shard_files(1) <= files
    assert [s[0] for s in table(site.archive)["shards"]] == [0, 1]


async def test_the_lyrics_go_with_their_shard(site: Site) -> None:
    site.put(row("a", "2025-01-01T00:00:00Z", lyrics='["la la"]'), row("b", "2025-01-02"))
    await site.write()
    shard, tasks, lyrics = call(site.archive / "browse" / "t" / "00000.js", "tasks")
    assert (shard, [t["i"] for t in tasks], lyrics) == (0, ["b", "a"], [[], ["la la"]])


async def test_view_rows_follow_their_task_and_come_back_newest_first(site: Site) -> None:
    store, views = site.state, site.views
    store.add([("old", Kind.MUSIC), ("new", Kind.MUSIC), ("waiting", None)], now=1.0)
    for task_id in ("old", "new"):
        store.save(TaskState(task_id, Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, 2.0))
    assert sorted(views.stale([Phase.ARCHIVED])) == [("new", 2.0), ("old", 2.0)]

    rows = {t: row(t, f"2025-0{n}") for n, t in ((1, "old"), (2, "new"))}
    views.put([(rows["old"], 2.0), (rows["new"], 2.0)], shard_tasks=SHARD)
    assert views.stale([Phase.ARCHIVED]) == []
    assert every_row(store) == [rows["new"], rows["old"]]

    store.save(TaskState("old", Kind.MUSIC, Phase.ARCHIVED, 1.0, 1.0, 1, 0, None, None, 3.0))
    assert views.stale([Phase.ARCHIVED]) == [("old", 3.0)]  # changed since: read again
    assert views.stale([Phase.ARCHIVED], changed_since=3.0) == [("old", 3.0)]
    assert views.stale([Phase.ARCHIVED], changed_since=3.5) == []  # looked at before
    views.put([], drop=["old"], shard_tasks=SHARD)
    assert every_row(store) == [rows["new"]]
    views.put([(rows["old"], 3.0)], replace_all=True, shard_tasks=SHARD)
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
    assert (written.tasks, written.read, written.shards) == (5, 5, 2)
    assert [r.task_id for r in every_row(site.state)] == ids[::-1]  # archival order
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


async def test_a_full_disk_fails_the_write_as_storage_full_and_leaves_the_files(
    tmp_path: Path,
) -> None:
    """A temp folder that fills up is the storage's "full", which `run` logs; the files
    already there stay as they were, and the table names no shard not stored."""
    with (
        mounted_tmpfs(tmp_path / "small", 256 * 1024) as small,
        StateStore.open(tmp_path / "state.sqlite3") as state,
    ):
        storage = LocalStorage(small)
        try:
            site = Site(state, storage, small)
            site.put(*dated("a", range(1, 4)))
            await site.write()
            before = table(small)
            big = "[" + ",".join(['"' + "x" * 1000 + '"'] * 100) + "]"  # 100 KB of lyrics
            site.put(*(row(f"b{n}", "2026-01-01T00:00:00Z", lyrics=big) for n in range(8)))
            with pytest.raises(StorageFull):
                await site.indexer().write()
            assert [s[0] for s in table(small)["shards"]] == [s[0] for s in before["shards"]]
            assert [p.name for p in storage.temp_dir.iterdir()] == [".suno-archiver.lock"]
        finally:
            await storage.close()
