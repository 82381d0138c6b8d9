"""Reading the watched task-list file: whole, or only what was appended since the last read.

An application appends an ID a line, for years: rereading a list of a million lines for each
new one would cost the daemon seconds of CPU per ID. While the file only grows (the same
file, and the bytes read before unchanged: checked by its size and a hash of the last bytes
read), a read starts at the last complete line; anything else (a rewrite, a truncation, a
replacement by rename, a SIGHUP) reads it whole. An unterminated last line is taken by a whole
read (a list saved by hand may lack the final newline), never by an append read: it may be
half written. If a whole read took one, the next append read checks the line is still there.

The file is opened and read in a thread (it may be a FIFO or on a slow mount), in pieces that
end at a line's end; the pieces are parsed on the caller's thread (the state's).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from archiver.errors import UsageError
from archiver.tasks.tasklist import BadLine, TaskRef, open_task_list, parse_lines

CHECK_BYTES = 4096  # the bytes before the read position that must not have changed
CHUNK_BYTES = 1 << 20  # read a MiB at a time: memory stays flat whatever the list's length


@dataclass(frozen=True)
class _Mark:
    """Where a read ended: what the file must still be for the next read to be an append."""

    dev: int
    ino: int
    offset: int  # after the last complete line
    lines: int  # lines before `offset`
    check: bytes  # sha256 of the CHECK_BYTES before `offset`
    tail: bytes  # an unterminated last line a whole read took ("" for none)


def _line_count(complete: bytes) -> int:
    """Lines in `complete` (which ends at a line's end), counted as `parse_lines` does."""
    return complete.count(b"\n") + complete.count(b"\r") - complete.count(b"\r\n")


def _digest(file: BinaryIO, offset: int) -> bytes:
    """The hash of the CHECK_BYTES before `offset`; b"" when the file cannot be read at an
    offset (a FIFO): it is then always read whole."""
    start = max(0, offset - CHECK_BYTES)
    try:
        return hashlib.sha256(os.pread(file.fileno(), offset - start, start)).digest()
    except OSError:
        return b""


class ListFile:
    """One task-list file and where its last read ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mark: _Mark | None = None
        self._next: _Mark | None = None

    def forget(self) -> None:
        """Read the file whole next time."""
        self._mark = None

    def commit(self) -> None:
        """What the last `read` gave was applied: the next read continues after it."""
        self._mark = self._next

    async def read(
        self,
        feed: Callable[[Iterable[TaskRef | BadLine]], None],
        feed_bare: Callable[[bytes, int], bool] | None = None,
    ) -> bool:
        """Feed the lines that are new since the last committed read to `feed`, a piece at
        a time; True when the file was read whole (its lines are then the whole list).
        `feed_bare` is offered each piece first, with its first line's number: when it takes
        it (True), the piece is not parsed. Raises UsageError when the file cannot be read."""
        file, whole = await asyncio.to_thread(self._open)
        try:
            return await self._read(file, whole, feed, feed_bare)
        finally:
            file.close()

    def _open(self) -> tuple[BinaryIO, bool]:
        """The file positioned where reading starts, and whether that is its start."""
        file = open_task_list(self.path)
        try:
            mark = self._mark
            if mark is not None and self._grew(file, mark):
                file.seek(mark.offset)
                return file, False
            return file, True
        except OSError as exc:
            file.close()
            raise UsageError(f"{self.path}: cannot read task list: {exc.strerror}") from None

    @staticmethod
    def _grew(file: BinaryIO, mark: _Mark) -> bool:
        """The same file, its bytes up to the mark unchanged (and the unterminated line a
        whole read took still there, now ended or not)."""
        st = os.fstat(file.fileno())
        if (st.st_dev, st.st_ino) != (mark.dev, mark.ino) or st.st_size < mark.offset:
            return False
        if not mark.check or _digest(file, mark.offset) != mark.check:
            return False
        if not mark.tail:
            return True
        after = os.pread(file.fileno(), len(mark.tail) + 1, mark.offset)
        return after.startswith(mark.tail) and after[len(mark.tail) :] in (b"", b"\n", b"\r")

    async def _read(
        self,
        file: BinaryIO,
        whole: bool,
        feed: Callable[[Iterable[TaskRef | BadLine]], None],
        feed_bare: Callable[[bytes, int], bool] | None,
    ) -> bool:
        mark = None if whole else self._mark
        offset, lines = (mark.offset, mark.lines) if mark is not None else (0, 0)
        rest = b""
        while True:
            try:
                data = await asyncio.to_thread(file.read, CHUNK_BYTES)
            except OSError as exc:
                raise UsageError(f"{self.path}: cannot read task list: {exc.strerror}") from None
            if not data:
                break
            data = rest + data
            end = data.rfind(b"\n") + 1
            complete, rest = data[:end], data[end:]
            if complete:
                if feed_bare is None or not feed_bare(complete, lines + 1):
                    feed(parse_lines(io.BytesIO(complete), first_line=lines + 1))
                offset += len(complete)
                lines += _line_count(complete)
        if mark is None:  # a whole read takes an unterminated last line too
            feed(parse_lines([rest], first_line=lines + 1))
            taken = rest
        else:  # an append read leaves it for when it is ended
            taken = rest if rest == mark.tail else b""
        st = os.fstat(file.fileno())
        check = await asyncio.to_thread(_digest, file, offset)
        self._next = _Mark(st.st_dev, st.st_ino, offset, lines, check, taken)
        return whole
