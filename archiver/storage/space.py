"""Free space, and the one place a local write's failure is classified (DESIGN: storage faults
are classified once: denied, missing, full, transient; S3's are in s3client.classify).

Full is a property of the filesystem, never of the file being written: ENOSPC and EDQUOT on a
temp file, a stored file, a manifest or the state database all become StorageFull, naming the
folder and its free space, so the engine holds archiving instead of failing the file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from archiver.errors import StorageAccessError, StorageError, StorageFull, format_bytes

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EROFS})


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on `path`'s filesystem (one statvfs of the
    nearest folder that exists); None when even that cannot be asked."""
    for folder in (path, *path.parents):
        try:
            st = os.statvfs(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return st.f_bavail * st.f_frsize
    return None


def full_at(folder: Path, *, detail: str = "", needed_bytes: int | None = None) -> StorageFull:
    """The StorageFull of local `folder`, with its free space now."""
    return StorageFull(
        str(folder),
        path=folder,
        free_bytes=free_bytes(folder),
        needed_bytes=needed_bytes,
        detail=detail,
    )


def os_fault(where: Path, exc: OSError, *, folder: Path | None = None) -> StorageError:
    """What `exc`, met writing `where`, means: full (of `folder`, default where's folder),
    denied (a person must fix permissions or a read-only mount), or transient."""
    if exc.errno in FULL_ERRNOS:
        return full_at(folder or where.parent, detail=f"writing {where.name}: {exc.strerror}")
    if exc.errno in DENIED_ERRNOS:
        return StorageAccessError(f"{where}: {exc.strerror or exc}")
    return StorageError(f"{where}: {exc.strerror or exc}")


def state_full(path: Path, exc: Exception) -> StorageFull | None:
    """SQLite's "database or disk is full" as the StorageFull of the state's folder."""
    if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
        return None
    return full_at(path.parent, detail=f"cannot save the task state {path.name}")


class Reserve:
    """`storage.min_free_bytes`: what a download must leave free on the archive's filesystem,
    so the archive never fills the disk the state and the system share."""

    def __init__(self, folder: Path, min_free_bytes: int) -> None:
        self.folder = folder
        self.min_free_bytes = min_free_bytes

    def check(self, incoming: int) -> None:
        """Raise StorageFull if `incoming` more bytes would leave less than the reserve."""
        if self.min_free_bytes <= 0:
            return
        free = free_bytes(self.folder)
        if free is None or free - incoming >= self.min_free_bytes:
            return
        raise StorageFull(
            str(self.folder),
            path=self.folder,
            free_bytes=free,
            needed_bytes=incoming + self.min_free_bytes,
            detail=f"{format_bytes(incoming)} more would leave less than the reserve "
            f"(storage.min_free_bytes = {self.min_free_bytes})",
        )
