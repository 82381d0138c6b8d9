"""The task-list format (SPEC "Task list"): what is a task, what is reported, what is ignored.

A list is read as the daemon and backfill read it: each line parsed as it is read
(`parse_lines`), every mention merged in the state's given set (`GivenTasks`), which decides
which mention of an ID counts.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.errors import UsageError
from archiver.kinds.records import Kind
from archiver.state.given import GivenTasks
from archiver.state.store import StateStore
from archiver.tasks.tasklist import BadLine, TaskRef, open_task_list, parse_lines, tasks_of

NOT_AN_ID = "not a task ID"


@dataclass(frozen=True)
class TaskList:
    tasks: tuple[TaskRef, ...]
    bad_lines: tuple[BadLine, ...]


def given_refs(state: StateStore) -> tuple[TaskRef, ...]:
    """The given set, in the order given."""
    rows = state.connection.execute("SELECT task_id, kind FROM given ORDER BY pos")
    return tuple(TaskRef(task_id, Kind(kind) if kind else None) for task_id, kind in rows)


def read_into(state: StateStore, raw: bytes) -> TaskList:
    """Read `raw` as a whole list into a fresh given set of `state`."""
    bad: list[BadLine] = []
    given = GivenTasks(state)
    given.stage(tasks_of(parse_lines(io.BytesIO(raw)), bad))
    merged = given.merge(whole=True, now=1.0)
    bad.extend(c.as_bad_line() for c in merged.conflicts)
    return TaskList(given_refs(state), tuple(sorted(bad, key=lambda line: line.line_no)))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state.sqlite3") as store:
        yield store


@pytest.fixture
def parse_task_list(state: StateStore) -> Callable[[str], TaskList]:
    return lambda text: read_into(state, text.encode())


def read_task_list(state: StateStore, path: Path) -> TaskList:
    with open_task_list(path) as file:
        return read_into(state, file.read())


def refs(tasklist: TaskList) -> list[tuple[str, Kind | None]]:
    return [(ref.task_id, ref.kind) for ref in tasklist.tasks]


def bad(tasklist: TaskList) -> list[tuple[int, str]]:
    return [(line.line_no, line.text) for line in tasklist.bad_lines]


def test_blank_lines_comments_and_surrounding_spaces_are_ignored(
    parse_task_list: Callable[[str], TaskList],
) -> None:
    text = "\n   \n\t\n# a comment\n   # an indented one\n  abc  \n\tdef\t\n#ghi\n"

    tasklist = parse_task_list(text)

    assert refs(tasklist) == [("abc", None), ("def", None)]
    assert tasklist.bad_lines == ()


def test_an_empty_list(parse_task_list: Callable[[str], TaskList]) -> None:
    assert parse_task_list("") == TaskList((), ())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("music:abc", TaskRef("abc", Kind.MUSIC)),
        ("cover:abc", TaskRef("abc", Kind.COVER)),
        ("MUSIC:abc", TaskRef("abc", Kind.MUSIC)),
        ("Cover:abc", TaskRef("abc", Kind.COVER)),
        ("  music : abc  ", TaskRef("abc", Kind.MUSIC)),
        ("abc", TaskRef("abc", None)),
        ("Ab_9-z", TaskRef("Ab_9-z", None)),
    ],
)
def test_a_task_line(
    line: str, expected: TaskRef, parse_task_list: Callable[[str], TaskList]
) -> None:
    assert parse_task_list(line) == TaskList((expected,), ())


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("video:abc", "unknown prefix"),
        ("musics:abc", "unknown prefix"),
        (":abc", "unknown prefix"),
        ("music:", NOT_AN_ID),
        ("music:a:b", NOT_AN_ID),
        ("abc # a comment after the ID", NOT_AN_ID),
    ],
)
def test_a_bad_line_says_why(
    line: str, reason: str, parse_task_list: Callable[[str], TaskList]
) -> None:
    tasklist = parse_task_list(f"ok1\n{line}\nok2\n")

    assert refs(tasklist) == [("ok1", None), ("ok2", None)]
    assert bad(tasklist) == [(2, line)]
    assert reason in tasklist.bad_lines[0].reason


@pytest.mark.parametrize(
    ("task_id", "ok"),
    [("a", True), ("x" * 128, True), ("x" * 129, False), ("music:" + "y" * 129, False)],
    ids=["1", "128", "129", "prefixed-129"],
)
def test_id_length(task_id: str, ok: bool, parse_task_list: Callable[[str], TaskList]) -> None:
    tasklist = parse_task_list(task_id)

    assert refs(tasklist) == ([(task_id, None)] if ok else [])
    assert bad(tasklist) == ([] if ok else [(1, task_id)])


@pytest.mark.parametrize(
    "line",
    [
        "../x",
        "..",
        ".",
        "a/b",
        "/etc/passwd",
        "a\\b",
        "C:\\x",
        "a\x00b",
        "music:../x",
        "cover:a/b",
        "music:.",
        "a b",
        "caf\u00e9",
        "\u0661\u0662",  # Arabic-Indic digits: str.isdigit(), but not 0-9
        "abc\ufffd",
    ],
)
def test_a_path_like_or_foreign_id_is_rejected_with_its_line_number(
    line: str, parse_task_list: Callable[[str], TaskList]
) -> None:
    tasklist = parse_task_list(f"# header\nok1\n{line}\nmusic:ok2\n")

    assert refs(tasklist) == [("ok1", None), ("ok2", Kind.MUSIC)]
    assert bad(tasklist) == [(3, line)]


def test_the_same_id_twice_is_listed_once_first_wins(
    parse_task_list: Callable[[str], TaskList],
) -> None:
    tasklist = parse_task_list("a\nb\na\n  a  \nmusic:c\nmusic:c\nMUSIC:c\n")

    assert refs(tasklist) == [("a", None), ("b", None), ("c", Kind.MUSIC)]
    assert tasklist.bad_lines == ()


def test_a_later_prefix_settles_a_bare_id_in_its_first_place(
    parse_task_list: Callable[[str], TaskList],
) -> None:
    tasklist = parse_task_list("x\ny\ncover:x\nx\n")

    assert refs(tasklist) == [("x", Kind.COVER), ("y", None)]
    assert tasklist.bad_lines == ()


def test_a_bare_id_after_a_prefixed_one_changes_nothing(
    parse_task_list: Callable[[str], TaskList],
) -> None:
    tasklist = parse_task_list("music:x\nx\n")

    assert refs(tasklist) == [("x", Kind.MUSIC)]
    assert tasklist.bad_lines == ()


@pytest.mark.parametrize(
    ("text", "kind", "line_no"),
    [("music:x\ncover:x\n", Kind.MUSIC, 2), ("x\ncover:x\nmusic:x\n", Kind.COVER, 3)],
)
def test_the_same_id_as_music_and_cover_reports_the_second(
    text: str, kind: Kind, line_no: int, parse_task_list: Callable[[str], TaskList]
) -> None:
    tasklist = parse_task_list(text)

    assert refs(tasklist) == [("x", kind)]
    assert [line.line_no for line in tasklist.bad_lines] == [line_no]
    assert tasklist.bad_lines[0].reason == f"already listed as {kind.value}"


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_endings(newline: str, parse_task_list: Callable[[str], TaskList]) -> None:
    text = newline.join(["a", "music:b", "", "# c", "bad line", "d"]) + newline

    tasklist = parse_task_list(text)

    assert refs(tasklist) == [("a", None), ("b", Kind.MUSIC), ("d", None)]
    assert bad(tasklist) == [(5, "bad line")]


@pytest.mark.parametrize("inside", ["\x0c", "\x0b", "\x1c", "\x85", "\u2028"])
def test_only_cr_and_lf_end_a_line(inside: str, parse_task_list: Callable[[str], TaskList]) -> None:
    """A form feed or NEL inside a line spoils that line; it does not split it in two."""
    tasklist = parse_task_list(f"a{inside}b\nbad line\nc\n")

    assert refs(tasklist) == [("c", None)]
    assert bad(tasklist) == [(1, f"a{inside}b"), (2, "bad line")]


def test_read_a_file_with_a_byte_order_mark_and_crlf(tmp_path: Path, state: StateStore) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"\xef\xbb\xbfmusic:abc\r\n# comment\r\ndef\r\n")

    tasklist = read_task_list(state, path)

    assert refs(tasklist) == [("abc", Kind.MUSIC), ("def", None)]
    assert tasklist.bad_lines == ()


def test_a_byte_that_is_not_utf8_spoils_only_its_line(tmp_path: Path, state: StateStore) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"good1\nba\xffd\n\xe2\ngood2\ncaf\xe9\n")

    tasklist = read_task_list(state, path)

    assert refs(tasklist) == [("good1", None), ("good2", None)]
    assert bad(tasklist) == [(2, "ba\ufffdd"), (3, "\ufffd"), (5, "caf\ufffd")]


def test_a_missing_task_list_is_a_usage_error_naming_it(tmp_path: Path, state: StateStore) -> None:
    path = tmp_path / "nope.txt"

    with pytest.raises(UsageError, match=r"nope\.txt: task list not found"):
        read_task_list(state, path)


def test_a_directory_is_a_usage_error_naming_it(tmp_path: Path, state: StateStore) -> None:
    with pytest.raises(UsageError, match=f"{tmp_path}: task list is a directory"):
        read_task_list(state, tmp_path)


def test_a_hundred_thousand_lines(parse_task_list: Callable[[str], TaskList]) -> None:
    kinds = ["{n:032x}", "music:{p:032x}", "not an id", "# comment"] + ["{n:032x}"] * 6
    text = "\n".join(kinds[n % 10].format(n=n, p=n - 1) for n in range(100_000))

    tasklist = parse_task_list(text)  # well under a second

    assert len(tasklist.tasks) == 70_000
    assert tasklist.tasks[0] == TaskRef(f"{0:032x}", Kind.MUSIC)  # settled by the next line
    assert len(tasklist.bad_lines) == 10_000
    assert tasklist.bad_lines[-1].line_no == 99_993
