"""The boto3 S3 client, and what its failures mean.

One client for the process, built on a session of its own (clients are thread-safe, sessions
are not). Every failure is classified here, in one place, as one line: StorageAccessError when
the storage cannot be used until a person changes something (credentials, permissions, the
bucket, a store that refuses boto3's checksum headers), StorageFull when the store has no room
(507, a quota exceeded), else StorageError (transient, retried).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
import boto3.exceptions as b3x
import botocore.exceptions as bx
import s3transfer.exceptions as tx
import structlog
from botocore.config import Config as BotoConfig

from archiver.config import StorageConfig
from archiver.errors import StorageAccessError, StorageError, StorageFull

log = structlog.get_logger()

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# A conditional write (If-None-Match: *) refused: the key exists (412), or another conditional
# write of it is in progress (409).
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_ACCESS_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
    }
)
# The store has no room: MinIO's disks, a bucket or account quota (Ceph RGW, Wasabi, others).
_FULL_CODES = frozenset(
    {
        "XMinioStorageFull",
        "XMinioAdminBucketQuotaExceeded",
        "QuotaExceeded",
        "InsufficientStorage",
        "StorageFull",
    }
)
_CHECKSUM_HEADERS = ("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-trailer")
_CREDENTIAL_ERRORS = (
    bx.NoCredentialsError,
    bx.PartialCredentialsError,
    bx.CredentialRetrievalError,
)
# What a store, the network or the disk can do to a call: the failures classify() knows. Any
# other exception is a bug, and is raised as it came: classified as a transient StorageError it
# would be retried for as long as tasks.give_up_after_s. boto3's and s3transfer's own failure
# types are in: a transfer may report a failed part or a retry budget spent with them.
S3_FAILURES = (
    bx.BotoCoreError,
    bx.ClientError,
    b3x.Boto3Error,
    tx.RetriesExceededError,
    tx.S3UploadFailedError,
    OSError,
    StorageError,
)


def build_client(
    config: StorageConfig,
    *,
    max_attempts: int = 5,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
) -> Any:
    """The process's S3 client: credentials from the standard AWS chain, endpoint and region
    from the config when set."""
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": max_attempts},
        "connect_timeout": connect_timeout_s,
        "read_timeout": read_timeout_s,
        "max_pool_connections": max(10, config.max_concurrent_uploads * 5),
        "user_agent_extra": "suno-archiver",
        # Requests are SigV4 anyway; presigned URLs (`presign_ttl_s`) would default to SigV2,
        # which new AWS regions refuse and which has no 7-day bound.
        "signature_version": "s3v4",
    }
    if config.endpoint_url:
        # MinIO and most self-hosted stores only answer path-style requests.
        options["s3"] = {"addressing_style": "path"}
    if config.checksum_when_required:
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    return boto3.session.Session().client(
        "s3",
        endpoint_url=config.endpoint_url or None,
        region_name=config.region or None,
        config=BotoConfig(**options),
    )


def client_for(config: StorageConfig) -> Any:
    """build_client, with what boto3 resolves there (the AWS profile, the region, the AWS
    config file) failing as one line rather than a traceback."""
    try:
        return build_client(config)
    except (bx.BotoCoreError, ValueError) as exc:
        raise StorageAccessError(
            f"S3 bucket {config.bucket!r}: cannot set up the S3 client: {one_line(exc)}"
        ) from exc


def check_bucket(client: Any, bucket: str, endpoint: str) -> None:
    """Raise StorageAccessError (one line naming the bucket and endpoint) unless `client` can
    reach and list `bucket`."""
    what = f"S3 bucket {bucket!r} at {endpoint}"
    try:
        client.head_bucket(Bucket=bucket)
    except _CREDENTIAL_ERRORS as exc:
        raise StorageAccessError(
            f"{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use an instance role): " + one_line(exc)
        ) from exc
    except bx.ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageAccessError(f"{what}: the bucket does not exist") from exc
        if code in ("403", "AccessDenied") or code in _ACCESS_CODES:
            raise StorageAccessError(
                f"{what}: access denied ({code}); check the credentials and that they "
                "allow s3:ListBucket on the bucket"
            ) from exc
        raise StorageAccessError(f"{what}: cannot use the bucket: {code} {one_line(exc)}") from exc
    except (bx.ConnectionError, bx.HTTPClientError) as exc:
        raise StorageAccessError(f"{what}: cannot reach the endpoint: {one_line(exc)}") from exc
    except bx.BotoCoreError as exc:  # a request botocore refuses to send, for one
        raise StorageAccessError(f"{what}: {one_line(exc)}") from exc


def classify(
    exc: Exception, where: str, doing: str, *, endpoint: str, checksums: bool
) -> StorageError:
    """What `exc` (one of S3_FAILURES), raised `doing` something to `where`, means: unusable
    storage, or transient.
    `checksums`: whether the client sends boto3's checksum headers (the setting to change when
    the store refuses them)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StorageAccessError(f"{where}: no usable AWS credentials: {one_line(exc)}")
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = error_code(exc)
        status = _status(exc)
        message = one_line(err.get("Message") or code)
        if code in _FULL_CODES or status == 507:
            return StorageFull(
                "/".join(where.split("/", 3)[:3]),  # s3://bucket/key → s3://bucket
                path=None,
                free_bytes=None,
                detail=f"{doing}: {code or status} {message}",
            )
        if code in _ACCESS_CODES or status == 403:
            hint = (
                "; the credentials need s3:GetObject, s3:PutObject, s3:DeleteObject, "
                "s3:ListBucket, s3:ListBucketMultipartUploads and s3:AbortMultipartUpload"
                if status == 403
                else ""
            )
        elif checksums and _rejects_checksum_headers(status, err):
            hint = (
                "; the store does not take boto3's checksum headers: set [storage] "
                "checksum_when_required = true"
            )
        else:
            return StorageError(f"{where}: {doing}: {code or status} {message}")
        return StorageAccessError(
            f"{where}: {doing}: {code or status} {message} (endpoint {endpoint})" + hint
        )
    return StorageError(f"{where}: {doing}: {one_line(exc)}")  # the rest of S3_FAILURES


