"""S3 storage against moto's server mode when things go wrong: a missing bucket, an unreachable
or stopped endpoint, failing parts, bugs and stalls in its threads, and how each failure is
classified."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import boto3.exceptions
import botocore.exceptions as bx
import pytest
import s3transfer.exceptions
from s3server import Gate, MotoServer, free_port
from s3stores import EACH_WAY_UP, new_file, open_quick, raw_client, s3_config, stored

from archiver.errors import StorageAccessError, StorageError
from archiver.storage.s3 import S3Storage
from archiver.storage.s3client import build_client
from archiver.storage.s3objects import MIB
from archiver.storage.tempdir import TEMP_NAME

pytestmark = pytest.mark.usefixtures("aws_env")


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
