"""The stand-in records of the kinds made from a finished song: WAV, stems, MP4, MIDI and
lyrics, with the variants API-NOTES documents (string or epoch-ms times, null stem fields,
`successFlag` a string or a number) and their failures."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from archiver.kinds import media
from archiver.sandbox.cdn import Cdn

OutputKind = Literal["wav", "stems", "mp4", "midi", "lyrics"]
PATHS: dict[OutputKind, str] = {
    "wav": "/api/v1/wav/record-info",
    "stems": "/api/v1/vocal-removal/record-info",
    "mp4": "/api/v1/mp4/record-info",
    "midi": "/api/v1/midi/record-info",
    "lyrics": "/api/v1/lyrics/record-info",
}
_MIDI_FLAGS = {"CREATE_TASK_FAILED": 2, "GENERATE_MIDI_FAILED": 3}
_SEPARATE_VOCAL = ("vocal", "instrumental")
_SPLIT_STEM = (
    "vocal", "backingVocals", "drums", "bass", "guitar", "keyboard", "percussion", "strings",
    "synth", "fx", "brass", "woodwinds",
)  # fmt: skip
_ALL_STEMS = ("origin", "instrumental", *_SPLIT_STEM)
_HTML = b"<!DOCTYPE html><html><body>Access denied</body></html>"


@dataclass
class OutputTask:
    kind: OutputKind
    task_id: str
    ready_after_s: float = 0.0
    fail_status: str | None = None  # e.g. "GENERATE_WAV_FAILED"; MIDI: CREATE_TASK_FAILED → 2
    callback_exception: bool = False  # finished as CALLBACK_EXCEPTION, files complete
    create_time: Literal["ms", "string"] = "string"
    stems_type: Literal["separate_vocal", "split_stem"] = "separate_vocal"
    no_file: bool = False  # finished without its file (null URL, null midiData, no variants)
    wrong_body: Literal["html", "mp3"] | None = None  # the file URL serves this instead
    wav_seconds: float = 1.0
    variants: int = 2  # lyrics
    created_ago_s: float = 0.0  # created this long before its first poll (see fakeapi)
    files: dict[str, str] = field(default_factory=dict)  # role → URL path
    started: float | None = None


def add_files(task: OutputTask, cdn: Cdn) -> None:
    """Put the task's files on the file host."""
    seed = zlib.crc32(task.task_id.encode())
    if task.kind == "wav":
        body, kind = media.sample_wav(task.wav_seconds, seed), "audio/wav"
        task.files["wav"] = cdn.add(f"{task.task_id}.wav", _or_wrong(task, body), content_type=kind)
    elif task.kind == "mp4":
        body = _or_wrong(task, media.sample_mp4(seed=seed))
        task.files["video"] = cdn.add(f"{task.task_id}.mp4", body, content_type="video/mp4")
    elif task.kind == "stems":
        stems = _SEPARATE_VOCAL if task.stems_type == "separate_vocal" else _SPLIT_STEM
        for n, stem in enumerate((*stems, "origin1", "origin2")):
            body = _or_wrong(task, media.sample_mp3(1.0, seed + n))
            name = f"{task.task_id}-{stem}.mp3"
            task.files[stem] = cdn.add(name, body, content_type="audio/mpeg")


def _or_wrong(task: OutputTask, body: bytes) -> bytes:
    if task.wrong_body == "html":
        return _HTML
    if task.wrong_body == "mp3":
        return media.sample_mp3(1.0, 7)
    return body


def output_data(task: OutputTask, elapsed: float, created_ms: int, origin: str) -> dict[str, Any]:
    """The record-info `data` of `task`, `elapsed` seconds after its first poll."""
    done = elapsed >= task.ready_after_s
    failed = done and task.fail_status is not None
    data: dict[str, Any] = {"taskId": task.task_id}
    if task.kind == "lyrics":
        data |= {"param": '{"prompt":"A song about a sandbox"}', "response": None}
        data["status"] = task.fail_status if failed else ("SUCCESS" if done else "PENDING")
        if done and not failed:
            data["response"] = {"taskId": task.task_id, "data": _variants(task)}
        data |= {"type": "LYRICS", "errorCode": None, "errorMessage": None}
    else:
        data |= {"musicId": f"{task.task_id[:8]}-music", "musicIndex": 0}
        data["callbackUrl"] = "https://api.example.com/callback"
        data["completeTime"] = _time(task, created_ms + 83_000) if done else None
        if task.kind == "midi":
            data |= {"recordTaskId": -1, "audioId": f"{task.task_id[:8]}-origin"}
            data["midiData"] = None if task.no_file or not done or failed else _midi()
            flag = _MIDI_FLAGS.get(task.fail_status or "", 3) if failed else int(done)
            data["successFlag"] = flag
        else:
            data["response"] = _response(task, origin) if done and not failed else None
            data["successFlag"] = _string_flag(task, done, failed)
        data |= {"createTime": _time(task, created_ms), "errorCode": None, "errorMessage": None}
    if failed:
        data["errorCode"], data["errorMessage"] = 501, "Generation failed"
    return data


def _string_flag(task: OutputTask, done: bool, failed: bool) -> str:
    if failed:
        assert task.fail_status is not None
        return task.fail_status
    if not done:
        return "PENDING"
    return "CALLBACK_EXCEPTION" if task.callback_exception else "SUCCESS"


def _time(task: OutputTask, ms: int) -> Any:
    if task.create_time == "ms":
        return ms
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _response(task: OutputTask, origin: str) -> dict[str, Any]:
    def url(role: str) -> str | None:
        return None if task.no_file or role not in task.files else origin + task.files[role]

    if task.kind == "wav":
        return {"audioWavUrl": url("wav")}
    if task.kind == "mp4":
        return {"videoUrl": url("video")}
    response: dict[str, Any] = {"id": None, "originUrl": None}
    groups = ("Vocals", "Instrumental") if task.stems_type == "separate_vocal" else ("Keyboard",)
    response["originData"] = [
        {"duration": 245.6, "audio_url": url(f"origin{n}"), "stem_type_group_name": group,
         "id": f"{task.task_id[:8]}-origin-{n}"}
        for n, group in enumerate(groups[:2], start=1)
    ]  # fmt: skip
    response |= {f"{stem}Url": url(stem) for stem in _ALL_STEMS if stem != "origin"}
    return response


def _midi() -> dict[str, Any]:
    notes = [
        {"pitch": 73, "start": 0.036458333333333336, "end": 0.18229166666666666, "velocity": 1},
        {"pitch": 61, "start": 0.046875, "end": 0.19270833333333334, "velocity": 1},
    ]
    bass = [{"pitch": 44, "start": 7.6875, "end": 7.911458333333333, "velocity": 1}]
    return {
        "state": "complete",
        "instruments": [
            {"name": "Drums", "notes": notes},
            {"name": "Electric Bass (finger)", "notes": bass},
        ],
    }


def _variants(task: OutputTask) -> list[dict[str, Any]]:
    if task.no_file:
        return []
    variants = [
        {"text": f"[Verse]\nSandbox night {n}\n[Chorus]\n钢铁侠 {n}", "title": "Sandbox",
         "status": "complete", "errorMessage": ""}
        for n in range(1, task.variants + 1)
    ]  # fmt: skip
    if len(variants) > 2:  # a failed variant has no text
        variants[1] |= {"text": "", "status": "failed", "errorMessage": "Sensitive word"}
    return variants
