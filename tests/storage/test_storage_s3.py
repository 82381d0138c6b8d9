"""S3 storage against moto's server mode: a real HTTP S3 endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import boto3.exceptions
import botocore.exceptions as bx
import pytest
import s3transfer.exceptions
from botocore.awsrequest import AWSResponse
from s3server import DUMMY_ENV, Gate, MotoServer, free_port
from structlog.testing import capture_logs

from archiver.config import StorageConfig
from archiver.errors import StorageAccessError, StorageConflict, StorageError
from archiver.storage.s3 import S3Storage
from archiver.storage.s3checksums import checksum_matches, scan_file
from archiver.storage.s3client import build_client
from archiver.storage.s3objects import MIB
from archiver.storage.tempdir import TEMP_NAME

_bucket_numbers = itertools.count()


pytestmark = pytest.mark.usefixtures("aws_env")


# An object goes up in one PUT, or in parts that a CompleteMultipartUpload makes one: `size`,
# and the request after which the key holds it.
EACH_WAY_UP = pytest.mark.parametrize(
    ("size", "last_step"),
    [(5000, "PutObject"), (5 * MIB + 10, "CompleteMultipartUpload")],
    ids=["put", "multipart"],
)


def raw_client(url: str) -> Any:
    return boto3.session.Session(**{k.lower(): v for k, v in _creds().items()}).client(
        "s3", endpoint_url=url
    )


def _creds() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
        "REGION_NAME": DUMMY_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def bucket(server: MotoServer) -> str:
    name = f"archive-{next(_bucket_numbers)}"
    raw_client(server.url).create_bucket(Bucket=name)
    return name


def s3_config(tmp_path: Path, url: str, bucket: str, **changes: Any) -> StorageConfig:
    fields: dict[str, Any] = {
        "backend": "s3",
        "bucket": bucket,
        "prefix": "suno/archive",
        "endpoint_url": url,
        "region": "us-east-1",
        "cache_dir": tmp_path / "cache",
    }
    return StorageConfig(**(fields | changes))


async def open_quick(config: StorageConfig, **kwargs: Any) -> S3Storage:
    """A storage whose client gives up fast (2 attempts, short timeouts)."""
    client = build_client(config, max_attempts=2, connect_timeout_s=2, read_timeout_s=10)
    return await S3Storage.open(config, client=client, **kwargs)


def new_file(storage: S3Storage, data: bytes) -> tuple[Path, str]:
    path = storage.temp_dir / f"{hashlib.sha1(data).hexdigest()}-{os.urandom(4).hex()}.part"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def stored(url: str, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    response = raw_client(url).get_object(Bucket=bucket, Key=key)
    return response["Body"].read(), response


def requests_of(storage: S3Storage) -> list[tuple[str, dict[str, str]]]:
    """(operation, headers) of every HTTP request the storage's client sends from now on."""
    seen: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, event_name: str, **_: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        seen.append((event_name.rsplit(".", 1)[-1], headers))

    storage._client.meta.events.register("before-send.s3", record)
    return seen


