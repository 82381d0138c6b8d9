"""The watched list read incrementally: whatever happens to the file, the tasks given are
exactly those a whole reread of it gives; an append is read as an append (only the new
bytes), anything else whole."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.kinds.records import Kind
from archiver.state.given import GivenTasks
from archiver.state.store import StateStore
from archiver.tasks.listfile import CHUNK_BYTES, ListFile
from archiver.tasks.tasklist import BadLine, TaskRef, parse_lines, tasks_of

ID = "{:032x}".format


class Follower:
    """A ListFile feeding a given set, as the daemon's watcher does."""

    def __init__(self, path: Path, state: StateStore) -> None:
        self.file = ListFile(path)
        self.given = GivenTasks(state)
        self.state = state
        self.bad: list[BadLine] = []
        self.bytes_read = 0

    async def read(self) -> bool:
        """Read what changed; True when it was read whole."""
        self.bad = []

        def feed(items: Iterator[TaskRef | BadLine]) -> None:
            self.given.stage(tasks_of(items, self.bad))

        self.given.stage((), first=True)
        whole = await self.file.read(feed)
        merged = self.given.merge(whole=whole, now=1.0)
        self.bad.extend(c.as_bad_line() for c in merged.conflicts)
        self.file.commit()
        return whole

    def tasks(self) -> list[tuple[str, Kind | None]]:
        rows = self.state.connection.execute("SELECT task_id, kind FROM given ORDER BY pos")
        return [(task_id, Kind(kind) if kind else None) for task_id, kind in rows]


def whole_read(raw: bytes, state: StateStore) -> list[tuple[str, Kind | None]]:
    """The tasks a whole read of `raw` gives."""
    given = GivenTasks(state)
    given.stage(tasks_of(parse_lines(io.BytesIO(raw)), []), first=True)
    given.merge(whole=True, now=1.0)
    rows = state.connection.execute("SELECT task_id, kind FROM given ORDER BY pos")
    return [(task_id, Kind(kind) if kind else None) for task_id, kind in rows]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.txt"


@pytest.fixture
def follower(tmp_path: Path, path: Path) -> Iterator[Follower]:
    with StateStore.open(tmp_path / "state.sqlite3") as state:
        yield Follower(path, state)


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "reference.sqlite3") as state:
        yield state


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


async def test_appends_are_read_as_appends(
    path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"".join(f"{ID(n)}\n".encode() for n in range(1000)))
    assert await follower.read() is True
    for n in range(1000, 1010):
        append(path, f"{ID(n)}\n".encode())
        assert await follower.read() is False
    append(path, f"music:{ID(5)}\ncover:{ID(5)}\n{ID(3)}\nnot an id\n".encode())
    assert await follower.read() is False

    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert follower.tasks()[5] == (ID(5), Kind.MUSIC)  # settled in its first place
    assert [(b.line_no, b.reason) for b in sorted(follower.bad, key=lambda b: b.line_no)] == [
        (1012, "already listed as music"),
        (1014, "not a task ID (1-128 of A-Z a-z 0-9 _ -)"),
    ]


async def test_a_partial_last_line_is_read_once_it_is_ended(
    path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"aaa\n")
    await follower.read()
    append(path, b"bb")  # half written
    assert await follower.read() is False
    assert follower.tasks() == [("aaa", None)]
    append(path, b"b_more\nccc\n")
    assert await follower.read() is False
    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert follower.tasks() == [("aaa", None), ("bbb_more", None), ("ccc", None)]


async def test_an_unterminated_line_a_whole_read_took_is_checked_when_it_grows(
    path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"aaa\nbbb")  # saved by hand without the last newline
    await follower.read()
    assert follower.tasks() == [("aaa", None), ("bbb", None)]
    append(path, b"\nccc\n")  # the line ended as it was: an append
    assert await follower.read() is False
    assert follower.tasks() == [("aaa", None), ("bbb", None), ("ccc", None)]

    path.write_bytes(b"aaa\nbbb\nddd")
    await follower.read()
    append(path, b"_more\n")  # the line it took changed: read whole, ddd is gone
    assert await follower.read() is True
    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert ("ddd", None) not in follower.tasks()


@pytest.mark.parametrize("change", ["rewrite in place", "replace by rename", "truncate", "delete"])
async def test_anything_but_an_append_is_read_whole(
    change: str, path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"aaa\nbbb\nccc\n")
    await follower.read()
    new = b"aaa\nzzz\nccc\n"  # the same size, a line changed
    if change == "rewrite in place":
        with path.open("r+b") as f:
            f.write(new)
    elif change == "replace by rename":
        tmp = path.with_suffix(".new")
        tmp.write_bytes(new + b"ddd\n")
        tmp.replace(path)
    elif change == "truncate":
        with path.open("r+b") as f:
            f.truncate(4)
    else:
        path.unlink()
        path.write_bytes(new + b"eee\n")

    assert await follower.read() is True
    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert ("bbb", None) not in follower.tasks()


async def test_an_edit_behind_the_last_read_bytes_is_read_whole(
    path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"aaa\nbbb\nccc\n")
    await follower.read()
    with path.open("r+b") as f:  # a line changed in place, and a line added
        f.write(b"aaa\nbxb\nccc\nddd\n")
    assert await follower.read() is True
    assert follower.tasks() == whole_read(path.read_bytes(), reference)


@pytest.mark.parametrize(
    ("start", "appended"),
    [
        (b"\xef\xbb\xbfmusic:aaa\r\nbbb\r\n", b"ccc\r\n\r\ncover:ddd\r\n"),  # BOM and CRLF
        (b"aaa\r", b"\nbbb\rccc\n"),  # a CR ending a line alone, then the LF of a CRLF
    ],
    ids=["bom-crlf", "split-crlf"],
)
async def test_line_endings_and_a_bom(
    start: bytes, appended: bytes, path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(start)
    await follower.read()
    append(path, appended)
    await follower.read()
    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert not follower.bad


async def test_a_10_mb_line_is_one_bad_line_in_pieces_or_whole(
    path: Path, follower: Follower, reference: StateStore
) -> None:
    path.write_bytes(b"aaa\n")
    await follower.read()
    long_line = b"x" * (10 * 1024 * 1024)
    assert len(long_line) > 4 * CHUNK_BYTES
    append(path, long_line[:3_000_000])  # written in pieces: nothing to read yet
    assert await follower.read() is False
    append(path, long_line[3_000_000:] + b"\nbbb\n")
    assert await follower.read() is False
    assert follower.tasks() == whole_read(path.read_bytes(), reference)
    assert follower.tasks() == [("aaa", None), ("bbb", None)]
    assert [(b.line_no, len(b.text)) for b in follower.bad] == [(2, len(long_line))]
