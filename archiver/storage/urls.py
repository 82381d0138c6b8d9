"""Where an archived file can be fetched (SPEC "Task events": a file's `url`): under
`[storage] public_base_url`, or on S3 a presigned GET URL (`presign_ttl_s`), or nowhere."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from archiver.config import StorageConfig
from archiver.storage.base import Storage


def file_urls(config: StorageConfig, storage: Storage) -> Callable[[str], str | None]:
    """An archive path (`<task_id>/…`) → its URL, or None when the archive is not served."""
    if config.public_base_url:
        base = config.public_base_url.rstrip("/")
        return lambda path: f"{base}/{quote(path, safe='/')}"
    if config.backend == "s3" and config.presign_ttl_s > 0:
        presign: Callable[[str, int], str] = storage.presign_get  # type: ignore[attr-defined]
        ttl_s = config.presign_ttl_s
        return lambda path: presign(path, ttl_s)
    return lambda _path: None
