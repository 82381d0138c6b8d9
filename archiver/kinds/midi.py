"""MIDI from a separation (`GET /api/v1/midi/record-info`): no file, the notes come inline in
`midiData` and are stored as `<task_id>/midi.json`.

`successFlag` is a number here: 0 waiting, 1 done, 2 "failed to create task", 3 "MIDI
generation failed" (on the cover endpoint 2 means generating: the two are never mixed up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields
from archiver.kinds.base import Kind
from archiver.kinds.media import JSON
from archiver.kinds.outputs import (
    OutputRecord,
    inline_file,
    json_bytes,
    output_kind,
    output_record,
    schedule,
)

_STATUS: Final = {0: "PENDING", 1: "SUCCESS", 2: "CREATE_TASK_FAILED", 3: "GENERATE_MIDI_FAILED"}


class MidiRecord(OutputRecord):
    pass


def parse_midi(data: Mapping[str, Any], task_id: str) -> MidiRecord:
    fields.check_task_id(data, task_id)
    midi = data.get("midiData")
    files = (
        (inline_file(task_id, "midi", json_bytes(midi), JSON, "midi"),)
        if isinstance(midi, Mapping)
        else ()
    )
    return output_record(
        MidiRecord, data, task_id, status=midi_status(data.get("successFlag")), files=files
    )


def midi_status(flag: object) -> str:
    """The number (or its digits) as a status word; a word as it is; anything else PENDING."""
    number = fields.integer(flag)
    if number is not None:
        return _STATUS.get(number, "PENDING")
    return fields.status_word(flag)


def is_callback(body: Mapping[str, Any]) -> bool:
    """`{task_id, code, msg, data: {state, instruments: […]}}` (`task_id` at the top)."""
    data = fields.callback_data(body)
    return fields.callback_stage(data) is None and ("instruments" in data or "state" in data)


KIND: Final = output_kind(
    Kind.MIDI,
    path="/api/v1/midi/record-info",
    record_type=MidiRecord,
    parse=parse_midi,
    schedule=schedule(ready_after_s=20.0, window_s=10.0, window_end_s=120.0),  # takes 30-90 s
    is_callback=is_callback,
)
