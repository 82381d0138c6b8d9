"""S3 storage against moto's server mode: what is stored is exactly the file, confirmed by the
store's own checksum, and never another writer's object taken or deleted."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions as bx
import pytest
from botocore.awsrequest import AWSResponse
from s3server import MotoServer
from s3stores import (
    EACH_WAY_UP,
    new_file,
    open_quick,
    raw_client,
    requests_of,
    s3_config,
    stored,
    uploads,
)
from structlog.testing import capture_logs

from archiver.errors import StorageConflict, StorageError
from archiver.storage.s3 import S3Storage
from archiver.storage.s3checksums import checksum_matches, scan_file
from archiver.storage.s3objects import MIB

pytestmark = pytest.mark.usefixtures("aws_env")


# --- two writers of one key --------------------------------------------------------------------


def once_at(storage: S3Storage, event: str, action: Any) -> list[bool]:
    """Run `action()` the first time `event` fires on the storage's client (in its thread)."""
    fired: list[bool] = []

    def hook(**_: Any) -> None:
        if not fired:
            fired.append(True)
            action()

    storage._client.meta.events.register(event, hook)
    return fired


@pytest.mark.parametrize("same", [False, True], ids=["other-content", "same-content"])
@EACH_WAY_UP
async def test_a_writer_that_stores_the_key_first_wins_the_race(
    tmp_path: Path, server: MotoServer, bucket: str, size: int, last_step: str, same: bool
) -> None:
    """Two archivers (a daemon and a backfill, say) store one key: the second finds it free
    at its head check, then the first stores it just before the second's upload lands. The
    first's object stands; the second settles against it (a conflict, or a no-op)."""
    loop = asyncio.get_running_loop()
    sizes = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}
    first = await S3Storage.open(s3_config(tmp_path / "1", server.url, bucket), **sizes)
    second = await S3Storage.open(s3_config(tmp_path / "2", server.url, bucket), **sizes)
    try:
        mine = os.urandom(size)
        theirs = mine if same else os.urandom(size)
        their_path, their_sha = new_file(first, theirs)

        def first_stores() -> None:
            store = first.put_file("t/a.mp3", their_path, sha256=their_sha, content_type="x/y")
            asyncio.run_coroutine_threadsafe(store, loop).result()

        fired = once_at(second, f"before-parameter-build.s3.{last_step}", first_stores)
        path, sha = new_file(second, mine)
        if same:
            await second.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
            assert not path.exists()
        else:
            with pytest.raises(StorageConflict, match="already exists with other content"):
                await second.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        assert fired
    finally:
        await first.close()
        await second.close()
    body, response = stored(server.url, bucket, "suno/archive/t/a.mp3")
    assert body == theirs and response["Metadata"] == {"sha256": their_sha}
    assert response["ContentType"] == "x/y"  # the first writer's object, not overwritten
    assert raw_client(server.url).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@EACH_WAY_UP
async def test_a_store_without_conditional_writes_gets_plain_ones(
    tmp_path: Path, server: MotoServer, bucket: str, size: int, last_step: str
) -> None:
    """A store that predates If-None-Match answers it with 501 (as older MinIO and Ceph do):
    the upload goes again without it, and so does every later one."""
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    refused: list[str] = []

    def no_conditions(request: Any, **_: Any) -> AWSResponse | None:
        if "If-None-Match" not in request.headers:
            return None
        refused.append(request.url)
        body = (
            b"<Error><Code>NotImplemented</Code><Message>A header you provided implies "
            b"functionality that is not implemented</Message></Error>"
        )
        return AWSResponse(request.url, 501, {}, _Raw(body))

    storage._client.meta.events.register(f"before-send.s3.{last_step}", no_conditions)
    try:
        with capture_logs() as logs:
            for name in ("a", "b"):
                data = os.urandom(size)
                path, sha = new_file(storage, data)
                await storage.put_file(f"t/{name}.mp3", path, sha256=sha, content_type="x/y")
                assert stored(server.url, bucket, f"suno/archive/t/{name}.mp3")[0] == data
    finally:
        await storage.close()
    assert len(refused) == 1  # once refused, never asked again
    assert [e["event"] for e in logs].count("s3_conditional_writes_unsupported") == 1


