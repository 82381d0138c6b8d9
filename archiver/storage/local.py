"""Local-disk storage: an archive folder, with its temp folder inside so a store is a rename.

Durability follows the usual recipe: fsync the file, link or rename it into place, fsync the
folder (and the folder's parent when the folder is new). The folder fsync is batched: files
stored with `put_file` get durable names at the latest when `put_bytes` (the manifest, written
last) syncs their folder before publishing, so a manifest never outlives the files it names.
One folder sync a task instead of one a file: on ext4 each is a journal commit.

Finished files are published with `os.link`, not `os.replace`: a hard link fails when the name
exists, so even a concurrent writer can never have its file overwritten (filesystems without
hard links fall back to a checked `os.replace`). A crash leaves at worst a stray file in the
temp folder, removed on next start.

Stored files get the mode open() would give a new file (0o666 less the umask), not mkstemp's
0o600, so a media server or another user can read covers and manifests as well as MP3s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from archiver.errors import StorageAccessError, StorageConflict, StorageError
from archiver.storage.base import Unchanged, check_key
from archiver.storage.space import os_fault
from archiver.storage.tempdir import TEMP_NAME, TempDir

_CHUNK = 1 << 20
_NO_HARDLINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _file_mode() -> int:
    """0o666 less the process's umask. os.umask() can only be read by setting it, and a
    set-and-restore races with threads creating files meanwhile: read it from /proc on Linux,
    and elsewhere the racy way, once, when the storage is made (before it starts threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class LocalStorage:
    """An archive root on a local filesystem (see archiver.storage.base.Storage)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._temp = TempDir(self.root / TEMP_NAME)
        self.temp_dir = self._temp.path
        self._mode = _file_mode()
        try:
            # The root's real path with no trailing `/` ("" for `/`): keys are appended to it.
            self._root_prefix = os.path.realpath(self.root).rstrip("/")
            self._temp.open()  # also removes what a killed run left there
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.temp_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            self._temp.close()
            raise StorageAccessError(
                f"{self.root}: cannot use as archive folder: {e.strerror or e}"
            ) from e

    def _fault(self, path: Path, e: OSError) -> StorageError:
        """Full (of the archive's filesystem), denied or transient: see space.os_fault."""
        return os_fault(path, e, folder=self.root)

    def _target(self, key: str) -> Path:
        """The file for `key`, refused unless it stays inside the root once symlinks resolve."""
        self._real_name(key)
        return self.root / key

    def _real_name(self, key: str) -> str:
        """`key`'s file name below the root's real path, refused unless it stays inside the
        root once symlinks resolve. One lstat a name below the root: when none is a symlink
        the key cannot leave it (`check_key` allows no `..`), and realpath (pure Python, an
        lstat for every name from `/`) is only needed when one is: a full index reads 50,000
        manifests, and realpath took half of that reading."""
        check_key(key)
        name = self._root_prefix
        for part in key.split("/"):
            name += "/" + part
            try:
                mode = os.lstat(name).st_mode
            except FileNotFoundError:
                return f"{self._root_prefix}/{key}"  # nothing further down: no symlink either
            except OSError:
                break  # not a folder, or unreadable: let realpath judge
            if stat.S_ISLNK(mode):
                break
        else:
            return name
        real = os.path.realpath(f"{self._root_prefix}/{key}")
        if not real.startswith(self._root_prefix + "/"):
            raise StorageError(f"{self.root / key}: resolves outside the archive folder ({real})")
        return real

    def _make_dirs(self, folder: Path) -> None:
        """Create `folder` and any missing parents below the root, fsyncing each new entry's
        parent so the folder itself survives a crash."""
        missing: list[Path] = []
        d = folder
        while not d.is_dir():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent store made it
                d.mkdir()
            _fsync_path(d.parent)

    async def exists(self, key: str) -> bool:
        return self._target(key).is_file()

    async def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> None:
        target = self._target(key)
        # Fsync and hashing of a big file would stall the event loop: do it all in a thread.
        # A cancelled caller does not cancel the thread, so the store finishes or never shows.
        await asyncio.to_thread(self._put_file, target, Path(path), sha256.lower())

    def _put_file(self, target: Path, path: Path, sha256: str) -> None:
        try:
            os.chmod(path, self._mode)
            _fsync_path(path)
            self._make_dirs(target.parent)
        except OSError as e:
            raise self._fault(target, e) from e
        try:
            self._publish(path, target)
        except FileExistsError:
            self._settle_existing(target, path, sha256)
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise self._fault(target, e) from e
            # `path` lives on another filesystem: copy it next to the archive, then publish.
            local = self._copy_to_temp(path, target)
            try:
                self._publish(local, target)
            except FileExistsError:
                _unlink_quietly(local)
                self._settle_existing(target, path, sha256)
                return
            except OSError as e2:
                _unlink_quietly(local)
                raise self._fault(target, e2) from e2
            _unlink_quietly(path)

    def _publish(self, src: Path, target: Path) -> None:
        """Give `src` the name `target`, never replacing an existing file (FileExistsError)."""
        try:
            os.link(src, target, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _NO_HARDLINKS:
                raise
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "File exists", str(target)) from e
            os.replace(src, target)
            return
        os.unlink(src)

    def _settle_existing(self, target: Path, path: Path, sha256: str) -> None:
        """`target` already exists: the same bytes make this store a no-op, others a conflict."""
        try:
            same = (
                target.is_file()
                and target.stat().st_size == path.stat().st_size
                and _sha256_file(target) == sha256
            )
        except OSError as e:
            raise self._fault(target, e) from e
        if not same:
            raise StorageConflict(f"{target}: already exists with other content; left as is")
        _unlink_quietly(path)

    def _copy_to_temp(self, path: Path, target: Path) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=self.temp_dir)
        try:
            os.fchmod(fd, self._mode)
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            _unlink_quietly(Path(tmp))
            raise self._fault(target, e) from e
        return Path(tmp)

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str, unchanged: Unchanged | None = None
    ) -> None:
        # `unchanged` is not checked: a local folder has one host, whose daemon's lease fence
        # is the guard (several hosts on one local folder are not supported)
        target = self._target(key)
        await asyncio.to_thread(self._put_bytes, target, bytes(data))

    def _put_bytes(self, target: Path, data: bytes) -> None:
        tmp: Path | None = None
        try:
            fd, name = tempfile.mkstemp(prefix=".put-", dir=self.temp_dir)
            tmp = Path(name)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._replace(tmp, target)
            tmp = None
        except OSError as e:
            raise self._fault(target, e) from e
        finally:
            if tmp is not None:
                _unlink_quietly(tmp)

    def _replace(self, path: Path, target: Path) -> None:
        """Give the temp file `path` the name `target`, durably, whatever was there (put_bytes:
        the names put_file gave first in the folder are made durable before, see above)."""
        os.chmod(path, self._mode)
        _fsync_path(path)
        self._make_dirs(target.parent)
        _fsync_path(target.parent)
        os.replace(path, target)
        _fsync_path(target.parent)

    async def read(self, key: str) -> bytes | None:
        name = self._real_name(key)
        try:
            with open(name, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._fault(self.root / key, e) from e

    async def read_tagged(self, key: str) -> tuple[bytes | None, Unchanged]:
        return await self.read(key), Unchanged(None)

    async def close(self) -> None:
        self._temp.close()
