"""Local storage on real files: atomic stores, conflicts, unsafe keys, stale temp files."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import Cli

from archiver.errors import StorageAccessError, StorageConflict, StorageError, StorageFull
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.storage import Storage
from archiver.storage import local as local_mod
from archiver.storage.local import LocalStorage
from archiver.storage.tempdir import TEMP_NAME


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def storage(tmp_path: Path):
    s = LocalStorage(tmp_path / "archive")
    yield s
    await s.close()


def _temp_file(storage: LocalStorage, data: bytes, name: str = "dl.part") -> Path:
    p = storage.temp_dir / name
    p.write_bytes(data)
    return p


def _leftovers(storage: LocalStorage) -> list[str]:
    return sorted(n for n in os.listdir(storage.temp_dir) if n != ".suno-archiver.lock")


async def test_local_storage_satisfies_the_storage_protocol(storage: LocalStorage) -> None:
    s: Storage = storage  # checked by type checkers; at runtime the attributes must exist
    assert s.temp_dir == storage.root / ".suno-archiver-tmp"
    assert s.temp_dir.is_dir()


async def test_put_file_stores_atomically_and_consumes_the_temp_file(
    storage: LocalStorage,
) -> None:
    data = b"ID3" + os.urandom(300_000)
    src = _temp_file(storage, data)
    await storage.put_file("task1/a.mp3", src, sha256=_sha(data), content_type="audio/mpeg")
    final = storage.root / "task1" / "a.mp3"
    assert final.read_bytes() == data
    assert final.stat().st_nlink == 1  # the temp name is gone, not just a second link
    assert not src.exists()
    assert _leftovers(storage) == []
    assert await storage.exists("task1/a.mp3")
    assert await storage.read("task1/a.mp3") == data


async def test_put_file_same_content_twice_is_a_no_op(storage: LocalStorage) -> None:
    data = b"same bytes" * 1000
    await storage.put_file("t/a.mp3", _temp_file(storage, data), sha256=_sha(data), content_type="")
    again = _temp_file(storage, data, "again.part")
    await storage.put_file("t/a.mp3", again, sha256=_sha(data), content_type="audio/mpeg")
    assert (storage.root / "t" / "a.mp3").read_bytes() == data
    assert not again.exists()
    assert _leftovers(storage) == []


async def test_put_file_other_content_conflicts_and_touches_neither(
    storage: LocalStorage,
) -> None:
    old, new = b"original" * 100, b"imposter" * 100  # same size, other bytes
    await storage.put_file("t/a.mp3", _temp_file(storage, old), sha256=_sha(old), content_type="")
    src = _temp_file(storage, new, "new.part")
    with pytest.raises(StorageConflict, match=r"t/a\.mp3"):
        await storage.put_file("t/a.mp3", src, sha256=_sha(new), content_type="audio/mpeg")
    assert (storage.root / "t" / "a.mp3").read_bytes() == old
    assert src.read_bytes() == new


async def test_put_file_other_size_conflicts(storage: LocalStorage) -> None:
    await storage.put_bytes("t/a.png", b"short", content_type="image/png")
    src = _temp_file(storage, b"much longer content")
    with pytest.raises(StorageConflict):
        await storage.put_file("t/a.png", src, sha256=_sha(b"much longer content"), content_type="")
    assert (storage.root / "t" / "a.png").read_bytes() == b"short"
    assert src.exists()


async def test_put_file_from_another_filesystem_is_copied_in(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source outside temp_dir's filesystem (EXDEV on link/rename) is copied, then stored."""
    data = b"elsewhere" * 5000
    src = storage.root.parent / "outside.part"
    src.write_bytes(data)
    real_link = os.link

    def link(a, b, **kw):
        if Path(a) == src:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(a, b, **kw)

    monkeypatch.setattr(local_mod.os, "link", link)
    await storage.put_file("t/x.mp3", src, sha256=_sha(data), content_type="audio/mpeg")
    assert (storage.root / "t" / "x.mp3").read_bytes() == data
    assert not src.exists()
    assert _leftovers(storage) == []


