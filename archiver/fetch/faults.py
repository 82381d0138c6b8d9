"""What a file host's answer means for one fetch: keep the body, retry the URL, or give it up.

Pure judgements of an HTTP status, of a body's first bytes (magic bytes, never `Content-Type`)
and of a whole fetch's failures; download.py acts on them. `Retry`: another
try of the same URL may work (5xx, 408/425/429, an HTML page a loaded CDN serves); `Dead`: this
URL will not give the file, try the next one.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from archiver.api.backoff import parse_retry_after
from archiver.errors import FetchError
from archiver.kinds import media

log = structlog.get_logger()

_DEAD = frozenset({401, 403, 404, 410})  # the URL expired or is refused: try the next one
_TRANSIENT = frozenset({408, 425, 429})  # and every 5xx
_MAX_RETRY_AFTER_S = 300.0  # a longer Retry-After is the engine's business, not one fetch's
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--")


class Retry(Exception):
    """This try failed in a way another try of the same URL may fix."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Dead(Exception):
    """This URL will not give the file (expired, refused, not media): try the next URL."""


def check_status(url: str, status: int, headers: Mapping[str, str]) -> None:
    """Raise `Dead` or `Retry` unless `status` is 200, 206 or 416 (which the caller answers
    by starting the file over)."""
    if status in _DEAD:
        log.warning("fetch_url_dead", url=url, status=status)
        raise Dead(f"expired or refused ({status})")
    if status in _TRANSIENT or status >= 500:
        raise Retry(
            f"HTTP {status}",
            retry_after=parse_retry_after(headers.get("Retry-After"), cap_s=_MAX_RETRY_AFTER_S),
        )
    if status not in (200, 206, 416):
        raise Dead(f"unexpected HTTP {status}")


def validator_of(headers: Mapping[str, str]) -> str | None:
    """What names this version of the file for If-Range: a strong ETag, else Last-Modified
    (a weak ETag may not be used there)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


def classify_head(head: bytes | bytearray, accept: frozenset[str]) -> str:
    """The media type of a body from its first bytes, if it is one of `accept`; else `Retry`
    or `Dead`, saying what the body is instead."""
    kind = media.sniff(bytes(head[: media.SNIFF_BYTES]))
    if kind is not None and kind in accept:
        return kind
    want = "/".join(sorted(accept)) or "nothing"
    if kind is None and _looks_like_html(head):
        raise Retry(f"got an HTML page, not {want}")  # CDNs serve these under load
    if kind is None:
        raise Dead(f"got {'an empty body' if not head else 'unknown content'}, not {want}")
    raise Dead(f"got {kind}, not {want}")


def _looks_like_html(head: bytes | bytearray) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith(_HTML_STARTS)


def final_error(failures: list[tuple[str, str, bool]]) -> FetchError:
    """The one error of a fetch whose every URL failed: (url, reason, permanent) each. It is
    permanent only when every URL was."""
    if not failures:
        return FetchError("no URL to fetch", permanent=True)
    permanent = all(p for _, _, p in failures)
    detail = "; ".join(f"{url}: {reason}" for url, reason, _ in failures)
    return FetchError(f"could not fetch the file: {detail}", permanent=permanent)
