"""A local archive folder as `verify` sees it: listed with scandir, every file re-hashed.

Hashing streams through one reusable buffer per call (hashlib.file_digest), so memory stays
flat whatever the file size, and the GIL is released while OpenSSL hashes: two threads hash
two files at once.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from archiver.errors import StorageAccessError, StorageError
from archiver.storage.local import _fsync_path
from archiver.verify.findings import QUARANTINE_NAME, Listed, Observed
from archiver.verify.view import Folder

_READ_CAP = 64 * 1024 * 1024  # read() is for manifests


class LocalView:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = self._root = str(self.root)
        self.workers = min(4, os.cpu_count() or 1)
        self.read_workers = 1  # a manifest is read in microseconds: parsing is the cost
        if not self.root.is_dir():
            raise StorageAccessError(f"{self.root}: no archive folder there")

    def folders(self, only: Collection[str] | None) -> Iterator[Folder]:
        if only is not None:
            yield from (Folder(name, None) for name in only)
            return
        root_files: dict[str, Listed] = {}
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != QUARANTINE_NAME:
                            yield Folder(entry.name, None)
                    else:
                        root_files[entry.name] = _listed(
                            entry.name, entry.stat(follow_symlinks=False)
                        )
        except OSError as exc:
            raise StorageAccessError(f"{self.root}: cannot list: {exc.strerror or exc}") from exc
        yield Folder("", root_files)

    def list_folder(self, name: str) -> dict[str, Listed]:
        found: dict[str, Listed] = {}
        pending = [name]
        while pending:
            rel = pending.pop()
            try:
                with os.scandir(self.root / rel) as entries:
                    for entry in entries:
                        key = f"{rel}/{entry.name}"
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(key)
                        else:
                            found[key] = _listed(key, entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageAccessError(
                    f"{self.root / rel}: cannot list: {exc.strerror or exc}"
                ) from exc
        return found

    def stat(self, key: str) -> Listed | None:
        try:
            return _listed(key, os.lstat(self.root / key))
        except FileNotFoundError:
            return None

    def read(self, key: str) -> bytes | None:
        try:
            with open(f"{self._root}/{key}", "rb") as f:
                # read(cap) would allocate the whole cap for every manifest: read what is there
                too_big = os.fstat(f.fileno()).st_size > _READ_CAP
                return f.read(_READ_CAP) if too_big else f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def observe(self, entry: dict[str, Any], listed: Listed, *, read_data: bool) -> Observed | None:
        """Re-hashed, always (`read_data` is what a local verify does anyway). A file that
        cannot be read (a bad sector: EIO) raises OSError for the caller to report."""
        try:
            f = open(self.root / listed.key, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None  # removed since the listing
        with f:
            size = os.fstat(f.fileno()).st_size
            if size != entry["bytes"]:
                return Observed(size, None)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return Observed(size, digest, size)

    def quarantine(self, key: str, stamp: str) -> str:
        """Move `key` aside under the quarantine folder (a rename: the same filesystem) and
        return its new key. Never replaces a file there."""
        dest_key = f"{QUARANTINE_NAME}/{stamp}/{key}"
        source, dest = self.root / key, self.root / dest_key
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(dest):
                raise FileExistsError(errno.EEXIST, "already in quarantine", str(dest))
            os.rename(source, dest)
            for folder in (dest.parent, source.parent):
                _fsync_path(folder)  # the rename survives a crash
        except OSError as exc:
            raise StorageError(
                f"{source}: cannot move to quarantine: {exc.strerror or exc}"
            ) from exc
        return dest_key

    def close(self) -> None:
        pass


def _listed(key: str, st: os.stat_result) -> Listed:
    return Listed(key, st.st_size, st.st_mtime)
