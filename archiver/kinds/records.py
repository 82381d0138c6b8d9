"""The API's JSON `data` object → typed, frozen records: the vocabulary every module shares.

Each kind's record and parser live in its module under `archiver.kinds`; this module names
them for the rest of the archiver.
"""

from __future__ import annotations

from archiver.kinds.base import Kind, TaskRecord, is_id
from archiver.kinds.cover import CoverRecord, parse_cover
from archiver.kinds.music import MusicRecord, Track, parse_music
from archiver.kinds.outputs import OutputRecord

# OutputRecord: WAV, stems, MP4, MIDI and lyrics records (a subclass each, in archiver.kinds).
Record = MusicRecord | CoverRecord | OutputRecord

__all__ = [
    "CoverRecord",
    "Kind",
    "MusicRecord",
    "OutputRecord",
    "Record",
    "TaskRecord",
    "Track",
    "is_id",
    "parse_cover",
    "parse_music",
]
