"""S3 storage against moto's server mode (a real HTTP S3 endpoint on 127.0.0.1): files and
manifests stored under the prefix, content already there not uploaded again, large files in
parts and stale multipart uploads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import botocore.exceptions as bx
import pytest
from s3server import MotoServer
from s3stores import (
    new_file,
    open_quick,
    raw_client,
    requests_of,
    s3_config,
    stored,
    uploads,
)
from structlog.testing import capture_logs

from archiver.errors import StorageConflict
from archiver.storage.s3 import S3Storage
from archiver.storage.s3objects import MIB
from archiver.storage.tempdir import TEMP_NAME

pytestmark = pytest.mark.usefixtures("aws_env")


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
