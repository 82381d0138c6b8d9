"""S3 (and S3-compatible) storage: files are downloaded and tagged in a local cache folder,
then uploaded; every object is confirmed (size and SHA-256) before the manifest may name it.

Every call of the one client (s3client.py) runs in the storage's own threads, never asyncio's
default pool: uploads stalled on a slow store must not starve the downloads and tagging that
share that pool. At most `max_concurrent_uploads` uploads run at once, with a few threads to
spare for heads and reads. That, the Storage interface, the prefix and the cache folder are this
module's; what is done to the objects, and why it is safe, is s3objects.py.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from archiver.config import StorageConfig
from archiver.errors import StorageAccessError
from archiver.storage.base import Unchanged, check_key
from archiver.storage.s3client import check_bucket, client_for
from archiver.storage.s3objects import (
    MIN_PART_SIZE,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    STALE_UPLOAD_AFTER_S,
    S3Objects,
)
from archiver.storage.tempdir import TEMP_NAME, TempDir

log = structlog.get_logger()

T = TypeVar("T")
_SPARE_THREADS = 4  # beyond the upload bound: heads and manifest reads never wait for uploads


class S3Storage:
    """An archive under `s3://bucket/prefix/` (see archiver.storage.base.Storage)."""

    def __init__(
        self,
        config: StorageConfig,
        *,
        client: Any = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        stale_upload_after_s: float = STALE_UPLOAD_AFTER_S,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if config.cache_dir is None:
            raise StorageAccessError('[storage] cache_dir: required when backend = "s3"')
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        # Inside cache_dir: only this folder of it is ever cleaned.
        self._temp = TempDir(Path(config.cache_dir) / TEMP_NAME)
        self.temp_dir = self._temp.path
        self._client = client if client is not None else client_for(config)
        self._objects = S3Objects(
            self._client,
            self.bucket,
            checksums=not config.checksum_when_required,
            multipart_threshold=multipart_threshold,
            part_size=part_size,
            stale_upload_after_s=stale_upload_after_s,
        )
        self.endpoint = self._objects.endpoint
        self._uploads = asyncio.Semaphore(config.max_concurrent_uploads)
        self._executor = ThreadPoolExecutor(
            config.max_concurrent_uploads + _SPARE_THREADS, thread_name_prefix="s3"
        )
        self._in_flight: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, config: StorageConfig, **kwargs: Any) -> S3Storage:
        """A storage whose bucket answered, with a clean temp folder; else StorageAccessError
        (one line naming the bucket and endpoint)."""
        if "client" not in kwargs:
            kwargs["client"] = await asyncio.to_thread(client_for, config)
        storage = cls(config, **kwargs)
        try:
            await storage._in_thread(
                check_bucket, storage._client, storage.bucket, storage.endpoint
            )
            await storage._in_thread(storage._prepare_temp_dir)
        except BaseException:
            await storage.close()
            raise
        log.info(
            "s3_opened", bucket=storage.bucket, prefix=storage.prefix, endpoint=storage.endpoint
        )
        return storage

    # --- keys ------------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # --- opening, closing --------------------------------------------------------------------

    def _prepare_temp_dir(self) -> None:
        """Create the temp folder and empty it of what a killed run left (see tempdir.py)."""
        try:
            removed = self._temp.open()
        except OSError as exc:
            raise StorageAccessError(
                f"{self.temp_dir}: cannot use as cache folder: {exc.strerror or exc}"
            ) from exc
        if removed:
            log.info("s3_stale_temp_removed", folder=str(self.temp_dir), entries=removed)

    async def close(self) -> None:
        """Let uploads whose callers were cancelled finish (or fail) first: an upload is
        never cut off halfway by the client closing under it."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await asyncio.to_thread(self._shut_down_threads)
        self._client.close()
        self._temp.close()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the storage's threads, with the caller's context (its log fields)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, context.run, fn, *args
        )

    def _shut_down_threads(self) -> None:
        self._objects.shutdown()
        self._executor.shutdown()  # waits for heads and reads whose callers were cancelled

    # --- the Storage interface -----------------------------------------------------------------

    async def exists(self, key: str) -> bool:
        full = self._key(key)
        return await self._in_thread(self._objects.head, full) is not None

    async def read(self, key: str) -> bytes | None:
        full = self._key(key)
        return await self._in_thread(self._objects.read, full)

    async def put_file(self, key: str, path: Path, *, sha256: str, content_type: str) -> None:
        full = self._key(key)
        await self._bounded(self._objects.put_file, full, Path(path), sha256.lower(), content_type)

    async def read_tagged(self, key: str) -> tuple[bytes | None, Unchanged]:
        data, etag = await self._in_thread(self._objects.read_tagged, self._key(key))
        return data, Unchanged(etag)

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str, unchanged: Unchanged | None = None
    ) -> None:
        full = self._key(key)
        await self._bounded(self._objects.put_bytes, full, bytes(data), content_type, unchanged)

    def presign_get(self, key: str, ttl_s: int) -> str:
        """A URL that GETs the object for `ttl_s` seconds (`[storage] presign_ttl_s`): signed
        here with the client's credentials, no request made."""
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=ttl_s
        )

    async def _bounded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run an upload in a thread under the upload bound. A cancelled caller stops waiting,
        but the upload keeps its slot until its thread ends (close() waits for it)."""
        await self._uploads.acquire()
        try:
            future = asyncio.ensure_future(self._in_thread(fn, *args))
        except BaseException:
            self._uploads.release()
            raise
        self._in_flight.add(future)
        future.add_done_callback(self._upload_ended)
        await asyncio.shield(future)

    def _upload_ended(self, future: asyncio.Future[Any]) -> None:
        self._uploads.release()
        self._in_flight.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved, so a cancelled caller's failure is not "unseen"
