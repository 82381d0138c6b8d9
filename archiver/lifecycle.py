"""Pure decisions over a parsed record: poll again (when), archive now (which files), give up.

Nothing here touches a clock, a network or a disk: ages and deadlines come in as numbers.

Polling schedule
----------------
The vendors advise polling every ~30 s and say a song takes 1.5-3.5 minutes; their sample code
polls every 5 s. Polling every 5 s is wasteful (about 31 calls for a 2.5-minute song) and a
flat 30 s leaves a finished task waiting 15 s on average and up to 30 s. The status sequence
tells us more than the clock does, so the schedule leans on it:

* The first poll happens as soon as a task is seen (the engine does that, not this module).
* **Early, while PENDING** (age < 60 s): nothing can be ready before ~60 s, so the next poll
  waits until age 60 s. A task first seen already past PENDING (TEXT_SUCCESS, GENERATING …)
  started before we saw it, so it waits at most 30 s instead.
* **The 60-240 s window**: any poll may find the task done, so poll every 20 s. Since
  FIRST_SUCCESS precedes SUCCESS by 20-40 s, a 20 s interval catches FIRST_SUCCESS before
  SUCCESS for a normally progressing task.
* **FIRST_SUCCESS seen**: SUCCESS is close, so poll every 8 s. On the poll that first shows
  FIRST_SUCCESS (the previous, in-window poll did not), SUCCESS is probably 10 s or more away
  (20-40 s after a moment somewhere in the last 20 s), so that one waits 10 s before the 8 s
  cadence starts.
  SUCCESS or CALLBACK_EXCEPTION with a track still lacking its audioUrl is treated the same
  (the file is about to appear).
* **Finished but incomplete for good**: if that track still lacks its audioUrl at age 600 s
  (`INCOMPLETE_AFTER_S`), the complete tracks are archived and the task ends partial, naming
  the tracks without audio. A song is done within 240 s of starting and the last audioUrl
  normally follows the first within 20-40 s, so at 600 s even a task first seen the moment it
  finished has waited 15 times the longest normal gap (about 80 calls). Waiting on to
  `give_up_after_s` (a day by default) would cost some 600 more calls and keep the complete
  tracks out of the archive all that time; a partial task is tried again by the next backfill
  or daemon start, so a file that turns up later is still archived.
* **Late** (past 240 s): the interval ramps from 20 s to 60 s by age 360 s and then grows with
  the age (age / 6) to a cap of 300 s, so a task stuck in PENDING costs ~300 calls a day, not
  17 000. FIRST_SUCCESS stays twice as eager as other statuses when late (floor 8 s, cap
  150 s) so that a slow task is still picked up soon after it finishes.
* Never less than 2 s between polls, and `decide` never schedules a poll past the deadline.

The budget is a third of the calls of fixed 5 s polling, with a median wait from "finished"
to the poll that sees it of at most 15 s. Waits are cheap next to that bound, calls are not:
8 s rather than 5 s after FIRST_SUCCESS, and 20 s rather than 15 s in the window, each buy a
clear margin on calls for a couple of seconds of median wait. Where FIRST_SUCCESS may come up
to 60 s before SUCCESS (the stand-in API's model, `python -m bench`), 5 s after it made 0.33 of
the calls, right at the budget; 8 s makes 0.28, with a median wait of 4 s.

Simulated over tasks finishing every 1 s from 60 to 240 s after first sight, with TEXT_SUCCESS
10, 20 or 30 s in and FIRST_SUCCESS 20, 30 or 40 s before SUCCESS (tests/test_lifecycle.py),
this makes 0.26 of the API calls of fixed 5 s polling (about 8 calls a task instead of 31);
the median wait is 4 s, the longest 9 s; and if the API never showed FIRST_SUCCESS at all,
0.22 of the calls with a median wait of 9 s.

File names
----------
Names come from IDs, never titles: `<task_id>/<track name>` for a track's audio and image (the
extension, added later from the sniffed media type, tells them apart) and `<task_id>/cover-<n>`
for cover images.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from archiver.media import JPEG, MP3, PNG
from archiver.records import CoverRecord, MusicRecord, Record, Track, is_id

AUDIO_TYPES: Final = frozenset({MP3})
IMAGE_TYPES: Final = frozenset({JPEG, PNG})

# --- schedule constants (seconds) -------------------------------------------------------------
MIN_DELAY_S: Final = 2.0
READY_AFTER_S: Final = 60.0  # nothing is finished before this age
EARLY_MAX_S: Final = 30.0  # early wait for a task first seen past PENDING
WINDOW_S: Final = 20.0  # interval while a song may finish at any poll
WINDOW_END_S: Final = 240.0  # songs take 1.5-3.5 minutes
FAST_S: Final = 8.0  # FIRST_SUCCESS seen: SUCCESS is 20-40 s away
JUST_FIRST_S: Final = 10.0  # the poll that first shows FIRST_SUCCESS
LATE_FROM_S: Final = 360.0  # from here on the interval grows with the age
LATE_MIN_S: Final = 60.0
LATE_CAP_S: Final = 300.0
LATE_AGE_FRACTION: Final = 1 / 6
LATE_EAGER_FACTOR: Final = 2.0  # FIRST_SUCCESS is polled this much more often when late
INCOMPLETE_AFTER_S: Final = 600.0  # finished, a track still without audio: archive the rest

FINISHED_STATUSES: Final = frozenset({"SUCCESS", "CALLBACK_EXCEPTION"})
FAILED_STATUSES: Final = frozenset(
    {"CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "SENSITIVE_WORD_ERROR"}
)
_NEARLY_DONE: Final = frozenset({"FIRST_SUCCESS"}) | FINISHED_STATUSES


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch and store."""

    key_stem: str  # "<task_id>/<name>"; the extension is added from the sniffed media type
    urls: tuple[str, ...]  # first choice first, fallbacks after; http(s) only, deduplicated
    accept: frozenset[str]  # archiver.media types the body must sniff as
    role: Literal["audio", "image", "cover"]
    track: int | None  # index into record.tracks for audio/image; None for cover images


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


