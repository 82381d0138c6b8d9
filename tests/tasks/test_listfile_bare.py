"""Pieces of a list whose lines are each a bare ID are staged in one statement, without a
Python object an ID: the tasks, their order, kinds and the conflicts' line numbers are
exactly those parsing every line gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.state.given import GivenTasks
from archiver.state.store import StateStore
from archiver.tasks.listfile import CHUNK_BYTES, ListFile
from archiver.tasks.tasklist import BadLine, bare_ids_json, tasks_of

ID = "{:032x}".format


async def given_by(path: Path, state: StateStore, *, bare: bool) -> tuple[list, list]:
    given = GivenTasks(state)
    bad: list[BadLine] = []
    given.stage((), first=True)
    await ListFile(path).read(
        lambda items: given.stage(tasks_of(items, bad)), given.stage_bare if bare else None
    )
    merged = given.merge(whole=True, now=1.0)
    bad.extend(c.as_bad_line() for c in merged.conflicts)
    rows = state.connection.execute("SELECT task_id, kind FROM given ORDER BY pos").fetchall()
    return rows, sorted((b.line_no, b.text, b.reason) for b in bad)


@pytest.mark.parametrize(
    "tail",
    [
        b"",
        b"music:" + ID(3).encode() + b"\n",  # a prefix for a bare ID given earlier
        b"lyrics:" + ID(5).encode() + b"\n# note\n\n  " + ID(7).encode() + b"  \r\nbad id\n",
        b"\xef\xbb\xbf" + ID(9).encode(),  # not at the start: a bad line; no final newline
    ],
)
async def test_bare_pieces_give_what_parsing_gives(tmp_path: Path, tail: bytes) -> None:
    ids = [ID(n % 40_000) for n in range(2 * CHUNK_BYTES // 33)]  # repeats, several pieces
    lines = "".join(f"{i}\n" for i in ids).encode()
    path = tmp_path / "tasks.txt"
    path.write_bytes(lines + b"music:" + ID(5).encode() + b"\n" + lines[:330] + tail)
    with (
        StateStore.open(tmp_path / "a.sqlite3") as fast,
        StateStore.open(tmp_path / "b.sqlite3") as slow,
    ):
        assert await given_by(path, fast, bare=True) == await given_by(path, slow, bare=False)


def test_only_bare_lines_ending_in_lf_are_taken() -> None:
    assert bare_ids_json(b"") == "[]"
    assert bare_ids_json(b"ab\ncd_-9\n") == '["ab","cd_-9"]'
    for data in (b"ab", b"ab\r\n", b"\xef\xbb\xbfab\n", b"music:ab\n", b" ab\n", b"\n", b"#\n"):
        assert bare_ids_json(data) is None
    assert bare_ids_json(b"a" * 128 + b"\n") is not None
    assert bare_ids_json(b"a" * 129 + b"\n") is None