async def test_put_file_without_hard_links_falls_back_to_a_checked_rename(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*a, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(local_mod.os, "link", no_link)
    data = b"abc" * 10
    await storage.put_file("t/a.mp3", _temp_file(storage, data), sha256=_sha(data), content_type="")
    assert (storage.root / "t" / "a.mp3").read_bytes() == data
    other = _temp_file(storage, b"xyz" * 10, "o.part")
    with pytest.raises(StorageConflict):
        await storage.put_file("t/a.mp3", other, sha256=_sha(b"xyz" * 10), content_type="")
    assert (storage.root / "t" / "a.mp3").read_bytes() == data


async def test_put_file_on_a_full_disk_is_storage_full_and_leaves_no_final_file(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_mod.os, "link", full)
    src = _temp_file(storage, b"data")
    with pytest.raises(StorageFull, match=r"full, .* free: writing a\.mp3: No space") as info:
        await storage.put_file("t/a.mp3", src, sha256=_sha(b"data"), content_type="")
    assert info.value.path == storage.root and str(storage.root) in str(info.value)
    assert not (storage.root / "t" / "a.mp3").exists()


async def test_put_bytes_writes_and_replaces(storage: LocalStorage) -> None:
    await storage.put_bytes("t/manifest.json", b'{"v": 1}', content_type="application/json")
    assert await storage.read("t/manifest.json") == b'{"v": 1}'
    await storage.put_bytes("t/manifest.json", b'{"v": 2}', content_type="application/json")
    assert await storage.read("t/manifest.json") == b'{"v": 2}'
    assert _leftovers(storage) == []


async def test_files_are_durable_before_the_manifest_that_names_them(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order a power cut could otherwise break: a file's bytes are synced before its name
    appears, and the folder holding the names is synced before the manifest appears (and
    after). The calls are observed, not replaced."""
    folder = storage.root / "t"
    events: list[str] = []

    def label(target: int | str | Path) -> str:
        path = Path(os.readlink(f"/proc/self/fd/{target}") if isinstance(target, int) else target)
        return "folder" if path == folder else path.name

    def spy(real: Any, verb: str, arg: int) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            events.append(f"{verb} {label(args[arg])}")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(local_mod.os, "fsync", spy(os.fsync, "fsync", 0))
    monkeypatch.setattr(local_mod.os, "link", spy(os.link, "link", 1))
    monkeypatch.setattr(local_mod.os, "replace", spy(os.replace, "replace", 1))
    for stem in ("a", "b"):
        data = os.urandom(1000)
        src = _temp_file(storage, data, f"{stem}.part")
        await storage.put_file(f"t/{stem}.mp3", src, sha256=_sha(data), content_type="audio/mpeg")
    await storage.put_bytes("t/manifest.json", b"{}", content_type="application/json")

    for stem in ("a", "b"):
        assert events.index(f"fsync {stem}.part") < events.index(f"link {stem}.mp3")
    published = events.index("replace manifest.json")
    assert "fsync folder" in events[events.index("link b.mp3") : published]
    assert "fsync folder" in events[published:]


async def test_put_bytes_disk_full_leaves_old_content_and_no_temp(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.put_bytes("t/manifest.json", b"old", content_type="")
    real_write = os.write

    def write_half_then_fail(fd, data):
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_mod.os, "write", write_half_then_fail)
    with pytest.raises(StorageError, match=r"manifest\.json: No space left"):
        await storage.put_bytes("t/manifest.json", b"x" * 1000, content_type="")
    monkeypatch.undo()
    assert await storage.read("t/manifest.json") == b"old"
    assert _leftovers(storage) == []


async def test_read_missing_key_is_none(storage: LocalStorage) -> None:
    assert await storage.read("nothing/here.json") is None
    assert not await storage.exists("nothing/here.json")


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/abs", "", "a//b", ".", "a/.", "a/.."])
async def test_unsafe_keys_are_rejected_everywhere(storage: LocalStorage, key: str) -> None:
    src = _temp_file(storage, b"x")
    with pytest.raises(ValueError, match="unsafe archive key"):
        await storage.put_file(key, src, sha256=_sha(b"x"), content_type="")
    with pytest.raises(ValueError):
        await storage.put_bytes(key, b"x", content_type="")
    with pytest.raises(ValueError):
        await storage.read(key)
    with pytest.raises(ValueError):
        await storage.exists(key)
    assert src.exists()


async def test_temp_dir_cannot_be_addressed_by_a_key(storage: LocalStorage) -> None:
    with pytest.raises(ValueError):
        await storage.put_bytes(".suno-archiver-tmp/x", b"x", content_type="")


async def test_symlinked_task_folder_pointing_outside_is_rejected(
    storage: LocalStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(b"secret")
    (storage.root / "evil").symlink_to(outside, target_is_directory=True)
    src = _temp_file(storage, b"x")
    with pytest.raises(StorageError, match="outside the archive"):
        await storage.put_file("evil/a.mp3", src, sha256=_sha(b"x"), content_type="")
    with pytest.raises(StorageError, match="outside the archive"):
        await storage.put_bytes("evil/manifest.json", b"x", content_type="")
    with pytest.raises(StorageError, match="outside the archive"):
        await storage.read("evil/secret.json")
    assert sorted(os.listdir(outside)) == ["secret.json"]


async def test_symlinked_file_pointing_outside_is_rejected(
    storage: LocalStorage, tmp_path: Path
) -> None:
    target = tmp_path / "victim.txt"
    target.write_bytes(b"keep")
    (storage.root / "t").mkdir()
    (storage.root / "t" / "manifest.json").symlink_to(target)
    with pytest.raises(StorageError, match="outside the archive"):
        await storage.put_bytes("t/manifest.json", b"x", content_type="")
    assert target.read_bytes() == b"keep"


async def test_symlink_inside_the_archive_is_allowed(storage: LocalStorage) -> None:
    (storage.root / "real").mkdir()
    (storage.root / "alias").symlink_to(storage.root / "real", target_is_directory=True)
    await storage.put_bytes("alias/m.json", b"ok", content_type="")
    assert (storage.root / "real" / "m.json").read_bytes() == b"ok"


async def test_read_checks_every_name_below_the_root(storage: LocalStorage, tmp_path: Path) -> None:
    # read checks a key with lstat, and realpath only past a symlink: both ways refuse.
    target = tmp_path / "victim.json"
    target.write_bytes(b"secret")
    (storage.root / "t").mkdir()
    (storage.root / "t" / "manifest.json").symlink_to(target)
    with pytest.raises(StorageError, match="outside the archive"):
        await storage.read("t/manifest.json")
    (storage.root / "t" / "inside.json").symlink_to(storage.root / "t" / "real.json")
    (storage.root / "t" / "real.json").write_bytes(b"ok")
    assert await storage.read("t/inside.json") == b"ok"
    assert await storage.read("t/missing.json") is None
    assert await storage.read("nothing/here.json") is None


async def test_archive_root_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    storage = LocalStorage(tmp_path / "link")
    try:
        await storage.put_bytes("t/manifest.json", b"{}", content_type="")
        assert await storage.read("t/manifest.json") == b"{}"
        assert (tmp_path / "real" / "t" / "manifest.json").read_bytes() == b"{}"
    finally:
        await storage.close()


async def test_stale_temp_files_are_removed_on_start(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    first = LocalStorage(root)
    await first.close()
    (first.temp_dir / "killed.part").write_bytes(b"half a download")
    (first.temp_dir / "subdir").mkdir()
    (first.temp_dir / "subdir" / "x").write_bytes(b"x")
    (root / "t").mkdir()
    (root / "t" / "kept.mp3").write_bytes(b"archived")

    second = LocalStorage(root)
    try:
        assert _leftovers(second) == []
        assert (root / "t" / "kept.mp3").read_bytes() == b"archived"
    finally:
        await second.close()


async def test_temp_files_of_a_running_archiver_are_not_removed(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    running = LocalStorage(root)
    try:
        in_flight = running.temp_dir / "downloading.part"
        in_flight.write_bytes(b"in flight")
        other = LocalStorage(root)
        await other.close()
        assert in_flight.read_bytes() == b"in flight"
    finally:
        await running.close()


def test_unusable_root_is_a_storage_access_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageAccessError, match=rf"^{blocker / 'archive'}: cannot use"):
        LocalStorage(blocker / "archive")


def test_read_only_filesystem_root_is_a_storage_access_error(tmp_path: Path) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    with pytest.raises(StorageAccessError, match="/proc/self/archive"):
        LocalStorage(Path("/proc/self/archive"))


@pytest.mark.parametrize(
    ("umask", "tagging", "mode"),
    [(0o022, "false", 0o644), (0o077, "true", 0o600)],
    ids=["umask-022-untagged", "umask-077-tagged"],
)
async def test_stored_files_follow_the_umask_like_any_new_file(
    sandbox: Sandbox, tmp_path: Path, umask: int, tagging: str, mode: int
) -> None:
    """Covers, untagged MP3s and manifests came out 0600 (mkstemp's mode) whatever the umask,
    unreadable to a media server running as another user."""
    cli = Cli(sandbox, tmp_path)
    cli.write_config(f"[tagging]\nenabled = {tagging}\n")
    music, cover = fake_hex_id("mode:music"), fake_hex_id("mode:cover")
    sandbox.add_music(music)
    sandbox.add_cover(cover)
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", f'umask {umask:03o} && exec "$0" -m archiver.cli "$@"',
        sys.executable, "backfill", str(cli.ids(music, cover)),
        cwd=tmp_path, env=cli.env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()

    stored = [p for p in cli.archive.rglob("*") if p.is_file() and TEMP_NAME not in p.parts]
    suffixes = {p.suffix for p in stored}
    assert {".mp3", ".json", ".png"} <= suffixes, suffixes
    modes = {str(p.relative_to(cli.archive)): oct(p.stat().st_mode & 0o777) for p in stored}
    assert modes == dict.fromkeys(modes, oct(mode))
