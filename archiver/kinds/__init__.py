"""The task kinds, one module each, and the registry that maps task-list prefixes, records
and callbacks to them. Adding a kind is one new module and one line in `_ALL`.

The engine, the API client, the archivist and the manifest only ever go through this registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import cover, lyrics, midi, mp4, music, stems, wav
from archiver.kinds.base import Decision, FileSpec, Kind, TaskKind

# In the order a bare task ID is asked of the endpoints (SPEC "Task kinds"): what users list
# most (songs, then their covers) first, so that most bare IDs cost one call.
_ALL: Final = (music.KIND, cover.KIND, wav.KIND, stems.KIND, mp4.KIND, midi.KIND, lyrics.KIND)

KINDS: Final[Mapping[Kind, TaskKind]] = {k.kind: k for k in _ALL}
PROBE_ORDER: Final = tuple(k.kind for k in _ALL)
PREFIXES: Final[Mapping[str, Kind]] = {k.kind.value: k.kind for k in _ALL}
_BY_RECORD_TYPE: Final = {k.record_type: k for k in _ALL}


def of(record: object) -> TaskKind:
    """The kind a parsed record belongs to."""
    try:
        return _BY_RECORD_TYPE[type(record)]
    except KeyError:
        raise TypeError(f"not a record: {type(record).__name__}") from None


def decide(
    record: object, *, age_s: float, give_up_after_s: float, last_status: str | None
) -> Decision:
    """What to do with a freshly polled record of any kind. Never raises."""
    return of(record).decide(
        record, age_s=age_s, give_up_after_s=give_up_after_s, last_status=last_status
    )


def files_to_fetch(record: object) -> tuple[FileSpec, ...]:
    """Every file a record of any kind yields now."""
    return of(record).files(record)


def callback_kind(body: Mapping[str, Any]) -> Kind | None:
    """The kind a vendor callback body is about, told by its shape: the first in `_ALL` order
    whose shape it is (music before lyrics: both are staged); None when it is no kind's or does
    not tell (a failed music or lyrics callback carries no data). A hint only: the record-info
    poll decides."""
    return next((k.kind for k in _ALL if k.is_callback(body)), None)
