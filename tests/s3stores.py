"""S3Storage against moto's server: the config that points one at a bucket, a test-side client
to read what it stored, the requests it sends, and a file ready to store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from s3server import DUMMY_ENV

from archiver.config import StorageConfig
from archiver.storage.s3 import S3Storage
from archiver.storage.s3client import build_client
from archiver.storage.s3objects import MIB

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
