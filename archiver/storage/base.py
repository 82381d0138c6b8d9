"""The one small interface every storage backend implements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def check_key(key: str) -> str:
    """Return `key` if it is a safe archive-relative path (`<task_id>/<name>`), else raise.

    Names come from IDs, never titles, but IDs come from the API too: this is the last line
    of defence against a key that would escape the archive root.
    """
    parts = key.split("/")
    if not parts or any(not _SEGMENT.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValueError(f"unsafe archive key: {key!r}")
    return key


@dataclass(frozen=True)
class Unchanged:
    """A write's condition: the key still holds the object `tag` (S3: its ETag) names, or
    still none when `tag` is None."""

    tag: str | None


class Storage(Protocol):
    """An archive root. Keys are `/`-separated paths relative to it (see `check_key`)."""

    @property
    def temp_dir(self) -> Path:
        """A local folder for downloads and tagging; for local storage it is on the archive's
        filesystem so that `put_file` is a rename, not a copy."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> None:
        """Store the finished local file `path` (which it consumes) under `key`, atomically:
        the key shows either nothing, or the old content, or every byte of the new. If `key`
        already holds other content, raise StorageConflict; the same content is a no-op."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str, unchanged: Unchanged | None = None
    ) -> None:
        """Store small `data` (a manifest) under `key` atomically, replacing what was there.
        Every file `put_file` stored before in the same folder is durable before `key` shows.
        With `unchanged`, only if the key still holds what `read_tagged` found (WriteRefused
        otherwise), where the store can say so (S3); local storage, on one host, ignores it."""
        ...

    async def read(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there is none (small objects only)."""
        ...

    async def read_tagged(self, key: str) -> tuple[bytes | None, Unchanged]:
        """`read`, and the condition for a later `put_bytes` that must not write over what
        another writer stored meanwhile."""
        ...

    async def close(self) -> None: ...
