"""The task-list format (SPEC "Task list"): one `ID` or `KIND:ID` a line (`music:ID`, …).

Blank lines and `#` comments are ignored, surrounding spaces trimmed; a bad line is reported
with its number and skipped, never fatal. Lines are parsed one at a time as they are read, so
a list of a million IDs is never held whole; which mention of an ID counts (the same ID twice
is archived once, a later prefix settles a bare ID) is decided where every mention meets,
in `archiver.given`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from archiver.errors import UsageError
from archiver.kinds import PREFIXES
from archiver.kinds.records import Kind, is_id

_EXPECTED = ", ".join(f'"{prefix}:"' for prefix in PREFIXES)
_BOM = b"\xef\xbb\xbf"
# Lines that are each a bare task ID ending in LF: what `parse_lines` gives for them is
# known without parsing them one by one (no BOM, CR, space, comment, prefix or bad line).
_BARE_LINES = re.compile(rb"(?:[A-Za-z0-9_-]{1,128}\n)*")


@dataclass(frozen=True, slots=True)
class TaskRef:
    task_id: str
    kind: Kind | None  # None: the archiver finds out which endpoint knows the ID
    line: int = field(default=0, compare=False)  # where the list names it (0: not from a list)


@dataclass(frozen=True)
class BadLine:
    line_no: int
    text: str
    reason: str


def parse_lines(raw_lines: Iterable[bytes], *, first_line: int = 1) -> Iterator[TaskRef | BadLine]:
    """Each task and each bad line of `raw_lines` (as a binary file yields them, each but the
    last ending in b"\\n"), numbered from `first_line`, which is 1 at the file's start (where
    a byte-order mark is dropped).

    Lines end as in an editor, at CR, LF or CRLF: not at the form feeds, NELs and U+2028s
    str.splitlines() also splits at, which would accept a mangled line as several IDs and
    misnumber the lines after it. A byte that is not UTF-8 spoils only its own line."""
    line_no = first_line - 1
    for raw in raw_lines:
        if line_no == 0 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        raw = raw.removesuffix(b"\n")
        parts = raw.removesuffix(b"\r").split(b"\r") if b"\r" in raw else (raw,)
        for part in parts:
            line_no += 1
            line = part.decode("utf-8", errors="replace").strip()
            if not line or line.startswith("#"):
                continue
            ref, reason = _parse_line(line, line_no)
            yield ref if ref is not None else BadLine(line_no, line, reason)


@dataclass(frozen=True)
class TaskList:
    tasks: tuple[TaskRef, ...]  # as listed: the same ID may come twice (`archiver.given`)
    bad_lines: tuple[BadLine, ...]


def parse_text(text: str) -> TaskList:
    """The tasks and bad lines of a short text held in memory (a body posted to the intake)."""
    bad: list[BadLine] = []
    tasks = tuple(tasks_of(parse_lines(text.encode().splitlines(keepends=True)), bad))
    return TaskList(tasks, tuple(bad))


def tasks_of(items: Iterable[TaskRef | BadLine], bad: list[BadLine]) -> Iterator[TaskRef]:
    """The tasks among `items`; the bad lines go to `bad`."""
    for item in items:
        if isinstance(item, TaskRef):
            yield item
        else:
            bad.append(item)


def _parse_line(line: str, line_no: int) -> tuple[TaskRef | None, str]:
    kind: Kind | None = None
    task_id = line
    prefix, colon, rest = line.partition(":")
    if colon:
        kind = PREFIXES.get(prefix.strip().lower())
        if kind is None:
            return None, f"unknown prefix (expected one of {_EXPECTED})"
        task_id = rest.strip()
    if not is_id(task_id):
        return None, "not a task ID (1-128 of A-Z a-z 0-9 _ -)"
    return TaskRef(task_id, kind, line_no), ""


def bare_ids_json(data: bytes) -> str | None:
    """The IDs of `data` as a JSON array when every line of it is a bare ID ending in LF,
    else None. The check and the array are each one pass in C over the whole text."""
    if not _BARE_LINES.fullmatch(data):
        return None
    if not data:
        return "[]"
    return '["' + data[:-1].decode("ascii").replace("\n", '","') + '"]'


def open_task_list(path: Path) -> BinaryIO:
    """The file at `path`, open for reading; a missing or unreadable one is a UsageError
    naming it."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: task list not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: task list is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read task list: {exc.strerror or exc}") from None
