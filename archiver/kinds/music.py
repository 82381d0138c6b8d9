"""Music tasks (`GET /api/v1/generate/record-info`): the record, its decision, its files.

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
10, 20 or 30 s in and FIRST_SUCCESS 20, 30 or 40 s before SUCCESS (tests/tasks/test_lifecycle.py),
this makes 0.26 of the API calls of fixed 5 s polling (about 8 calls a task instead of 31);
the median wait is 4 s, the longest 9 s; and if the API never showed FIRST_SUCCESS at all,
0.22 of the calls with a median wait of 9 s.

File names
----------
Names come from IDs, never titles: `<task_id>/<track name>` for a track's audio and image (the
extension, added later from the sniffed media type, tells them apart).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import (
    ArchiveNow,
    Decision,
    FileSpec,
    Kind,
    Schedule,
    TaskKind,
    finite_age,
    is_id,
    norm,
    urls,
    wait_or_give_up,
)
from archiver.kinds.media import JPEG, MP3, PNG

PATH: Final = "/api/v1/generate/record-info"
AUDIO_TYPES: Final = frozenset({MP3})
IMAGE_TYPES: Final = frozenset({JPEG, PNG})
# Keys of a track in a callback's `data.data` (a lyrics callback's items carry `text` instead).
_TRACK_KEYS: Final = frozenset({"audio_url", "audioUrl", "stream_audio_url", "id", "image_url"})

# --- schedule constants (seconds) -------------------------------------------------------------
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

SCHEDULE: Final = Schedule(
    ready_after_s=READY_AFTER_S,
    window_s=WINDOW_S,
    window_end_s=WINDOW_END_S,
    late_from_s=LATE_FROM_S,
    late_min_s=LATE_MIN_S,
    late_cap_s=LATE_CAP_S,
    early_max_s=EARLY_MAX_S,
    fast_s=FAST_S,
    just_first_s=JUST_FIRST_S,
    nearly_done=frozenset({"FIRST_SUCCESS"}) | FINISHED_STATUSES,
    late_age_fraction=LATE_AGE_FRACTION,
    late_eager_factor=LATE_EAGER_FACTOR,
)


@dataclass(frozen=True)
class Track:
    audio_id: str
    title: str
    tags: str
    duration: float | None  # null until the audio exists
    model_name: str
    prompt: str
    created_at: str | None  # ISO 8601 UTC ("2025-01-01T00:00:00Z"), from epoch ms or a date string
    audio_url: str  # "" until the track is done
    image_url: str
    source_audio_url: str
    source_image_url: str


@dataclass(frozen=True)
class MusicRecord:
    task_id: str
    status: str  # the API's status string, e.g. "SUCCESS", "FIRST_SUCCESS"
    tracks: tuple[Track, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]  # the API's `data` object exactly as received
    created_time: float | None = None  # Unix time of the task's createTime
    completed_time: float | None = None  # of its completeTime


def parse_music(data: Mapping[str, Any], task_id: str) -> MusicRecord:
    """The music record-info `data` object answered for `task_id` → MusicRecord.

    Raises ValueError only when `data` is not an object or names another task; every other
    oddity (null `response`, missing fields, wrong types) degrades to empty values.
    """
    fields.check_task_id(data, task_id)
    response = fields.mapping(data.get("response"))
    items = fields.items(response.get("sunoData"))
    tracks = tuple(_track(item) for item in items)
    code, message = fields.error_fields(data, response)
    # Live answers carry the task's createTime; the docs show it on the tracks only, and the
    # earliest of those stands in for it.
    created = fields.epoch(data.get("createTime"))
    if created is None:
        created = min(
            filter(None, (fields.epoch(i.get("createTime")) for i in items)), default=None
        )
    return MusicRecord(
        task_id=task_id,
        status=fields.status_word(data.get("status")),
        tracks=tracks,
        error_code=code,
        error_message=message,
        raw=data,
        created_time=created,
        completed_time=fields.epoch(data.get("completeTime")),
    )


def _track(item: Mapping[str, Any]) -> Track:
    return Track(
        audio_id=fields.text(item.get("id")),
        title=fields.text(item.get("title")),
        tags=fields.text(item.get("tags")),
        duration=fields.duration(item.get("duration")),
        model_name=fields.text(item.get("modelName")),
        prompt=fields.text(item.get("prompt")),
        created_at=fields.created_at(item.get("createTime")),
        audio_url=fields.text(item.get("audioUrl")).strip(),
        image_url=fields.text(item.get("imageUrl")).strip(),
        source_audio_url=fields.text(item.get("sourceAudioUrl")).strip(),
        source_image_url=fields.text(item.get("sourceImageUrl")).strip(),
    )


def decide(
    record: MusicRecord, *, age_s: float, give_up_after_s: float, last_status: str | None
) -> Decision:
    """What to do with a freshly polled music record. Never raises."""
    status = norm(record.status)
    if status in FINISHED_STATUSES and _all_tracks_complete(record):
        return ArchiveNow(files_to_fetch(record), task_failed=False)
    if is_failed_status(status):
        return ArchiveNow(files_to_fetch(record), task_failed=True)
    if status in FINISHED_STATUSES and finite_age(age_s) >= INCOMPLETE_AFTER_S:
        return ArchiveNow(files_to_fetch(record), task_failed=False)  # the rest never came
    return wait_or_give_up(
        status,
        _wait_reason(record, status),
        age_s=age_s,
        give_up_after_s=give_up_after_s,
        last_status=last_status,
        schedule=SCHEDULE,
        files_at_deadline=files_to_fetch(record),
    )


def is_failed_status(status: str) -> bool:
    """A status that says the task failed (the documented ones and any *_FAILED/*_ERROR)."""
    status = norm(status)
    return status in FAILED_STATUSES or status.endswith(("_FAILED", "_ERROR"))


def files_to_fetch(record: MusicRecord) -> tuple[FileSpec, ...]:
    """Every fetchable file of the complete tracks: audio, then its image.

    A track is complete when its audioUrl is non-empty; its image is fetched only then. A file
    none of whose URLs is fetchable keeps them all, for the fetcher to refuse and the manifest
    to report (an `ftp:` or `data:` audioUrl is a file the archive lacks, not no file).
    """
    specs: list[FileSpec] = []
    for index, (track, name) in enumerate(zip(record.tracks, track_names(record), strict=True)):
        if not track.audio_url:
            continue
        stem = f"{record.task_id}/{name}"
        audio = urls(track.audio_url, track.source_audio_url)
        if audio:
            specs.append(FileSpec(stem, audio, AUDIO_TYPES, "audio", index))
        image = urls(track.image_url, track.source_image_url)
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


def is_callback(body: Mapping[str, Any]) -> bool:
    """A music callback: staged (`data.callbackType`), at its `text` or `first` stage or with
    tracks in `data.data`. A failed one carries no tracks, so tells no kind: polling finds out."""
    data = fields.callback_data(body)
    stage = fields.callback_stage(data)
    if stage is None:
        return False
    return stage in ("text", "first") or bool(
        _TRACK_KEYS & fields.first_item(data.get("data")).keys()
    )


def _all_tracks_complete(record: MusicRecord) -> bool:
    return bool(record.tracks) and all(track.audio_url for track in record.tracks)


def _wait_reason(record: MusicRecord, status: str) -> str:
    if status in FINISHED_STATUSES:
        if not record.tracks:
            return f"status {status} but no tracks yet"
        missing = sum(1 for track in record.tracks if not track.audio_url)
        return f"status {status} but {missing} of {len(record.tracks)} tracks lack audioUrl"
    return f"status {status}"


KIND: Final = TaskKind(
    kind=Kind.MUSIC,
    path=PATH,
    record_type=MusicRecord,
    parse=parse_music,
    decide=decide,
    files=files_to_fetch,
    is_callback=is_callback,
)
