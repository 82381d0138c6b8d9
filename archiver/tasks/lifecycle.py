"""Pure decisions over a parsed record: poll again (when), archive now (which files), give up.

Nothing here touches a clock, a network or a disk: ages and deadlines come in as numbers.
Each kind decides for its own records (`archiver.kinds.<kind>.decide`, and the polling
schedule of music tasks is explained in `archiver.kinds.music`); this module is the one door
the engine goes through.

The engine gives `decide` the task's own age: from its `createTime` when the API gave one (a
task listed 3 minutes after it was created is not made to wait for "nothing finishes before
60 s"), else from when the archiver first saw it; the give-up deadline still counts from first
sight.

Unknown tasks
-------------
A task no endpoint knows may just have been created: the cover endpoint answers with empty
`data` for its first seconds, and a music task can be unknown while the vendor replicates it.
So "not found" is provisional: such a task is asked again after 10 s, then 20 s, 40 s … (at
most 300 s apart, `unknown_delay`) until `tasks.not_found_after_s` has passed since it was
first seen (the engine keeps that window). Over the default 15 minutes that is 8 polls.
"""

from __future__ import annotations

from typing import Final

from archiver.kinds import decide, files_to_fetch
from archiver.kinds import music as _music
from archiver.kinds.base import (
    MIN_DELAY_S,
    ArchiveNow,
    Decision,
    FileSpec,
    GiveUp,
    PollAgain,
    is_fetchable,
)
from archiver.kinds.base import poll_delay as _poll_delay
from archiver.kinds.music import (
    INCOMPLETE_AFTER_S,
    LATE_CAP_S,
    WINDOW_S,
    track_name,
    track_names,
)

__all__ = [
    "INCOMPLETE_AFTER_S",
    "LATE_CAP_S",
    "MIN_DELAY_S",
    "WINDOW_S",
    "ArchiveNow",
    "Decision",
    "FileSpec",
    "GiveUp",
    "PollAgain",
    "decide",
    "files_to_fetch",
    "is_fetchable",
    "poll_delay",
    "track_name",
    "track_names",
    "unknown_delay",
]

UNKNOWN_FIRST_S: Final = 10.0  # no endpoint knows the task: ask again this soon, then doubling
UNKNOWN_CAP_S: Final = 300.0


def poll_delay(status: str, age_s: float, *, last_status: str | None) -> float:
    """Seconds until the next poll of an unfinished music task."""
    return _poll_delay(status, age_s, last_status=last_status, schedule=_music.SCHEDULE)


def unknown_delay(unknown_polls: int) -> float:
    """Seconds until a task that `unknown_polls` answers in a row said unknown is asked again."""
    doublings = min(max(0, unknown_polls - 1), 16)  # 2**16 * 10 s is far past the cap
    return min(UNKNOWN_CAP_S, UNKNOWN_FIRST_S * 2**doublings)
