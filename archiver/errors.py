"""The error hierarchy. Each class says what the user (or the engine) can do about it."""

from __future__ import annotations


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


class WrongEndpoint(ApiUnusable):
    """HTTP 404/422 without the vendor's JSON envelope: api.base_url points at something that
    is not the record-info API, so no task would ever be found there."""


class SlowDown(ApiError):
    """429/430/405: too many calls (or, on sunoapi.org, body code 429: no credits)."""


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


class StorageError(ArchiverError):
    """The archive storage failed (disk full, S3 outage): transient unless a subclass says."""


class StorageConflict(StorageError):
    """The final name already holds other content; it is never silently overwritten."""


class StorageAccessError(StorageError, UsageError):
    """The storage cannot be used at all (missing bucket, access denied, unwritable root)."""
