"""The error hierarchy. Each class says what the user (or the engine) can do about it."""

from __future__ import annotations

from pathlib import Path


class ArchiverError(Exception):
    """Base of every error the archiver reports instead of a traceback."""


class UsageError(ArchiverError):
    """Bad usage, config or input file: the CLI exits 2 with this one line."""


class ConfigError(UsageError):
    """The config file is unreadable or wrong; the message names the file and key."""


class ApiError(ArchiverError):
    """An answer of the record-info API that is not a usable record."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiUnusable(ApiError):
    """The API cannot be used until a person fixes something: backfill stops (exit 2), the
    daemon pauses and tries again slowly."""


class AuthError(ApiUnusable):
    """401: the API key is missing or wrong. Retrying soon will not help."""


class NoCredits(ApiUnusable):
    """The account is out of credits (kie.ai 402, sunoapi.org body 429): a person tops it up;
    until then every call would be refused the same way."""


class WrongEndpoint(ApiUnusable):
    """HTTP 404/422 without the vendor's JSON envelope: api.base_url points at something that
    is not the record-info API, so no task would ever be found there."""


class SlowDown(ApiError):
    """Too many calls: 429 (kie.ai), 430/405 (sunoapi.org), 433 (a kie.ai sub-key over its
    limit)."""


class Maintenance(ApiError):
    """455: the vendor is in maintenance; back off."""


class TransientApiError(ApiError):
    """5xx, timeout, connection error, malformed JSON or an HTML page: retry with backoff."""


class UnknownTask(ApiError):
    """404/422 with the vendor's JSON envelope, or `data: null`: this endpoint does not know
    the task."""


class ApiRejected(ApiError):
    """Another 4xx code: the request itself is refused; retrying will not change it."""


class FetchError(ArchiverError):
    """A file could not be downloaded. `permanent` errors (expired URL, not media, too big)
    are not retried."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class TaggingError(ArchiverError):
    """mutagen could not read or tag the file as MP3."""


class InternalError(ArchiverError):
    """An exception no code path expects: a bug. Backfill ends with it at once rather than
    retrying it as if it were transient; the log has the traceback."""


class StorageError(ArchiverError):
    """The archive storage failed (disk full, S3 outage): transient unless a subclass says."""


class StorageConflict(StorageError):
    """The final name already holds other content; it is never silently overwritten."""


class WriteRefused(StorageError):
    """The store refused a conditional write: the key no longer holds what was read before
    (another writer stored it meanwhile); nothing was written."""


class StorageAccessError(StorageError, UsageError):
    """The storage cannot be used at all (missing bucket, access denied, unwritable root)."""


class StorageFull(StorageError):
    """The storage has no room: ENOSPC or EDQUOT on a local write, S3's 507 or a quota code,
    or less free space than `storage.min_free_bytes` would leave. Never the fault of the file
    being written: nothing is recorded against it, and archiving waits until space returns.

    `where` names the folder or bucket; `path` is the local folder whose free space tells
    when to resume (None for a bucket); `needed_bytes` the free space that would do."""

    def __init__(
        self,
        where: str,
        *,
        path: Path | None,
        free_bytes: int | None,
        needed_bytes: int | None = None,
        detail: str = "",
    ) -> None:
        free = f", {format_bytes(free_bytes)} free" if free_bytes is not None else ""
        super().__init__(f"{where}: storage full{free}" + (f": {detail}" if detail else ""))
        self.where = where
        self.path = path
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes


def format_bytes(n: int) -> str:
    """1536 → '1.5 KiB': free space as people read it."""
    if n < 1024:
        return f"{n} bytes"
    size, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size:.1f} {units[0]}"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a driver's may span several), never empty."""
    return " ".join(str(exc).split()) or type(exc).__name__