def decide(
    record: Record, *, age_s: float, give_up_after_s: float, last_status: str | None
) -> Decision:
    """What to do with a freshly polled record. Never raises, whatever the status says."""
    status = _norm(record.status)
    if isinstance(record, MusicRecord):
        if status in FINISHED_STATUSES and _all_tracks_complete(record):
            return ArchiveNow(files_to_fetch(record), task_failed=False)
        if is_failed_status(status):
            return ArchiveNow(files_to_fetch(record), task_failed=True)
        if status in FINISHED_STATUSES and _finite_age(age_s) >= INCOMPLETE_AFTER_S:
            return ArchiveNow(files_to_fetch(record), task_failed=False)  # the rest never came
        reason = _music_wait_reason(record, status)
    else:
        if status == "SUCCESS" and record.images:
            return ArchiveNow(files_to_fetch(record), task_failed=False)
        if status == "FAILED":
            return ArchiveNow((), task_failed=True)
        reason = f"status {status}" + (" without images" if status == "SUCCESS" else "")

    age = _finite_age(age_s)
    if age >= give_up_after_s:
        return GiveUp(files_to_fetch(record))
    delay = poll_delay(status, age, last_status=last_status)
    remaining = give_up_after_s - age
    if math.isfinite(remaining):
        delay = min(delay, max(MIN_DELAY_S, remaining))  # the last poll lands on the deadline
    return PollAgain(delay, reason)


def is_failed_status(status: str) -> bool:
    """A music status that says the task failed (the documented ones and any *_FAILED/*_ERROR)."""
    status = _norm(status)
    return status in FAILED_STATUSES or status.endswith(("_FAILED", "_ERROR"))


def files_to_fetch(record: Record) -> tuple[FileSpec, ...]:
    """Every fetchable file of the complete tracks (audio, then its image) or the cover images.

    A track is complete when its audioUrl is non-empty; its image is fetched only then. A file
    none of whose URLs is fetchable keeps them all, for the fetcher to refuse and the manifest
    to report (an `ftp:` or `data:` audioUrl is a file the archive lacks, not no file).
    """
    if isinstance(record, CoverRecord):
        covers = [urls for url in dict.fromkeys(record.images) if (urls := _urls(url))]
        return tuple(
            FileSpec(f"{record.task_id}/cover-{n}", urls, IMAGE_TYPES, "cover", None)
            for n, urls in enumerate(covers, start=1)
        )

    specs: list[FileSpec] = []
    for index, (track, name) in enumerate(zip(record.tracks, track_names(record), strict=True)):
        if not track.audio_url:
            continue
        stem = f"{record.task_id}/{name}"
        audio = _urls(track.audio_url, track.source_audio_url)
        if audio:
            specs.append(FileSpec(stem, audio, AUDIO_TYPES, "audio", index))
        image = _urls(track.image_url, track.source_image_url)
        if image:
            specs.append(FileSpec(stem, image, IMAGE_TYPES, "image", index))
    return tuple(specs)


