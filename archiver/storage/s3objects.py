"""The objects of one bucket, as the S3 storage's threads work on them: heads, reads, uploads
that only ever take a free key, their confirmation, and the settling with another writer's
object. Every method blocks (s3.py runs them in its threads).

Safety: a PUT and a multipart-complete are atomic (a key shows the old object or every byte of
the new, never a part); a failed multipart upload is aborted by the transfer manager (one an
outage left behind is aborted before its key is uploaded again); file uploads are conditional
(If-None-Match: *), so of two writers of one key (a daemon and a backfill, say) exactly one
stores and the other settles against what it finds; and the manifest is written last. A key
that already holds other content is never overwritten, and an object is only ever deleted by
the writer that just wrote it (known by its upload's ETag and version), when it fails
confirmation.

Integrity: the local file is re-hashed before upload (its SHA-256, and for multipart the SHA-256
of every part). A single PUT carries the full SHA-256, which S3 checks against the bytes it
received; a multipart upload carries a SHA-256 per part, checked per part, and the object's
checksum-of-checksums is compared with ours afterwards (the arithmetic: s3checksums.py). Stores
that report no checksum (or `checksum_when_required` stores) are confirmed by size and our
`x-amz-meta-sha256`.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import botocore.exceptions as bx
import structlog
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.utils import ChunksizeAdjuster

from archiver.errors import StorageConflict, StorageError, WriteRefused
from archiver.storage.base import Unchanged
from archiver.storage.s3checksums import (
    CHUNK,
    Scan,
    checksum_matches,
    full_object_sha256,
    same_object,
    scan_bytes,
    scan_file,
)
from archiver.storage.s3client import (
    MISSING_CODES,
    PRECONDITION_CODES,
    S3_FAILURES,
    abort_stale_uploads,
    classify,
    error_code,
    head_or_none,
    one_line,
    refuses_conditional_writes,
)

log = structlog.get_logger()

T = TypeVar("T")
MIB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MIB
PART_SIZE = 16 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
# A multipart upload of a key this old is one a run could not abort (the store was unreachable
# when it failed): S3 bills its parts until it is aborted. Younger ones may be another
# archiver's upload in progress; aborting those would only make it retry.
STALE_UPLOAD_AFTER_S = 3600.0
META_SHA256 = "sha256"  # sent as x-amz-meta-sha256: the hex SHA-256 of the object
_READ_CAP = 64 * MIB  # read() is for manifests
_COMPLETING = "suno_archiver_key"  # in a request's context: the key of our multipart upload


class S3Objects:
    """The objects of `bucket` (full keys: the storage adds its prefix)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        checksums: bool,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        stale_upload_after_s: float = STALE_UPLOAD_AFTER_S,
    ) -> None:
        self.bucket = bucket
        self._client = client
        self.endpoint = str(client.meta.endpoint_url)
        self._checksums = checksums  # False: checksum_when_required
        self._threshold = multipart_threshold
        self._part_size = part_size
        self._stale_after = timedelta(seconds=stale_upload_after_s)
        self._transfer = TransferManager(
            client,
            TransferConfig(
                multipart_threshold=multipart_threshold,
                multipart_chunksize=part_size,
                max_concurrency=4,
                preferred_transfer_client="classic",
            ),
        )
        # Multipart uploads under way: key → the CompleteMultipartUpload answer once it came.
        self._completing: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        # If-None-Match on writes, until the store answers that it has none (see _upload_new).
        self._conditional = True
        events = client.meta.events
        events.register(
            "before-parameter-build.s3.CompleteMultipartUpload", self._complete_if_absent
        )
        events.register("after-call.s3.CompleteMultipartUpload", self._completed)

    def shutdown(self) -> None:
        self._transfer.shutdown()

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _error(self, exc: Exception, key: str, doing: str) -> StorageError:
        return classify(
            exc, self._where(key), doing, endpoint=self.endpoint, checksums=self._checksums
        )

    def _call(self, key: str, doing: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fn(**kwargs)
        except S3_FAILURES as exc:
            raise self._error(exc, key, doing) from exc

    def head(self, full: str) -> dict[str, Any] | None:
        try:
            return head_or_none(self._client, self.bucket, full, checksums=self._checksums)
        except S3_FAILURES as exc:
            raise self._error(exc, full, "head") from exc

    def read(self, full: str) -> bytes | None:
        return self.read_tagged(full)[0]

    def read_tagged(self, full: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and ETag (a conditional write's If-Match); None, None if none."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            if response.get("ContentLength", 0) > _READ_CAP:
                raise StorageError(f"{self._where(full)}: too large to read into memory")
            with contextlib.closing(response["Body"]) as body:
                return body.read(), response.get("ETag")
        except bx.ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return None, None
            raise self._error(exc, full, "read") from exc
        except S3_FAILURES as exc:
            raise self._error(exc, full, "read") from exc

    def put_file(self, full: str, path: Path, sha256: str, content_type: str) -> None:
        try:
            self._put_file_checked(full, path, sha256, content_type)
        except S3_FAILURES as exc:
            raise self._error(exc, full, "upload") from exc

    def _put_file_checked(self, full: str, path: Path, sha256: str, content_type: str) -> None:
        existing = self.head(full)
        if existing is None:
            existing = self._upload_new(full, path, sha256, content_type)
        if existing is not None:
            self._settle_existing(full, existing, path, sha256)
        path.unlink(missing_ok=True)

    def _upload_new(
        self, full: str, path: Path, sha256: str, content_type: str
    ) -> dict[str, Any] | None:
        """Upload `path` to a key our head found free. Returns None once our object is
        confirmed, or the head of the object another writer stored there first (or over ours)."""
        where = self._where(full)
        size = path.stat().st_size
        multipart = size >= self._threshold
        part_size = ChunksizeAdjuster().adjust_chunksize(self._part_size, size)
        scan = scan_file(path, part_size if multipart else None)
        if scan.sha256 != sha256:
            raise StorageError(
                f"{where}: local file {path.name} no longer has SHA-256 {sha256}; not uploaded"
            )
        try:
            written = self._upload(full, path, scan, content_type, multipart=multipart)
        except bx.ClientError as exc:
            if error_code(exc) in PRECONDITION_CODES:
                return self._lost_race(full, exc)
            if not self._drop_conditions_if_unsupported(full, exc):
                raise
            written = self._upload(full, path, scan, content_type, multipart=multipart)
        existing = self._verify(full, scan, sha256, written)
        if existing is None:
            log.info("s3_upload", key=full, bytes=size, parts=scan.parts if multipart else 1)
        return existing

    def _upload(
        self, full: str, path: Path, scan: Scan, content_type: str, *, multipart: bool
    ) -> dict[str, Any]:
        if multipart:
            return self._upload_multipart(full, path, scan.sha256, content_type)
        with open(path, "rb") as body:
            return self._put_object(full, body, scan, content_type, if_absent=self._conditional)

    def _drop_conditions_if_unsupported(self, full: str, exc: bx.ClientError) -> bool:
        """A store that refuses If-None-Match (see refuses_conditional_writes) gets plain writes
        from then on: the head before each upload is the only guard against overwriting. True
        when that is what `exc` says (and the upload should go again without it)."""
        if not self._conditional or not refuses_conditional_writes(exc):
            return False
        self._conditional = False
        log.warning("s3_conditional_writes_unsupported", key=full, error=one_line(exc))
        return True

    def _lost_race(self, full: str, exc: bx.ClientError) -> dict[str, Any]:
        """The head of what another writer stored between our head and our conditional
        upload: theirs stands."""
        existing = self.head(full)
        if existing is None:  # 409: their conditional write is still in progress
            raise StorageError(
                f"{self._where(full)}: another upload of this key is in progress; not uploaded"
            ) from exc
        log.info("s3_upload_lost_race", key=full)
        return existing

    def _put_object(
        self,
        full: str,
        body: Any,
        scan: Scan,
        content_type: str,
        *,
        if_absent: bool,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """One PUT. The full SHA-256 goes with it for the store to check against the body
        (and with ChecksumAlgorithm, so the store keeps it and reports it on head)."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": body,
            "ContentType": content_type,
            "Metadata": {META_SHA256: scan.sha256},
        }
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if self._checksums:
            kwargs["ChecksumAlgorithm"] = "SHA256"
            kwargs["ChecksumSHA256"] = scan.full_b64
        return self._client.put_object(**kwargs)

    def _upload_multipart(
        self, full: str, path: Path, sha256: str, content_type: str
    ) -> dict[str, Any]:
        """Upload through the transfer manager (parts in parallel, aborted on failure);
        returns the CompleteMultipartUpload answer, which _complete_if_absent made
        conditional and _completed recorded."""
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": {META_SHA256: sha256}}
        if self._checksums:
            extra["ChecksumAlgorithm"] = "SHA256"  # per part, checked by the store
        abort_stale_uploads(
            self._client, self.bucket, full, datetime.now(UTC) - self._stale_after,
            lambda exc: self._error(exc, full, "abort stale multipart uploads"),
        )  # fmt: skip
        with self._lock:
            if full in self._completing:
                raise StorageError(f"{self._where(full)}: already being uploaded; not uploaded")
            self._completing[full] = {}
        try:
            self._transfer.upload(str(path), self.bucket, full, extra_args=extra).result()
            with self._lock:
                return self._completing[full]
        finally:
            with self._lock:
                del self._completing[full]

    def _complete_if_absent(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        """before-parameter-build of CompleteMultipartUpload: our multipart uploads complete
        only if the key is still free, as our PUTs do (s3transfer does not pass IfNoneMatch)."""
        with self._lock:
            key = params.get("Key")
            ours = params.get("Bucket") == self.bucket and key in self._completing
        if ours and self._conditional:
            params["IfNoneMatch"] = "*"
            context[_COMPLETING] = params["Key"]

    def _completed(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        """after-call of CompleteMultipartUpload: keep the answer (its ETag and VersionId name
        the object we wrote); s3transfer returns nothing."""
        key = context.get(_COMPLETING)
        if key is not None and http_response.status_code < 300:
            with self._lock:
                if key in self._completing:
                    self._completing[key] = parsed

    def _settle_existing(self, full: str, head: dict[str, Any], path: Path, sha256: str) -> None:
        """`full` exists: the same bytes make the upload a no-op; others are a conflict."""
        size = path.stat().st_size
        theirs = self._sha256_of_existing(full, head) if head["ContentLength"] == size else None
        if theirs != sha256:
            log.warning("s3_conflict", key=full, bytes=head["ContentLength"], sha256=theirs)
            raise StorageConflict(
                f"{self._where(full)}: already exists with other content "
                f"({head['ContentLength']} bytes, sha256 {theirs or 'differs'}); left as is"
            )
        log.info("s3_skip_same", key=full, bytes=size)

    def _sha256_of_existing(self, full: str, head: dict[str, Any]) -> str:
        """An existing object's SHA-256: the store's full-object checksum or ours from the
        metadata (when there are both, they must agree), else by reading it (an object some
        other tool wrote)."""
        ours = str(head.get("Metadata", {}).get(META_SHA256, "")).lower()
        stores = full_object_sha256(head)
        if ours and stores and ours != stores:
            log.warning("s3_checksum_disagrees", key=full, metadata=ours, store=stores)
            raise StorageConflict(
                f"{self._where(full)}: already exists, but its sha256 metadata {ours} "
                f"disagrees with the store's checksum {stores}; left as is"
            )
        if ours or stores:
            return ours or str(stores)
        digest = hashlib.sha256()
        response = self._client.get_object(Bucket=self.bucket, Key=full)
        with contextlib.closing(response["Body"]) as body:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _verify(
        self, full: str, scan: Scan, sha256: str, written: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Confirm the stored object is the one we wrote (`written` is the upload's answer)
        and is the file: size, our metadata, and the store's own SHA-256 when it reports one.
        Returns None when confirmed, or the head of another writer's object that now holds
        the key (left alone: the caller settles). A mismatch removes our object, never one
        someone else wrote."""
        head = self.head(full)
        if head is None:
            problem = "not found after upload"
        elif not same_object(head, written):
            log.info("s3_replaced_by_another_writer", key=full)
            return head
        elif head.get("ContentLength") != scan.size:
            problem = f"{head.get('ContentLength')} bytes stored, {scan.size} sent"
        elif head.get("Metadata", {}).get(META_SHA256, "").lower() != sha256:
            problem = "sha256 metadata differs"
        elif (checksum := head.get("ChecksumSHA256")) and not checksum_matches(checksum, scan):
            problem = f"stored checksum {checksum} does not match the file"
        else:
            return None
        log.error("s3_verify_failed", key=full, problem=problem)
        if head is not None:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full)
            except S3_FAILURES as exc:
                log.error("s3_delete_failed", key=full, error=str(self._error(exc, full, "delete")))
        raise StorageError(f"{self._where(full)}: upload not confirmed: {problem}")

    def put_bytes(
        self, full: str, data: bytes, content_type: str, unchanged: Unchanged | None = None
    ) -> None:
        """Store `data`; with `unchanged` (and a store that has conditional writes), only if
        the key still holds what was read: S3 itself refuses it otherwise (WriteRefused), so
        that of two writers that read the same object only the first one's write stands."""
        scan = scan_bytes(data)
        try:
            written = self._put_bytes_once(full, data, scan, content_type, unchanged)
        except bx.ClientError as exc:
            # (If-Match on a key deleted since it was read: 404)
            if unchanged is not None and error_code(exc) in PRECONDITION_CODES | MISSING_CODES:
                raise WriteRefused(
                    f"{self._where(full)}: not written: another writer stored it since it was read"
                ) from exc
            if not self._drop_conditions_if_unsupported(full, exc):
                raise self._error(exc, full, "upload") from exc
            written = self._call(full, "upload", self._put_bytes_once, full=full, data=data,
                                 scan=scan, content_type=content_type, unchanged=None)  # fmt: skip
        except S3_FAILURES as exc:
            raise self._error(exc, full, "upload") from exc
        if self._verify(full, scan, scan.sha256, written) is not None:
            return  # a later write of the key replaced ours: the last writer's stands
        log.info("s3_put_bytes", key=full, bytes=len(data))

    def _put_bytes_once(
        self, full: str, data: bytes, scan: Scan, content_type: str, unchanged: Unchanged | None
    ) -> dict[str, Any]:
        if unchanged is None or not self._conditional:
            return self._put_object(full, data, scan, content_type, if_absent=False)
        return self._put_object(
            full, data, scan, content_type, if_absent=unchanged.tag is None, if_match=unchanged.tag
        )
