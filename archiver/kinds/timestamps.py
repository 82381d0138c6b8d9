"""The one form the archive writes a moment in: ISO 8601, UTC, to the second
(`2026-01-01T00:00:00Z`), in manifests (`archived_at`, `created_at`) and in `status`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no timezone: it names no moment")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_iso_of(epoch_s: float) -> str:
    return utc_iso(datetime.fromtimestamp(epoch_s, UTC))
