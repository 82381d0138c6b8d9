"""What every task kind shares: the kind names, the ID form, the decisions a record leads to,
the files a kind yields, and the polling schedule's shape (each kind gives its own durations).

Pure: nothing here touches a clock, a network or a disk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import urlsplit


class Kind(StrEnum):
    MUSIC = "music"
    COVER = "cover"
    WAV = "wav"
    STEMS = "stems"
    MP4 = "mp4"
    MIDI = "midi"
    LYRICS = "lyrics"


_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_id(text: str) -> bool:
    """An ID of the SPEC's form (1-128 of A-Z a-z 0-9 _ -): a task ID, and the form an audio
    ID must have to name a file as it is."""
    return _ID.fullmatch(text) is not None


class TaskRecord(Protocol):
    """What the engine, the archivist and the manifest read of any kind's record."""

    @property
    def task_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def error_code(self) -> int | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def raw(self) -> Mapping[str, Any]: ...
    @property
    def created_time(self) -> float | None: ...  # the task's createTime, as Unix time
    @property
    def completed_time(self) -> float | None: ...  # its completeTime: expiry counts from it


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch (or, with `inline`, to write from the record) and store."""

    key_stem: str  # "<task_id>/<name>"; the extension is added from the media type
    urls: tuple[str, ...]  # first choice first, fallbacks after; http(s) only, deduplicated
    accept: frozenset[str]  # archiver.kinds.media types the body must sniff as (inline: its type)
    role: str  # music: "audio" | "image"; cover: "cover"; other kinds: SPEC's roles
    track: int | None  # index into record.tracks for audio/image; None otherwise
    inline: bytes | None = None  # the file's bytes, taken from the record (no URL)


@dataclass(frozen=True)
class PollAgain:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class ArchiveNow:
    files: tuple[FileSpec, ...]
    task_failed: bool  # the API said the task failed; what exists is archived anyway


@dataclass(frozen=True)
class GiveUp:
    files: tuple[FileSpec, ...]  # complete at the deadline: saved, outcome partial; () = timed out


Decision = PollAgain | ArchiveNow | GiveUp

MIN_DELAY_S: Final = 2.0


@dataclass(frozen=True)
class Schedule:
    """A kind's polling schedule (see archiver.kinds.music for why it has this shape):
    nothing is asked before `ready_after_s`, then every `window_s` until `window_end_s`, then a
    ramp to `late_min_s` by `late_from_s`, then age / 6 up to `late_cap_s`. Statuses in
    `nearly_done` are polled every `fast_s` (`just_first_s` on the poll that first shows one)."""

    ready_after_s: float
    window_s: float
    window_end_s: float
    late_from_s: float
    late_min_s: float = 60.0
    late_cap_s: float = 300.0
    early_max_s: float = 30.0
    fast_s: float = 8.0
    just_first_s: float = 10.0
    nearly_done: frozenset[str] = frozenset()
    late_age_fraction: float = 1 / 6
    late_eager_factor: float = 2.0


def poll_delay(status: str, age_s: float, *, last_status: str | None, schedule: Schedule) -> float:
    """Seconds until the next poll of an unfinished task."""
    status = norm(status)
    age = finite_age(age_s)
    s = schedule
    if status in s.nearly_done:
        if age >= s.late_from_s:
            delay = max(s.fast_s, _late_delay(age, s) / s.late_eager_factor)
        elif (
            age >= s.ready_after_s + s.window_s  # the previous poll was one window interval ago
            and last_status is not None
            and norm(last_status) not in s.nearly_done
        ):
            delay = s.just_first_s
        else:
            delay = s.fast_s
    elif age < s.ready_after_s:
        delay = s.ready_after_s - age
        if status != "PENDING":
            delay = min(delay, s.early_max_s)
    elif age < s.window_end_s:
        delay = s.window_s
    else:
        delay = _late_delay(age, s)
    return max(MIN_DELAY_S, delay)


def wait_or_give_up(
    status: str,
    reason: str,
    *,
    age_s: float,
    give_up_after_s: float,
    last_status: str | None,
    schedule: Schedule,
    files_at_deadline: tuple[FileSpec, ...] = (),
) -> PollAgain | GiveUp:
    """An unfinished task: poll again (never past the deadline), or give up at it."""
    age = finite_age(age_s)
    if age >= give_up_after_s:
        return GiveUp(files_at_deadline)
    delay = poll_delay(status, age, last_status=last_status, schedule=schedule)
    remaining = give_up_after_s - age
    if math.isfinite(remaining):
        delay = min(delay, max(MIN_DELAY_S, remaining))  # the last poll lands on the deadline
    return PollAgain(delay, reason)


def _late_delay(age: float, s: Schedule) -> float:
    if age < s.late_from_s:  # ramp from the window interval to late_min_s
        share = (age - s.window_end_s) / (s.late_from_s - s.window_end_s)
        return s.window_s + max(0.0, share) * (s.late_min_s - s.window_s)
    return min(s.late_cap_s, max(s.late_min_s, age * s.late_age_fraction))


def norm(status: object) -> str:
    return status.strip().upper() if isinstance(status, str) else ""


def finite_age(age_s: float) -> float:
    try:
        age = float(age_s)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(age) or age < 0:
        return 0.0
    return age


def is_fetchable(url: str) -> bool:
    """An http(s) URL with a host and no white space: the only kind ever requested."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def urls(*candidates: str) -> tuple[str, ...]:
    """The fetchable candidates in order, or else every non-empty one (to be refused)."""
    given = tuple(dict.fromkeys(url for url in candidates if isinstance(url, str) and url))
    return tuple(url for url in given if is_fetchable(url)) or given


@dataclass(frozen=True)
class TaskKind:
    """One kind of task: its record-info endpoint and how to read, judge and archive a record.

    `decide(record, age_s=, give_up_after_s=, last_status=)` never raises; `is_callback` tells
    whether a vendor callback body has this kind's shape.
    """

    kind: Kind
    path: str
    record_type: type
    parse: Callable[[Mapping[str, Any], str], Any]
    decide: Callable[..., Decision]
    files: Callable[[Any], tuple[FileSpec, ...]]
    is_callback: Callable[[Mapping[str, Any]], bool]