def track_name(track: Track, index: int) -> str:
    """A safe file-name stem for a track: its audio ID, or a hash of it when that is not safe.

    Path-like or empty IDs ("../../x", "a/b", "") never become paths.
    """
    audio_id = track.audio_id
    if isinstance(audio_id, str) and is_id(audio_id):
        return audio_id
    digest = hashlib.sha256(str(audio_id).encode("utf-8", "surrogatepass")).hexdigest()
    return f"track-{index + 1}-{digest[:12]}"


def track_names(record: MusicRecord) -> tuple[str, ...]:
    """`track_name` of every track, made distinct (also case-insensitively, for macOS/Windows
    disks): a later track whose name is taken gets `-<index+1>` appended.

    Computed over all tracks, complete or not, so that a name does not change between polls.
    """
    used: set[str] = set()
    names: list[str] = []
    for index, track in enumerate(record.tracks):
        name = track_name(track, index)
        if name.casefold() in used:
            base, n = f"{name}-{index + 1}", 1
            name = base
            while name.casefold() in used:
                n += 1
                name = f"{base}-{n}"
        used.add(name.casefold())
        names.append(name)
    return tuple(names)


def poll_delay(status: str, age_s: float, *, last_status: str | None) -> float:
    """Seconds until the next poll of an unfinished task (see the module docstring)."""
    status = _norm(status)
    age = _finite_age(age_s)
    if status in _NEARLY_DONE:
        if age >= LATE_FROM_S:
            delay = max(FAST_S, _late_delay(age) / LATE_EAGER_FACTOR)
        elif (
            age >= READY_AFTER_S + WINDOW_S  # the previous poll was one window interval ago
            and last_status is not None
            and _norm(last_status) not in _NEARLY_DONE
        ):
            delay = JUST_FIRST_S
        else:
            delay = FAST_S
    elif age < READY_AFTER_S:
        delay = READY_AFTER_S - age
        if status != "PENDING":
            delay = min(delay, EARLY_MAX_S)
    elif age < WINDOW_END_S:
        delay = WINDOW_S
    else:
        delay = _late_delay(age)
    return max(MIN_DELAY_S, delay)


# --- helpers ----------------------------------------------------------------------------------


def _late_delay(age: float) -> float:
    if age < LATE_FROM_S:  # ramp from the window interval to LATE_MIN_S
        share = (age - WINDOW_END_S) / (LATE_FROM_S - WINDOW_END_S)
        return WINDOW_S + max(0.0, share) * (LATE_MIN_S - WINDOW_S)
    return min(LATE_CAP_S, max(LATE_MIN_S, age * LATE_AGE_FRACTION))


def _norm(status: object) -> str:
    return status.strip().upper() if isinstance(status, str) else ""


def _finite_age(age_s: float) -> float:
    try:
        age = float(age_s)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(age) or age < 0:
        return 0.0
    return age


def _all_tracks_complete(record: MusicRecord) -> bool:
    return bool(record.tracks) and all(track.audio_url for track in record.tracks)


def _music_wait_reason(record: MusicRecord, status: str) -> str:
    if status in FINISHED_STATUSES:
        if not record.tracks:
            return f"status {status} but no tracks yet"
        missing = sum(1 for track in record.tracks if not track.audio_url)
        return f"status {status} but {missing} of {len(record.tracks)} tracks lack audioUrl"
    return f"status {status}"


def is_fetchable(url: str) -> bool:
    """An http(s) URL with a host and no white space: the only kind ever requested."""
    if not isinstance(url, str) or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _urls(*candidates: str) -> tuple[str, ...]:
    """The fetchable candidates in order, or else every non-empty one (to be refused)."""
    given = tuple(dict.fromkeys(url for url in candidates if isinstance(url, str) and url))
    return tuple(url for url in given if is_fetchable(url)) or given
