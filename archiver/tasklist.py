"""The task-list format (SPEC "Task list"): one `ID` or `KIND:ID` a line (`music:ID`, …).

Blank lines and `#` comments are ignored, surrounding spaces trimmed; a bad line is reported
with its number and skipped, never fatal; the same ID twice is archived once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from archiver.errors import UsageError
from archiver.kinds import PREFIXES
from archiver.records import Kind, is_id

# Lines end as in an editor: not at the form feeds, NELs and U+2028s str.splitlines() also
# splits at, which would accept a mangled line as several IDs and misnumber the lines after it.
_LINE_END = re.compile(r"\r\n?|\n")
_EXPECTED = ", ".join(f'"{prefix}:"' for prefix in PREFIXES)


@dataclass(frozen=True, slots=True)
class TaskRef:
    task_id: str
    kind: Kind | None  # None: the archiver finds out which endpoint knows the ID


@dataclass(frozen=True)
class BadLine:
    line_no: int
    text: str
    reason: str


@dataclass(frozen=True)
class TaskList:
    tasks: tuple[TaskRef, ...]
    bad_lines: tuple[BadLine, ...]


def parse_task_list(text: str) -> TaskList:
    """Every task in file order, first mention wins; and every line that is not one."""
    tasks: dict[str, TaskRef] = {}
    bad: list[BadLine] = []
    for line_no, raw in enumerate(_LINE_END.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ref, reason = _parse_line(line)
        if ref is None:
            bad.append(BadLine(line_no, line, reason))
            continue
        seen = tasks.get(ref.task_id)
        if seen is None or (seen.kind is None and ref.kind is not None):
            tasks[ref.task_id] = ref  # a later `music:ID` settles what a bare ID left open
        elif ref.kind is not None and seen.kind is not ref.kind:
            bad.append(BadLine(line_no, line, f"already listed as {seen.kind.value}"))
    return TaskList(tuple(tasks.values()), tuple(bad))


def _parse_line(line: str) -> tuple[TaskRef | None, str]:
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
    return TaskRef(task_id, kind), ""


def read_task_list(path: Path) -> TaskList:
    """Parse the file at `path`; a missing or unreadable file is a UsageError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: task list not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: task list is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read task list: {exc.strerror or exc}") from None
    # A byte that is not UTF-8 spoils only its own line, which is then reported as bad.
    return parse_task_list(data.decode("utf-8-sig", errors="replace"))
