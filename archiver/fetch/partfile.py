"""The `*.part` temp file a download streams into, and what is known of the bytes in it.

It is made uniquely in the storage's temp folder (and never outlives a cancelled fetch), written
and hashed in a worker thread, and reports a full disk as the storage's fault (`StorageFull`),
any other write error as a failed try of the file. It is not fsynced: storage makes durable what
it keeps (local) or uploads it (S3).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from archiver.errors import FetchError, StorageFull
from archiver.storage.space import os_fault


@dataclass
class Part:
    """The `.part` file and what is known of the bytes in it.

    Every file operation runs in a worker thread, the hashing with the write: SHA-256 releases
    the GIL, so it runs beside the event loop instead of stalling every other download.
    """

    path: Path
    handle: BinaryIO
    folder: Path  # the storage folder whose filesystem the file is on (named when it is full)
    have: int = 0  # bytes of the body received: where a resumed request starts
    written: int = 0  # bytes in the file
    source: Any = field(default_factory=hashlib.sha256)  # of the body as received
    stored: Any = None  # of the file, once a Reshape made it differ from the body
    kind: str | None = None  # media type, once the first bytes were sniffed and written
    # What the host said of the file when the bytes in hand began: its strong ETag (or
    # Last-Modified) and size, so that a resumed request gets the same file or starts over.
    validator: str | None = None
    size: int | None = None

    async def restart(self) -> None:
        await asyncio.to_thread(self._truncate)
        self.have = self.written = 0
        self.source, self.stored = hashlib.sha256(), None
        self.kind = self.validator = self.size = None

    def _truncate(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()

    async def write(self, chunk: bytes, *, instead: bytes | None = None) -> None:
        """Take `chunk` of the body, writing `instead` in its place when given."""
        try:
            await asyncio.to_thread(self._write, chunk, instead)
        except OSError as exc:
            raise self._fault(exc) from exc
        self.have += len(chunk)
        self.written += len(chunk if instead is None else instead)

    def _write(self, chunk: bytes, instead: bytes | None) -> None:
        out = chunk if instead is None else instead
        if instead is not None and self.stored is None:
            self.stored = self.source.copy()  # the file's bytes so far are the body's
        self.handle.write(out)
        self.source.update(chunk)
        if self.stored is not None:
            self.stored.update(out)

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self._close)
        except OSError as exc:  # the last buffered bytes could not be written
            raise self._fault(exc) from exc

    def _fault(self, exc: OSError) -> Exception:
        """A full disk is the storage's (StorageFull: the file is not at fault); another write
        error fails this try of the file, as a host's failure would."""
        fault = os_fault(self.path, exc, folder=self.folder)
        if isinstance(fault, StorageFull):
            return fault
        return FetchError(f"cannot write temp file: {exc}", permanent=False)

    def _close(self) -> None:
        if not self.handle.closed:  # the fetch closed it, then failed
            self.handle.close()

    async def discard(self) -> None:
        """Remove the file: its bytes are of no use (the fetch failed or was cancelled)."""
        with contextlib.suppress(OSError):
            self.path.unlink()  # first: a second cancellation must not skip it
        with contextlib.suppress(FetchError):  # its bytes are discarded anyway
            await self.close()


async def open_part(temp_dir: Path) -> Part:
    """A new, empty `.part` file in `temp_dir` (made if missing); StorageFull when its
    filesystem has no room (no inode left, say)."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    folder = temp_dir.parent  # the archive (local) or cache folder it lives in
    making = asyncio.ensure_future(
        asyncio.to_thread(tempfile.mkstemp, prefix="fetch-", suffix=".part", dir=temp_dir)
    )
    try:
        fd, name = await asyncio.shield(making)
    except asyncio.CancelledError:  # the thread still makes the file: remove it then
        making.add_done_callback(_discard_made)
        # ...and wait the moment that takes, so that no .part file outlives the fetch
        # (the loop may end right after this cancellation; the callback runs first).
        with contextlib.suppress(BaseException):
            await making
        raise
    except OSError as exc:  # no inode left, say
        fault = os_fault(temp_dir, exc, folder=folder)
        if isinstance(fault, StorageFull):
            raise fault from exc
        raise
    return Part(Path(name), os.fdopen(fd, "r+b"), folder)


def _discard_made(making: asyncio.Future[tuple[int, str]]) -> None:
    """Remove the temp file a cancelled `open_part` had a thread make."""
    if making.cancelled() or making.exception() is not None:
        return
    fd, name = making.result()
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