def uploads(seen: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [op for op, _ in seen if op in ("PutObject", "CreateMultipartUpload", "UploadPart")]


# --- the basics ------------------------------------------------------------------------------


async def test_files_and_manifest_round_trip_under_the_prefix(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        audio = os.urandom(300_000)
        path, sha = new_file(storage, audio)
        assert not await storage.exists("task1/track-0.mp3")
        await storage.put_file("task1/track-0.mp3", path, sha256=sha, content_type="audio/mpeg")
        await storage.put_bytes("task1/manifest.json", b'{"a": 1}', content_type="application/json")

        assert not path.exists()  # consumed
        assert await storage.exists("task1/track-0.mp3")
        assert await storage.read("task1/manifest.json") == b'{"a": 1}'
        assert await storage.read("task1/nothing.json") is None
        assert await storage.read("other/manifest.json") is None
    finally:
        await storage.close()

    keys = [o["Key"] for o in raw_client(server.url).list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["suno/archive/task1/manifest.json", "suno/archive/task1/track-0.mp3"]
    body, response = stored(server.url, bucket, "suno/archive/task1/track-0.mp3")
    assert body == audio
    assert hashlib.sha256(body).hexdigest() == sha
    assert response["ContentType"] == "audio/mpeg"
    assert response["Metadata"] == {"sha256": sha}
    _, manifest = stored(server.url, bucket, "suno/archive/task1/manifest.json")
    assert manifest["ContentType"] == "application/json"
    assert list((tmp_path / "cache" / TEMP_NAME).iterdir()) == [
        tmp_path / "cache" / TEMP_NAME / ".suno-archiver.lock"
    ]


async def test_an_empty_prefix_stores_keys_as_they_are(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket, prefix=""))
    try:
        path, sha = new_file(storage, b"png")
        await storage.put_file("t/cover-0.png", path, sha256=sha, content_type="image/png")
    finally:
        await storage.close()
    assert stored(server.url, bucket, "t/cover-0.png")[0] == b"png"


async def test_unsafe_keys_are_refused(tmp_path: Path, server: MotoServer, bucket: str) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        path, sha = new_file(storage, b"x")
        for key in ("../escape.mp3", "/abs.mp3", "a//b", ""):
            with pytest.raises(ValueError):
                await storage.put_file(key, path, sha256=sha, content_type="audio/mpeg")
            with pytest.raises(ValueError):
                await storage.read(key)
    finally:
        await storage.close()


async def test_put_bytes_replaces_the_manifest(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        await storage.put_bytes("t/manifest.json", b"one", content_type="application/json")
        await storage.put_bytes("t/manifest.json", b"two", content_type="application/json")
        assert await storage.read("t/manifest.json") == b"two"
    finally:
        await storage.close()


@EACH_WAY_UP
async def test_replace_file_puts_a_large_file_over_the_object_and_confirms_it(
    tmp_path: Path, server: MotoServer, bucket: str, size: int, last_step: str
) -> None:
    """The index's files: uploaded from a temp file (multipart when large), replacing what
    the key held, with their content type; the temp file is consumed."""
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    try:
        await storage.put_bytes("index.html", b"old page", content_type="text/plain")
        data = os.urandom(size)
        path, sha = new_file(storage, data)
        seen = requests_of(storage)
        await storage.replace_file("index.html", path, content_type="text/html; charset=utf-8")
        assert not path.exists()
        assert storage.local_path("index.html") is None
    finally:
        await storage.close()
    assert last_step in [op for op, _ in seen]
    assert all("if-none-match" not in headers for _, headers in seen)
    body, response = stored(server.url, bucket, "suno/archive/index.html")
    assert body == data and response["Metadata"] == {"sha256": sha}
    assert response["ContentType"] == "text/html; charset=utf-8"


# --- idempotence -------------------------------------------------------------------------------


async def test_the_same_content_twice_is_not_uploaded_again(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        data = os.urandom(100_000)
        path, sha = new_file(storage, data)
        await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        before = raw_client(server.url).head_object(Bucket=bucket, Key="suno/archive/t/a.mp3")

        seen = requests_of(storage)
        again, _ = new_file(storage, data)
        await storage.put_file("t/a.mp3", again, sha256=sha, content_type="audio/mpeg")
        assert not again.exists()  # consumed all the same
    finally:
        await storage.close()
    assert uploads(seen) == []
    after = raw_client(server.url).head_object(Bucket=bucket, Key="suno/archive/t/a.mp3")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])


async def test_other_content_under_the_key_is_a_conflict_and_left_as_is(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        first, sha1 = new_file(storage, b"first version")
        await storage.put_file("t/a.mp3", first, sha256=sha1, content_type="audio/mpeg")
        seen = requests_of(storage)
        second, sha2 = new_file(storage, b"other version")  # same size, other bytes
        with pytest.raises(StorageConflict, match=r"s3://archive-\d+/suno/archive/t/a\.mp3"):
            await storage.put_file("t/a.mp3", second, sha256=sha2, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert uploads(seen) == []
    assert stored(server.url, bucket, "suno/archive/t/a.mp3")[0] == b"first version"


@pytest.mark.parametrize(
    ("existing", "same"), [(b"written by someone else", True), (b"written by another tool", False)]
)
async def test_an_object_without_our_metadata_is_compared_by_its_bytes(
    tmp_path: Path, server: MotoServer, bucket: str, existing: bytes, same: bool
) -> None:
    raw_client(server.url).put_object(Bucket=bucket, Key="suno/archive/t/a.mp3", Body=existing)
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        mine = b"written by someone else"
        path, sha = new_file(storage, mine)
        if same:
            await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
        else:
            with pytest.raises(StorageConflict):
                await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert stored(server.url, bucket, "suno/archive/t/a.mp3")[0] == existing


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


# --- large files -------------------------------------------------------------------------------


async def test_a_large_file_goes_up_multipart_and_is_confirmed(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    try:
        data = os.urandom(6 * MIB + 1234)
        path, sha = new_file(storage, data)
        seen = requests_of(storage)
        await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert uploads(seen).count("UploadPart") == 2
    part_headers = [h for op, h in seen if op == "UploadPart"]
    assert all("x-amz-checksum-sha256" in h for h in part_headers)  # checked per part
    body, response = stored(server.url, bucket, "suno/archive/t/big.mp3")
    assert response["ETag"].strip('"').endswith("-2")
    assert hashlib.sha256(body).hexdigest() == sha
    assert response["Metadata"] == {"sha256": sha}
    assert response["ContentType"] == "audio/mpeg"


def start_upload_by_hand(url: str, bucket: str, key: str) -> str:
    """A multipart upload with one part, left as a run does when the store is gone at abort."""
    raw = raw_client(url)
    upload_id = raw.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    raw.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p" * 100)
    return upload_id


def uploads_in_progress(url: str, bucket: str) -> list[tuple[str, str]]:
    listing = raw_client(url).list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted((u["Key"], u["UploadId"]) for u in listing)


async def test_a_stale_multipart_upload_of_the_key_is_aborted_before_uploading_it(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    key = "suno/archive/t/big.mp3"
    start_upload_by_hand(server.url, bucket, key)
    sibling = start_upload_by_hand(server.url, bucket, key + ".other")  # same prefix, other key
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
        stale_upload_after_s=0,
    )
    try:
        path, sha = new_file(storage, os.urandom(5 * MIB + 1))
        await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert uploads_in_progress(server.url, bucket) == [(key + ".other", sibling)]


async def test_a_recent_multipart_upload_of_the_key_is_left_alone(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    """It may be another archiver's upload in progress. (moto dates every upload 2010, so
    "recent" here is a threshold older than that.)"""
    key = "suno/archive/t/big.mp3"
    theirs = start_upload_by_hand(server.url, bucket, key)
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
        stale_upload_after_s=100 * 365 * 86400,
    )
    try:
        path, sha = new_file(storage, os.urandom(5 * MIB + 1))
        await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert uploads_in_progress(server.url, bucket) == [(key, theirs)]


async def test_uploads_go_on_when_stale_uploads_cannot_be_listed(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await open_quick(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )

    def refuse(request: Any, **_: Any) -> None:
        raise bx.ConnectionClosedError(endpoint_url=request.url)

    storage._client.meta.events.register("before-send.s3.ListMultipartUploads", refuse)
    try:
        path, sha = new_file(storage, os.urandom(5 * MIB + 1))
        with capture_logs() as logs:
            await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert [e["key"] for e in logs if e["event"] == "s3_stale_uploads_not_aborted"] == [
        "suno/archive/t/big.mp3"
    ]
    assert (
        hashlib.sha256(stored(server.url, bucket, "suno/archive/t/big.mp3")[0]).hexdigest() == sha
    )


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


# --- failures ----------------------------------------------------------------------------------


async def test_a_missing_bucket_is_an_access_error_at_open(
    tmp_path: Path, server: MotoServer
) -> None:
    with pytest.raises(StorageAccessError) as caught:
        await S3Storage.open(s3_config(tmp_path, server.url, "no-such-bucket"))
    message = str(caught.value)
    assert "'no-such-bucket'" in message and server.url in message
    assert "does not exist" in message and "\n" not in message


async def test_a_bucket_name_botocore_refuses_is_one_line_not_an_unreachable_endpoint(
    tmp_path: Path, server: MotoServer
) -> None:
    """config.py rejects such names; this is the storage's own last line."""
    with pytest.raises(StorageAccessError) as caught:
        await S3Storage.open(s3_config(tmp_path, server.url, "bad:name!"))
    message = str(caught.value)
    assert "'bad:name!'" in message and "Parameter validation failed" in message
    assert "cannot reach" not in message and "\n" not in message


async def test_an_unreachable_endpoint_is_an_access_error_at_open(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageAccessError, match="cannot reach the endpoint") as caught:
        await open_quick(s3_config(tmp_path, url, "some-bucket"))
    assert url in str(caught.value) and "'some-bucket'" in str(caught.value)


async def test_a_part_that_keeps_failing_aborts_the_multipart_upload(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    storage = await open_quick(
        s3_config(tmp_path, server.url, bucket), multipart_threshold=5 * MIB, part_size=5 * MIB
    )

    def drop_part_two(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url:
            raise bx.ConnectionClosedError(endpoint_url=request.url)

    storage._client.meta.events.register("before-send.s3.UploadPart", drop_part_two)
    try:
        path, sha = new_file(storage, os.urandom(6 * MIB))
        with pytest.raises(StorageError) as caught:
            await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
        assert not isinstance(caught.value, StorageAccessError)  # transient: retried later
        assert not await storage.exists("t/big.mp3")
    finally:
        await storage.close()
    raw = raw_client(server.url)
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_the_server_stopped_mid_upload_then_restarted(tmp_path: Path) -> None:
    """The store goes away between two parts: the call fails as transient, nothing shows
    under the final key, and the same upload succeeds once the store is back."""
    srv = MotoServer()
    srv.start()
    try:
        raw_client(srv.url).create_bucket(Bucket="outage")
        storage = await open_quick(
            s3_config(tmp_path, srv.url, "outage"), multipart_threshold=5 * MIB, part_size=5 * MIB
        )
        try:
            stops = []

            def stop_server(params: dict[str, Any], **_: Any) -> None:
                if params.get("PartNumber") == 2 and not stops:
                    stops.append(srv.kill())

            storage._client.meta.events.register(
                "before-parameter-build.s3.UploadPart", stop_server
            )
            data = os.urandom(6 * MIB + 7)
            path, sha = new_file(storage, data)
            with pytest.raises(StorageError) as caught:
                await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
            assert not isinstance(caught.value, StorageAccessError)
            assert "suno/archive/t/big.mp3" in str(caught.value)
            with pytest.raises(StorageError):
                await storage.exists("t/big.mp3")  # still down

            srv.start()  # same port; moto starts empty, like a store restored from nothing
            raw_client(srv.url).create_bucket(Bucket="outage")
            assert not await storage.exists("t/big.mp3")
            await storage.put_file("t/big.mp3", path, sha256=sha, content_type="audio/mpeg")
            assert not path.exists()
        finally:
            await storage.close()
        body, _ = stored(srv.url, "outage", "suno/archive/t/big.mp3")
        assert hashlib.sha256(body).hexdigest() == sha
    finally:
        srv.kill()


# --- the cache folder, concurrency, error classes ----------------------------------------------


async def test_open_creates_the_cache_folder_and_removes_stale_temp_files(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    temp = tmp_path / "cache" / TEMP_NAME
    temp.mkdir(parents=True)
    (temp / "stale.part").write_bytes(b"left by a killed run")
    (temp / "stale-dir").mkdir()
    (tmp_path / "cache" / "users-own-file").write_bytes(b"keep")
    storage = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
    try:
        assert storage.temp_dir == temp
        assert sorted(p.name for p in temp.iterdir()) == [".suno-archiver.lock"]
        assert (tmp_path / "cache" / "users-own-file").read_bytes() == b"keep"
        second = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
        (temp / "in-flight.part").write_bytes(b"x")
        third = await S3Storage.open(s3_config(tmp_path, server.url, bucket))
        assert (temp / "in-flight.part").exists()  # another archiver is using the folder
        await second.close()
        await third.close()
    finally:
        await storage.close()


async def test_uploads_at_once_are_bounded(
    tmp_path: Path, server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket, max_concurrent_uploads=2)
    )
    running = peak = 0
    lock = threading.Lock()
    real = storage._objects.put_file

    def counting(*args: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        try:
            real(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(storage._objects, "put_file", counting)
    try:
        files = [new_file(storage, f"file {i}".encode()) for i in range(8)]
        await asyncio.gather(
            *(
                storage.put_file(f"t/f{i}.png", p, sha256=s, content_type="image/png")
                for i, (p, s) in enumerate(files)
            )
        )
    finally:
        await storage.close()
    assert peak == 2


@EACH_WAY_UP
async def test_a_bug_in_a_storage_thread_is_raised_as_it_came_and_frees_the_upload_slot(
    tmp_path: Path, server: MotoServer, bucket: str, size: int, last_step: str
) -> None:
    """A programming error under the storage (here a broken method of the boto3 client: the
    head, or the request that stores the object, which multipart makes in s3transfer's
    threads) is raised as it came, not classified as a transient StorageError that the engine
    would retry for a day; and the failed upload gives its slot back (one slot here: a leaked
    slot would hold the next upload forever)."""
    storage = await S3Storage.open(
        s3_config(tmp_path, server.url, bucket, max_concurrent_uploads=1),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    client = storage._client
    storing = {"PutObject": "put_object", "CompleteMultipartUpload": "complete_multipart_upload"}

    def broken(**_: Any) -> None:
        raise TypeError("broken client method")

    async def bugs_then_upload() -> None:
        path, sha = new_file(storage, os.urandom(size))
        for method in ("head_object", storing[last_step]):
            setattr(client, method, broken)  # this client instance only
            with pytest.raises(TypeError, match="broken client method"):
                if method == "head_object":
                    await storage.exists("t/a.mp3")
                await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")
            delattr(client, method)
        await storage.put_file("t/a.mp3", path, sha256=sha, content_type="audio/mpeg")

    try:
        await asyncio.wait_for(bugs_then_upload(), timeout=60)
    finally:
        await asyncio.wait_for(storage.close(), timeout=60)
    assert stored(server.url, bucket, "suno/archive/t/a.mp3")[1]["ContentLength"] == size


@pytest.mark.parametrize(
    "failure",
    [
        boto3.exceptions.S3UploadFailedError("upload failed"),
        s3transfer.exceptions.RetriesExceededError(OSError("reset")),
    ],
    ids=["boto3", "s3transfer"],
)
async def test_the_transfer_libraries_failures_stay_storage_failures(
    tmp_path: Path, server: MotoServer, bucket: str, failure: Exception
) -> None:
    """boto3's and s3transfer's own failure types are what a store or the network did, not a
    bug: they come out as a StorageError (retried like any), and the next upload succeeds."""
    storage = await open_quick(s3_config(tmp_path, server.url, bucket))
    client = storage._client

    def failing(**_: Any) -> None:
        raise failure

    try:
        path, sha = new_file(storage, b"x" * 5000)
        client.put_object = failing  # this client instance only
        with pytest.raises(StorageError, match="upload"):
            await storage.put_file("t/b.mp3", path, sha256=sha, content_type="audio/mpeg")
        del client.put_object
        await storage.put_file("t/b.mp3", path, sha256=sha, content_type="audio/mpeg")
    finally:
        await storage.close()
    assert stored(server.url, bucket, "suno/archive/t/b.mp3")[1]["ContentLength"] == 5000


async def test_stalled_uploads_leave_the_default_thread_pool_free(
    tmp_path: Path, server: MotoServer, bucket: str
) -> None:
    """As many uploads as asyncio's default pool has threads hang on a stalled store; a
    default-pool call (a download's write, say) still runs at once: the uploads are in the
    storage's own threads. (Sharing the pool, the call would wait for an upload's requests
    to time out.)"""
    loop = asyncio.get_running_loop()
    default_threads = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default
    gate = Gate(server.port)
    await gate.open()
    storage = await open_quick(
        s3_config(tmp_path, gate.url, bucket, max_concurrent_uploads=default_threads)
    )
    attempts_ended: list[str] = []
    storage._client.meta.events.register(
        "needs-retry.s3", lambda event_name, **_: attempts_ended.append(event_name)
    )
    try:
        gate.pause()
        uploads = [
            asyncio.create_task(
                storage.put_file(f"t/f{i}.png", path, sha256=sha, content_type="image/png")
            )
            for i, (path, sha) in enumerate(
                new_file(storage, f"file {i}".encode()) for i in range(default_threads)
            )
        ]
        deadline = loop.time() + 30
        while gate.held < default_threads:  # every upload's first request is on the wire
            assert loop.time() < deadline, f"{gate.held} requests held"
            await asyncio.sleep(0.01)

        await asyncio.to_thread(lambda: None)
        assert attempts_ended == []  # no upload request ended to free a thread for it

        gate.resume()
        await asyncio.gather(*uploads)
    finally:
        gate.resume()
        await storage.close()
        await gate.close()
    assert len(raw_client(server.url).list_objects_v2(Bucket=bucket)["Contents"]) == default_threads


def _client_error(code: str, status: int, message: str = "m", **more: str) -> bx.ClientError:
    return bx.ClientError(
        {
            "Error": {"Code": code, "Message": message, **more},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


_CHECKSUM_REJECTIONS = [
    _client_error("NotImplemented", 501, "Header 'x-amz-checksum-crc32' not implemented"),
    _client_error(
        "NotImplemented", 501, "A header you provided is not implemented", Header="x-amz-trailer"
    ),
    _client_error("InvalidArgument", 400, "Unsupported header 'x-amz-sdk-checksum-algorithm'"),
]


@pytest.mark.parametrize(
    ("exc", "access"),
    [
        (_client_error("NoSuchBucket", 404), True),
        (_client_error("AccessDenied", 403), True),
        (_client_error("InvalidAccessKeyId", 403), True),
        (_client_error("SignatureDoesNotMatch", 403), True),
        (_client_error("403", 403), True),
        (bx.NoCredentialsError(), True),
        (_client_error("SlowDown", 503), False),
        (_client_error("InternalError", 500), False),
        (_client_error("BadDigest", 400), False),
        (bx.EndpointConnectionError(endpoint_url="http://x"), False),
        (bx.ReadTimeoutError(endpoint_url="http://x"), False),
        (OSError("disk"), False),
        (bx.ParamValidationError(report="Invalid bucket name\nmore"), False),
        *((exc, True) for exc in _CHECKSUM_REJECTIONS),
        (_client_error("BadDigest", 400, "The checksum you specified did not match"), False),
        (_client_error("NotImplemented", 501, "not implemented", Header="If-None-Match"), False),
    ],
)
def test_failures_are_classified_in_one_place(tmp_path: Path, exc: Exception, access: bool) -> None:
    config = s3_config(tmp_path, "http://127.0.0.1:9", "b-1")
    storage = S3Storage(config, client=build_client(config))
    error = storage._objects._error(exc, "suno/archive/t/a.mp3", "upload")
    assert isinstance(error, StorageError)
    assert isinstance(error, StorageAccessError) is access
    assert "s3://b-1/suno/archive/t/a.mp3" in str(error) and "\n" not in str(error)


def test_access_denied_names_every_permission_the_archiver_uses(tmp_path: Path) -> None:
    config = s3_config(tmp_path, "http://127.0.0.1:9", "b-1")
    storage = S3Storage(config, client=build_client(config))
    message = str(storage._objects._error(_client_error("AccessDenied", 403), "k", "upload"))
    for action in ("GetObject", "PutObject", "DeleteObject", "ListBucket", "AbortMultipartUpload"):
        assert f"s3:{action}" in message, message


@pytest.mark.parametrize("exc", _CHECKSUM_REJECTIONS)
def test_a_store_that_rejects_checksum_headers_is_told_what_to_set(
    tmp_path: Path, exc: bx.ClientError
) -> None:
    config = s3_config(tmp_path, "http://127.0.0.1:9", "b-1")
    error = S3Storage(config, client=build_client(config))._objects._error(exc, "k", "upload")
    assert "checksum_when_required = true" in str(error)

    relaxed = s3_config(tmp_path, "http://127.0.0.1:9", "b-1", checksum_when_required=True)
    error = S3Storage(relaxed, client=build_client(relaxed))._objects._error(exc, "k", "upload")
    assert "checksum_when_required" not in str(error)  # already set: the hint would not help