def head_or_none(client: Any, bucket: str, key: str, *, checksums: bool) -> dict[str, Any] | None:
    """The head of `key`, with the store's checksums unless `checksums` is off; None when there
    is no such object. Any other failure is raised as it came, for the caller to classify."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if checksums:
        kwargs["ChecksumMode"] = "ENABLED"
    try:
        return client.head_object(**kwargs)
    except bx.ClientError as exc:
        if error_code(exc) in MISSING_CODES:
            return None
        raise


def abort_stale_uploads(
    client: Any,
    bucket: str,
    full: str,
    cutoff: datetime,
    describe: Callable[[Exception], StorageError],
) -> None:
    """Abort multipart uploads of exactly `full` begun before `cutoff` (see s3objects'
    STALE_UPLOAD_AFTER_S). Best effort: without s3:ListBucketMultipartUploads or
    s3:AbortMultipartUpload it logs and goes on; a lifecycle rule is the backstop."""
    try:
        pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=full)
        stale = [
            upload["UploadId"]
            for page in pages
            for upload in page.get("Uploads", [])
            if upload["Key"] == full and upload["Initiated"] <= cutoff
        ]
        for upload_id in stale:
            client.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id)
            log.info("s3_stale_upload_aborted", key=full, upload_id=upload_id)
    except S3_FAILURES as exc:
        log.warning("s3_stale_uploads_not_aborted", key=full, error=str(describe(exc)))


def error_code(exc: bx.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def refuses_conditional_writes(exc: bx.ClientError) -> bool:
    """Whether `exc` is a store that predates conditional writes (older MinIO, Ceph) refusing
    If-None-Match: a 501 that is not about checksum headers."""
    return _status(exc) == 501 and not _rejects_checksum_headers(501, exc.response.get("Error", {}))


def one_line(text: object) -> str:
    """botocore's messages may span lines (parameter validation does); errors are one line."""
    return " ".join(str(text).split())


def _rejects_checksum_headers(status: int | None, err: dict[str, Any]) -> bool:
    """Whether an error answer refuses the checksum headers boto3 sends by default (stores
    that predate them answer 501, or 400 naming the header), not a checksum that mismatched
    (BadDigest: a transient corruption, retried)."""
    text = " ".join(str(value) for value in err.values()).lower()
    if status == 501:
        return "checksum" in text or "x-amz-trailer" in text
    return status == 400 and any(header in text for header in _CHECKSUM_HEADERS)


def _status(exc: bx.ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
