"""Pure decisions over a parsed record: poll again (when), archive now (which files), give up.

Nothing here touches a clock, a network or a disk: ages and deadlines come in as numbers.
Each kind decides for its own records (`archiver.kinds.<kind>.decide`, and the polling
schedule of music tasks is explained in `archiver.kinds.music`); this module is the one door
the engine goes through.
"""

from __future__ import annotations

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
]


def poll_delay(status: str, age_s: float, *, last_status: str | None) -> float:
    """Seconds until the next poll of an unfinished music task."""
    return _poll_delay(status, age_s, last_status=last_status, schedule=_music.SCHEDULE)
