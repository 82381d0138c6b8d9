"""One decoded manifest → what the browse page and the playlists need of it. Pure.

A task becomes one `ViewRow`: a compact JSON object for the page (short keys, empty values
left out), its lyrics apart, its playlist lines, and the words a search may match. The JSON
is already made safe to sit inside a `<script>` element: every
`<`, `>` and `&` is written as a `\\u` escape, so no title can close the element or open a
comment, whatever the API put in it. Rows are kept in the state, so that the daemon rewrites
the page without reading every manifest again.

The page's keys (see templates/index.js): i task ID, k kind, o outcome, s status, w date,
e reason (partial and failed tasks), t tracks, f files (role, path, content type),
pa parent task, mu the music track (audio ID) another kind was made from. A track: a audio ID,
n title, g style tags, d duration, m model, c created, p MP3 path, im image path, pe why there
is no MP3, l lyrics (index into the task's lyrics), x the track's other files (role, path).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from archiver.kinds.fields import created_at

ARCHIVED: Final = "archived"
_TRACK_FILE_KEYS: Final = frozenset({"audio", "image"})  # shown as the player and the cover
_MAX_REASONS: Final = 3
# A track's text keys on the page, with the manifest field each comes from ("d", its
# duration, goes between the first three and the last two).
_TRACK_TEXTS: Final = (
    ("a", "audio_id"),
    ("n", "title"),
    ("g", "tags"),
    ("m", "model_name"),
    ("c", "created_at"),
)


@dataclass(frozen=True, slots=True)
class ViewRow:
    task_id: str
    sort_key: str  # newest first: when the task was created (else archived), ISO 8601
    data: str  # one JSON object, safe inside <script>
    lyrics: str  # one JSON array of the task's distinct lyrics, safe inside <script>
    m3u: str  # "#EXTINF:<s>,<title>\n<path>\n" per archived MP3; "" when none
    hay: str  # what a search may match, lowercase (see `search_text`)
    tracks: int  # tracks with an archived MP3


# One encoder for every row: json.dumps with options makes a new one each call.
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def script_json(value: Any) -> str:
    """Compact JSON that cannot end, or comment out, the <script> element it is put in."""
    text = _ENCODE(value)
    # Three replaces: str.translate with a table was 30 times slower. (U+2028 and U+2029 may stay:
    # the block is parsed by JSON.parse, never run as script.)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def view_row(doc: Mapping[str, Any]) -> ViewRow:
    """The row of one manifest (decoded: `archiving.read_manifest`)."""
    task_id = str(doc["task_id"])
    lyrics: list[str] = []
    tracks = [_track(t, lyrics) for t in _dicts(doc.get("tracks"))]
    files = [
        [_text(e.get("role")) or "cover", e["path"], _text(e.get("content_type")) or ""]
        for key in ("images", "files")
        for e in _stored(doc.get(key))
    ]
    created = [t["c"] for t in tracks if "c" in t]
    raw = doc.get("raw") if isinstance(doc.get("raw"), dict) else {}
    task: dict[str, Any] = {
        "i": task_id,
        "k": _text(doc.get("kind")),
        "o": _text(doc.get("outcome")),
        "s": _text(doc.get("status")),
        "w": min(created)
        if created
        else created_at(raw.get("createTime")) or _text(doc.get("archived_at")),
        "e": _reason(doc),
        "t": tracks,
        "f": files,
        "pa": _text(doc.get("parent_task_id")),
        "mu": _text(raw.get("musicId")),
    }
    task = {key: value for key, value in task.items() if value}
    return ViewRow(
        task_id=task_id,
        sort_key=task.get("w", ""),
        data=script_json(task),
        lyrics=script_json(lyrics),
        m3u="".join(_m3u(track) for track in tracks),
        hay=search_text(task),
        tracks=sum("p" in t for t in tracks),
    )


def search_text(task: Mapping[str, Any]) -> str:
    """What the page's search looks at in a task (its ID, kind and outcome; its tracks'
    titles, styles, models and audio IDs: `hay` in templates/index.js), lowercase. A search
    word is a part of one of its words: a shard whose words (render.render_shard makes them
    distinct) hold no part for every search word has no match, and is never loaded."""
    texts = [task.get("i"), task.get("k"), task.get("o")]
    for track in task.get("t", ()):
        texts.extend(track.get(key) for key in ("n", "g", "m", "a"))
    return " ".join(t for t in texts if t).lower()


def _track(track: Mapping[str, Any], lyrics: list[str]) -> dict[str, Any]:
    # Key by key, in the page's order, leaving out empty values: a full index makes 100,000.
    out: dict[str, Any] = {}
    get = track.get
    for key, field in _TRACK_TEXTS[:3]:
        if value := _text(get(field)):
            out[key] = value
    if (duration := _duration(get("duration"))) is not None:
        out["d"] = duration
    for key, field in _TRACK_TEXTS[3:]:
        if value := _text(get(field)):
            out[key] = value
    audio = get("audio")
    if path := _path(audio):
        out["p"] = path
    if image := _path(get("image")):
        out["im"] = image
    if isinstance(audio, dict) and (error := _text(audio.get("error"))):
        out["pe"] = error
    prompt = get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        if prompt not in lyrics:  # the two tracks of a task mostly share their lyrics
            lyrics.append(prompt)
        out["l"] = lyrics.index(prompt)
    others = [
        [key, path]
        for key, value in track.items()
        if key not in _TRACK_FILE_KEYS and isinstance(value, dict | list)
        for path in map(_path, value if isinstance(value, list) else [value])
        if path
    ]
    if others:
        out["x"] = others
    return out


def _m3u(track: Mapping[str, Any]) -> str:
    if "p" not in track or not track["p"].lower().endswith(".mp3"):
        return ""
    title = " ".join((track.get("n") or track.get("a") or "").split())  # no line breaks
    seconds = round(track["d"]) if "d" in track else -1  # -1: unknown, as M3U has it
    return f"#EXTINF:{seconds},{title}\n{track['p']}\n"


def _reason(doc: Mapping[str, Any]) -> str | None:
    """Why a task is not fully archived, in a line (None when it is)."""
    outcome = doc.get("outcome")
    if outcome == ARCHIVED:
        return None
    if outcome == "failed":
        error = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        code, message = error.get("code"), _text(error.get("message"))
        text = ": ".join(str(p) for p in (code, message) if p not in (None, ""))
        return text or f"the task failed (status {doc.get('status')})"
    reasons = list(_problems(doc))
    if not reasons:
        return "some files could not be archived"
    more = len(reasons) - _MAX_REASONS
    return "; ".join(reasons[:_MAX_REASONS]) + (f" (+{more} more)" if more > 0 else "")


def _problems(doc: Mapping[str, Any]) -> Iterator[str]:
    for track in _dicts(doc.get("tracks")):
        name = _text(track.get("title")) or _text(track.get("audio_id")) or "a track"
        if track.get("audio") is None:
            yield f"{name}: no audio from the API"
        for key, value in track.items():
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, dict) and "error" in entry and "path" not in entry:
                    yield f"{name} ({key}): {entry['error']}"
    for key in ("images", "files"):
        for entry in _dicts(doc.get(key)):
            if "error" in entry and "path" not in entry:
                yield f"{_text(entry.get('role')) or key}: {entry['error']}"


def _stored(value: object) -> Iterator[Mapping[str, Any]]:
    return (e for e in _dicts(value) if _path(e))


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _path(entry: object) -> str | None:
    path = entry.get("path") if isinstance(entry, dict) else None
    return path if isinstance(path, str) and path else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _duration(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 2) if value > 0 else None
