"""An archive in a bucket as `verify` sees it: one listing, then one HEAD a file.

Without `--read-data` nothing is downloaded but the manifests: a file's size, the SHA-256 the
store computed as it received the object (a single PUT's full-object checksum) and ours in
`x-amz-meta-sha256` must agree with the manifest. An object with neither (another tool put it
there) is read and hashed. With `--read-data` every file is downloaded and hashed, in chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Iterator
from typing import Any

import botocore.exceptions as bx

from archiver.config import StorageConfig
from archiver.errors import StorageError
from archiver.storage.s3checksums import CHUNK, full_object_sha256
from archiver.storage.s3client import (
    MISSING_CODES,
    S3_FAILURES,
    check_bucket,
    classify,
    client_for,
    error_code,
    head_or_none,
)
from archiver.storage.s3objects import META_SHA256
from archiver.verify.findings import QUARANTINE_NAME, Listed, Observed
from archiver.verify.view import Folder

_READ_CAP = 64 * 1024 * 1024  # read() is for manifests
WORKERS = 16  # HEADs in flight: each is a round trip, not work for this machine


class S3View:
    def __init__(self, config: StorageConfig, *, client: Any = None) -> None:
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        self.location = config.location
        self.workers = self.read_workers = WORKERS
        self._checksums = not config.checksum_when_required
        self._client = client if client is not None else client_for(config)
        self._endpoint = str(self._client.meta.endpoint_url)
        check_bucket(self._client, self.bucket, self._endpoint)

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _error(self, exc: Exception, key: str, doing: str) -> Exception:
        where = f"s3://{self.bucket}/{self._full(key)}"
        return classify(exc, where, doing, endpoint=self._endpoint, checksums=self._checksums)

    def _list(self, rel_prefix: str) -> Iterator[Listed]:
        prefix = (
            self._full(rel_prefix) if rel_prefix else (f"{self.prefix}/" if self.prefix else "")
        )
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = self._rel(obj["Key"])
                    yield Listed(key, obj["Size"], obj["LastModified"].timestamp())
        except S3_FAILURES as exc:
            raise self._error(exc, rel_prefix, "list") from exc

    def folders(self, only: Collection[str] | None) -> Iterator[Folder]:
        if only is not None:
            yield from (Folder(name, self.list_folder(name)) for name in only)
            return
        # Keys come sorted, so a folder's keys ("<name>/…") come together.
        root_files: dict[str, Listed] = {}
        name: str | None = None
        files: dict[str, Listed] = {}
        for listed in self._list(""):
            top, slash, _ = listed.key.partition("/")
            if not slash:
                root_files[listed.key] = listed
                continue
            if top != name:
                if name is not None and name != QUARANTINE_NAME:
                    yield Folder(name, files)
                name, files = top, {}
            files[listed.key] = listed
        if name is not None and name != QUARANTINE_NAME:
            yield Folder(name, files)
        yield Folder("", root_files)

    def list_folder(self, name: str) -> dict[str, Listed]:
        return {listed.key: listed for listed in self._list(f"{name}/")}

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return head_or_none(
                self._client, self.bucket, self._full(key), checksums=self._checksums
            )
        except S3_FAILURES as exc:
            raise self._error(exc, key, "head") from exc

    def stat(self, key: str) -> Listed | None:
        head = self._head(key)
        if head is None:
            return None
        return Listed(key, head["ContentLength"], head["LastModified"].timestamp())

    def read(self, key: str) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            with contextlib.closing(response["Body"]) as body:
                return body.read(_READ_CAP)
        except bx.ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise self._error(exc, key, "read") from exc
        except S3_FAILURES as exc:
            raise self._error(exc, key, "read") from exc

    def observe(self, entry: dict[str, Any], listed: Listed, *, read_data: bool) -> Observed | None:
        if listed.size != entry["bytes"]:
            return Observed(listed.size, None)
        if read_data:
            return self._hash(listed.key)
        head = self._head(listed.key)
        if head is None:  # removed since the listing
            return None
        size = head["ContentLength"]
        reported = [
            sha
            for sha in (
                str(head.get("Metadata", {}).get(META_SHA256, "")).lower(),
                full_object_sha256(head),
            )
            if sha
        ]
        if not reported:
            return self._hash(listed.key)
        expected = entry["sha256"].lower()
        return Observed(size, next((sha for sha in reported if sha != expected), expected))

    def _hash(self, key: str) -> Observed | None:
        digest = hashlib.sha256()
        size = 0
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            with contextlib.closing(response["Body"]) as body:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except bx.ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            raise self._error(exc, key, "read") from exc
        except S3_FAILURES as exc:
            raise self._error(exc, key, "read") from exc
        return Observed(size, digest.hexdigest(), size)

    def quarantine(self, key: str, stamp: str) -> str:
        """Copy `key` under the quarantine prefix, confirm the copy, then remove the original
        (on a versioned bucket a delete marker: the version stays). Returns the copy's key."""
        dest_key = f"{QUARANTINE_NAME}/{stamp}/{key}"
        head = self._head(key)
        if head is None:
            raise StorageError(f"s3://{self.bucket}/{self._full(key)}: gone before quarantine")
        source = {"Bucket": self.bucket, "Key": self._full(key)}
        if head.get("VersionId") not in (None, "null"):
            source["VersionId"] = head["VersionId"]
        try:
            self._client.copy_object(
                Bucket=self.bucket, Key=self._full(dest_key), CopySource=source
            )
        except S3_FAILURES as exc:
            raise self._error(exc, dest_key, "copy to quarantine") from exc
        copied = self._head(dest_key)
        if copied is None or copied["ContentLength"] != head["ContentLength"]:
            raise StorageError(f"s3://{self.bucket}/{self._full(dest_key)}: copy not confirmed")
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except S3_FAILURES as exc:
            raise self._error(exc, key, "delete after quarantine") from exc
        return dest_key

    def close(self) -> None:
        self._client.close()