class _Raw:
    """The raw body botocore reads from a response a before-send handler made up."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@EACH_WAY_UP
async def test_an_object_another_writer_put_over_ours_is_never_deleted(
    tmp_path: Path, server: MotoServer, bucket: str, size: int, last_step: str
) -> None:
    """Another tool overwrites the key (unconditionally) between our upload and its
    confirmation: what is there is not ours to remove; it is a conflict, left as is."""
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    key = "suno/archive/t/a.mp3"
    other = b"another tool's file"
    try:
        once_at(
            storage,
            f"after-call.s3.{last_step}",
            lambda: raw_client(server.url).put_object(Bucket=bucket, Key=key, Body=other),
        )
        path, sha = new_file(storage, os.urandom(size))
        with pytest.raises(StorageConflict, match="already exists with other content"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert stored(server.url, bucket, key)[0] == other


async def test_a_failed_delete_of_an_unconfirmed_upload_is_logged(
    tmp_path: Path, server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await open_quick(s3_config(tmp_path, server.url, bucket))
    real_head = storage._objects.head

    def short_after_upload(full: str) -> dict[str, Any] | None:
        head = real_head(full)
        return None if head is None else {**head, "ContentLength": head["ContentLength"] - 1}

    def refuse(request: Any, **_: Any) -> None:
        raise bx.ConnectionClosedError(endpoint_url=request.url)

    monkeypatch.setattr(storage._objects, "head", short_after_upload)
    storage._client.meta.events.register("before-send.s3.DeleteObject", refuse)
    try:
        path, sha = new_file(storage, b"z" * 100)
        with capture_logs() as logs, pytest.raises(StorageError, match="not confirmed"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    (failed,) = [e for e in logs if e["event"] == "s3_delete_failed"]
    assert failed["key"] == "suno/archive/t/a.mp3" and "delete" in failed["error"]
    assert stored(server.url, bucket, "suno/archive/t/a.mp3")[0] == b"z" * 100


# --- integrity ---------------------------------------------------------------------------------


async def test_a_single_put_carries_the_files_sha256_for_the_store_to_check(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        path, sha = new_file(storage, b"abc" * 1000)
        seen = requests_of(storage)
        await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        await storage.put_bytes("t/manifest.json", b"{}", content_type="application/json")
    finally:
        await storage.close()
    puts = [h for op, h in seen if op == "PutObject"]
    expected = [
        base64.b64encode(bytes.fromhex(sha)).decode(),
        base64.b64encode(hashlib.sha256(b"{}").digest()).decode(),
    ]
    assert [h.get("x-amz-checksum-sha256") for h in puts] == expected


@pytest.mark.parametrize("size", [5000, 5 * MIB + 5000], ids=["put", "multipart"])
async def test_an_upload_that_cannot_be_confirmed_is_an_error_and_removed(
    tmp_path: Path, server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """moto checks no checksums, so this proves our own confirmation: the store answers with
    another size than was sent. The object is ours (its ETag is our upload's), so it goes."""
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    real_head = storage._objects.head
    heads = 0

    def lying_head(full: str) -> dict[str, Any] | None:
        nonlocal heads
        heads += 1
        head = real_head(full)
        if head is not None and heads == 2:  # the confirmation after the upload
            head = {**head, "ContentLength": head["ContentLength"] - 1}
        return head

    monkeypatch.setattr(storage._objects, "head", lying_head)
    try:
        path, sha = new_file(storage, b"x" * size)
        with pytest.raises(StorageError, match=f"upload not confirmed: {size - 1} bytes stored"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        assert path.exists()  # not consumed: the caller decides
        assert not await storage.exists("t/a.mp3")  # the unconfirmed object is gone
    finally:
        await storage.close()


async def test_a_stored_checksum_that_differs_fails_confirmation(
    tmp_path: Path, server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    real_head = storage._objects.head

    def other_checksum(full: str) -> dict[str, Any] | None:
        head = real_head(full)
        if head is not None:
            head = {**head, "ChecksumSHA256": base64.b64encode(b"\0" * 32).decode()}
        return head

    monkeypatch.setattr(storage._objects, "head", other_checksum)
    try:
        path, sha = new_file(storage, b"y" * 5000)
        with pytest.raises(StorageError, match="stored checksum"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()


async def test_existing_sha256_metadata_must_agree_with_the_stores_checksum(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    """An object whose x-amz-meta-sha256 names our file but whose bytes (by the store's own
    SHA-256, reported only with ChecksumMode=ENABLED) are something else is not our file."""
    mine, theirs = b"the archived audio", b"something else!!!!"
    sha = hashlib.sha256(mine).hexdigest()
    raw_client(server.url).put_object(
        Bucket=bucket,
        Key="suno/archive/t/a.mp3",
        Body=theirs,
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": sha},
    )
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        path, _ = new_file(storage, mine)
        with pytest.raises(StorageConflict, match="disagrees with the store's checksum"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert stored(server.url, bucket, "suno/archive/t/a.mp3")[0] == theirs


@pytest.mark.parametrize(
    ("checksum", "multipart", "matches"),
    [
        ("full", False, True),
        ("full-1", False, False),  # a full checksum never carries a part count
        ("composite", True, True),  # some stores leave off the suffix
        ("composite-3", True, True),
        ("composite-2", True, False),  # wrong part count
        ("composite", False, False),  # a single PUT has no composite
        ("full", True, True),  # a store that reports the full object's SHA-256
        ("other", True, False),
    ],
)
def test_checksum_matches(tmp_path: Path, checksum: str, multipart: bool, matches: bool) -> None:
    data = os.urandom(2 * 5 * MIB + 7)  # three parts of 5 MiB
    path = tmp_path / "f"
    path.write_bytes(data)
    scan = scan_file(path, 5 * MIB if multipart else None)
    parts = [hashlib.sha256(data[i : i + 5 * MIB]).digest() for i in range(0, len(data), 5 * MIB)]
    values = {
        "full": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "composite": base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode(),
        "other": base64.b64encode(b"\0" * 32).decode(),
    }
    value, dash, count = checksum.partition("-")
    assert checksum_matches(values[value] + dash + count, scan) is matches


async def test_a_local_file_that_changed_since_it_was_hashed_is_not_uploaded(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        path, sha = new_file(storage, b"original")
        path.write_bytes(b"corrupted")
        with pytest.raises(StorageError, match="no longer has SHA-256"):
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        assert not await storage.exists("t/a.mp3")
    finally:
        await storage.close()


async def test_checksum_when_required_sends_no_checksum_headers(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    config = s3_config(tmp_path, server.url, bucket, checksum_when_required=True)
    storage = await S3Storage.open(config, multipart_threshold=5 * MIB, part_size=5 * MIB)
    try:
        seen = requests_of(storage)
        small, small_sha = new_file(storage, b"small")
        big_data = os.urandom(5 * MIB + 10)
        big, big_sha = new_file(storage, big_data)
        await storage.put_file("t/small.png", small, sha256=small_sha, content_type="image/png")
        await storage.put_file("t/big.mp3", big, sha256=big_sha, content_type="audio/mpeg")
        await storage.put_bytes("t/manifest.json", b"{}", content_type="application/json")
        again, _ = new_file(storage, big_data)
        await storage.put_file("t/big.mp3", again, sha256=big_sha, content_type="audio/mpeg")
        assert await storage.read("t/manifest.json") == b"{}"
    finally:
        await storage.close()
    assert uploads(seen).count("UploadPart") == 2  # the second big file was skipped
    for _op, headers in seen:
        sent = {name.lower() for name in headers}
        assert not {n for n in sent if n.startswith("x-amz-checksum")}, sent
        assert "x-amz-sdk-checksum-algorithm" not in sent
        assert "x-amz-trailer" not in sent
    assert stored(server.url, bucket, "suno/archive/t/big.mp3")[0] == big_data
    assert stored(server.url, bucket, "suno/archive/t/small.png")[0] == b"small"
