"""Where archived bytes go. The engine talks only to `Storage`; see local.py and s3.py."""

from __future__ import annotations

from archiver.config import StorageConfig
from archiver.storage.base import Storage, check_key
from archiver.storage.local import LocalStorage


async def open_storage(config: StorageConfig) -> Storage:
    """The backend `config` names, ready to use (an unusable one raises StorageAccessError)."""
    if config.backend == "s3":
        from archiver.storage.s3 import S3Storage  # boto3 loads only when a bucket is used

        return await S3Storage.open(config)
    return LocalStorage(config.path)


__all__ = ["Storage", "check_key", "open_storage"]
