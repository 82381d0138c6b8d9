"""index.html and playlist.m3u8 written from the view rows into temp files, piecewise. Blocking:
run it in a thread, with a connection of its own (store.read_snapshot).

A full write streams every row from SQLite in batches into the files; nothing the size of the
archive is ever in memory. When the last write's layout still stands (no row it wrote changed,
the files are the very ones it wrote) and every row added since sorts before the rows it wrote,
the new files are the new rows followed by the old rows' bytes, copied by the kernel from the
old files (`os.copy_file_range`): what a full write would give, byte for byte, without
rendering or even reading the old rows in Python. Anything else is a full write.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path
from typing import BinaryIO

from archiver.browse.render import PLAYLIST_HEAD, page_frame
from archiver.browse.store import OLDEST_FIRST, FileMark, Layout, newest_first, totals
from archiver.browse.view import ViewRow

_BUFFER = 1 << 20
# Linux only; where it is missing, or refuses a pair of files, bytes go through Python.
_COPY_FILE_RANGE = getattr(os, "copy_file_range", None)
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


@dataclass(frozen=True)
class Draft:
    """The two files, ready to be stored (their temp names), and what they hold."""

    page: Path
    playlist: Path
    layout: Layout  # its marks are the temp files' own: storing by rename keeps them
    spliced: bool  # the old rows were copied, not written again


@dataclass(frozen=True)
class Current:
    """The files as they are now, for a splice: their local names and the last layout."""

    page: str
    playlist: str
    layout: Layout | None  # None: none recorded, or a written row changed since


def draft(
    db: sqlite3.Connection,
    temp_dir: Path,
    current: Current | None,
    *,
    generated_at: str,
    version: str,
) -> Draft:
    """Both files from the rows `db` holds (one snapshot), in temp files under `temp_dir`:
    spliced onto `current` when it allows, else written in full."""
    db.execute("BEGIN")
    try:
        rows, tracks, max_rowid = totals(db)
        with ExitStack() as stack:
            old = _spliceable(db, current, rows, stack) if current else None
            page = _temp(temp_dir, ".index-")
            playlist = _temp(temp_dir, ".playlist-")
            try:
                layout = _write(
                    db,
                    page,
                    playlist,
                    temp_dir,
                    page_frame(
                        task_count=rows,
                        track_count=tracks,
                        generated_at=generated_at,
                        version=version,
                    ),
                    old,
                    totals=(rows, tracks, max_rowid),
                )
            except BaseException:
                page.unlink(missing_ok=True)
                playlist.unlink(missing_ok=True)
                raise
    finally:
        db.execute("COMMIT")  # read only: ends the snapshot
    return Draft(page=page, playlist=playlist, layout=layout, spliced=old is not None)


@dataclass(frozen=True)
class _Old:
    page: BinaryIO
    playlist: BinaryIO
    layout: Layout


def _spliceable(
    db: sqlite3.Connection, current: Current, rows: int, stack: ExitStack
) -> _Old | None:
    """The old files, open, when the new ones may be spliced onto them: the rows written then
    are all still there, every row added since sorts before them, and each file is the one
    written then (size, mtime, inode). None: write in full."""
    layout = current.layout
    if layout is None:
        return None
    added = f"FROM view NOT INDEXED WHERE rowid > {int(layout.max_rowid)}"  # a rowid range
    if rows != layout.rows + db.execute(f"SELECT count(*) {added}").fetchone()[0]:
        return None
    oldest = db.execute(f"SELECT sort_key, task_id {added} {OLDEST_FIRST} LIMIT 1").fetchone()
    if oldest is not None and layout.newest is not None and tuple(oldest) <= layout.newest:
        return None  # a new row goes among the old ones
    try:
        page = stack.enter_context(open(current.page, "rb"))  # noqa: SIM115 (the stack closes)
        playlist = stack.enter_context(open(current.playlist, "rb"))  # noqa: SIM115
    except OSError:
        return None
    if _mark(page) != layout.page or _mark(playlist) != layout.playlist:
        return None  # changed behind our back
    return _Old(page, playlist, layout)


def _write(
    db: sqlite3.Connection,
    page_path: Path,
    playlist_path: Path,
    temp_dir: Path,
    frame: tuple[bytes, bytes, bytes],
    old: _Old | None,
    *,
    totals: tuple[int, int, int],
) -> Layout:
    head, middle, foot = frame
    rows, tracks, max_rowid = totals
    fresh = newest_first(db, after_rowid=old.layout.max_rowid if old else None)
    with (
        open(page_path, "wb", buffering=_BUFFER) as page,
        open(playlist_path, "wb", buffering=_BUFFER) as playlist,
        tempfile.TemporaryFile(dir=temp_dir, buffering=_BUFFER) as lyrics,
    ):
        page.write(head)
        tasks_start = page.tell()
        playlist.write(PLAYLIST_HEAD)
        written, newest = _rows(fresh, page, lyrics, playlist)
        glue = b"," if written and old and old.layout.rows else b""
        if old:
            page.write(glue)
            _copy(old.page, *old.layout.tasks_at, page)
            _copy(old.playlist, old.layout.m3u_at, old.layout.playlist.size, playlist)
            newest = newest or old.layout.newest
        tasks_end = page.tell()
        page.write(middle)
        lyrics_start = page.tell()
        lyrics.flush()
        _copy(lyrics, 0, lyrics.tell(), page)
        if old:
            page.write(glue)
            _copy(old.page, *old.layout.lyrics_at, page)
        lyrics_end = page.tell()
        page.write(foot)
        for out in (page, playlist):
            out.flush()
            os.fsync(out.fileno())
        marks = _mark(page), _mark(playlist)
    return Layout(
        page=marks[0],
        playlist=marks[1],
        tasks_at=(tasks_start, tasks_end),
        lyrics_at=(lyrics_start, lyrics_end),
        m3u_at=len(PLAYLIST_HEAD),
        rows=rows,
        tracks=tracks,
        max_rowid=max_rowid,
        newest=newest,
    )


def _rows(
    batches: Iterable[list[ViewRow]],
    page: BufferedWriter,
    lyrics: BinaryIO,
    playlist: BufferedWriter,
) -> tuple[int, tuple[str, str] | None]:
    """Write the rows (task JSON to the page, lyrics aside, playlist lines), a batch a write;
    return how many and the first one's order key."""
    count = 0
    newest: tuple[str, str] | None = None
    for batch in batches:
        if newest is None:
            newest = (batch[0].sort_key, batch[0].task_id)
        sep = "," if count else ""
        page.write((sep + ",".join(r.data for r in batch)).encode("utf-8"))
        lyrics.write((sep + ",".join(r.lyrics for r in batch)).encode("utf-8"))
        playlist.write("".join(r.m3u for r in batch).encode("utf-8"))
        count += len(batch)
    return count, newest


def _copy(source: BinaryIO, start: int, end: int, out: BufferedWriter | BinaryIO) -> None:
    """Append bytes [start, end) of `source` to `out`, in the kernel where it can."""
    out.flush()
    at = out.tell()
    src, dst = source.fileno(), out.fileno()
    while start < end:
        done = _copy_some(src, dst, start, end, at)
        if done == 0:
            raise OSError(errno.EIO, f"{source.name}: ended before byte {end}")
        start += done
        at += done
    out.seek(at)


def _copy_some(src: int, dst: int, start: int, end: int, at: int) -> int:
    """Copy some of bytes [start, end) of `src` to `dst` at `at`; return how many."""
    if _COPY_FILE_RANGE is not None:
        try:
            return _COPY_FILE_RANGE(src, dst, end - start, start, at)
        except OSError as e:
            if e.errno not in _NO_COPY_RANGE:
                raise
    data = os.pread(src, min(end - start, _BUFFER), start)  # through Python, a MiB at a time
    return os.pwrite(dst, data, at) if data else 0


def _mark(file: BinaryIO) -> FileMark:
    return FileMark.of(os.fstat(file.fileno()))


def _temp(folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    os.close(fd)
    return Path(name)
