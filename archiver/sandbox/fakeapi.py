"""The stand-in record-info API: every kind's endpoint, every answer variant SPEC lists, and
faults (music and cover records here, the other kinds' in `outputs`).

A task's clock starts at the first authorised call about it, so what a test sees depends only on
how long after its first poll it asks, never on when the sandbox started. Its `createTime` is
that moment on the wall clock, or `created_ago_s` before it (a task listed after it was created,
which is that much further along at its first poll). File URLs are built
from the request's own origin, so they are absolute and right whatever port was bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from archiver import media
from archiver.sandbox.cdn import Cdn
from archiver.sandbox.outputs import PATHS as OUTPUT_PATHS
from archiver.sandbox.outputs import OutputKind, OutputTask, add_files, output_data

MUSIC_PATH = "/api/v1/generate/record-info"
COVER_PATH = "/api/v1/suno/cover/record-info"
ALIGNED_LYRICS_PATH = "/api/v1/generate/get-timestamped-lyrics"

FAULTS = frozenset(
    {
        "http500", "http502", "http455", "body455", "http429", "body429", "http430", "body430",
        "http405", "body405", "html", "badjson", "http401", "body401", "reset", "hang",
        "other_task", "body402", "body433", "body429_limit",
    }
)  # fmt: skip
UnknownForm = Literal["null", "code404", "code422", "http404", "http422"]

_BIG_AUDIO_S = 30.0  # longer sample songs are written once to disk and shared (benchmarks)
_DATA_URL = "data:audio/mpeg;base64,SUQzAwAAAAAAAA=="  # an empty ID3 tag
_HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@dataclass
class MusicTask:
    task_id: str
    tracks: int = 2
    ready_after_s: float = 0.0
    fail_status: str | None = None
    seconds: float = 3.0
    error_code: int = 400
    error_message: str = "Lyrics contained copyrighted material"
    create_time: Literal["ms", "string"] = "ms"
    callback_exception: bool = False  # final status CALLBACK_EXCEPTION, tracks complete
    pending_data: Literal["null", "empty", "no_response"] = (
        "null"  # sunoData null / [] / no response
    )
    extra_fields: bool = False  # unknown fields in the body, data, response and tracks
    # source* URLs: 403, a working copy, null, or (None) no such keys
    source_urls: Literal["forbidden", "ok", "null"] | None = None
    title: str | None = None  # every track's title (Suno gives both tracks the same one)
    audio_ids: Sequence[str] | None = None  # per track
    prompt: str = "[Verse]\nSandbox lyrics, line one\n[Chorus]\nSandbox chorus"
    tags: str = "electrifying, rock"
    model_name: str = "chirp-v4"
    missing_audio: int | None = None  # 1-based track whose audioUrl stays "" (null once finished)
    odd_audio_url: Literal["ftp", "data"] | None = None  # track 1's audioUrl is not http(s)
    non_finite: bool = False  # NaN and Infinity in the JSON (Python's json writes them)
    instrumental: bool = False  # its timestamped lyrics have no words
    unknown_for_s: float = 0.0  # answered as unknown this long (the vendor still replicating it)
    created_ago_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)  # "audio1", "image1", … → URL path
    started: float | None = None


@dataclass
class CoverTask:
    task_id: str
    images: int = 2
    ready_after_s: float = 0.0
    failed: bool = False
    parent_task_id: str = ""
    create_time: Literal["ms", "string"] = "string"
    extra_fields: bool = False
    empty_for_s: float = 0.0  # `data` is {} this long, as the live cover endpoint's first seconds
    created_ago_s: float = 0.0
    files: list[str] = field(default_factory=list)
    started: float | None = None


@dataclass(frozen=True)
class _Fault:
    name: str
    retry_after: float | None
    delay_s: float | None


def fake_hex_id(label: str) -> str:
    """A 32-hex-character ID like the vendors' task IDs, stable for a label."""
    a = zlib.crc32(label.encode())
    b = zlib.crc32(label.encode()[::-1] + b"#")
    c = zlib.crc32(b"%" + label.encode())
    d = zlib.crc32(label.encode() + b"!")
    return f"{a:08x}{b:08x}{c:08x}{d:08x}"


class FakeApi:
    """Both record-info endpoints. `calls[(endpoint, task_id)]` counts every request."""

    def __init__(
        self, cdn: Cdn, *, api_key: str = "sandbox-key", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cdn = cdn
        self._api_key = api_key
        self.clock = clock
        self.music: dict[str, MusicTask] = {}
        self.covers: dict[str, CoverTask] = {}
        self.outputs: dict[tuple[str, str], OutputTask] = {}  # (kind, task_id): WAV, stems, …
        self.calls: Counter[tuple[str, str]] = Counter()
        self.total_calls = 0
        self.unknown_form: UnknownForm = "null"
        self.refuse_aligned_lyrics = 0  # the next this many timestamped-lyrics calls get 400
        self._wall_offset = time.time() - clock()  # the clock's reading → Unix time
        self._faults: deque[_Fault] = deque()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._big_files: dict[tuple[float, int], Path] = {}
        self._closing = asyncio.Event()

    def __repr__(self) -> str:
        return f"FakeApi(music={len(self.music)}, covers={len(self.covers)})"

    # --- configuration ---------------------------------------------------------------------

    def fail_next(
        self, n: int, fault: str, retry_after: float | None = None, *, delay_s: float | None = None
    ) -> None:
        """Answer the next `n` calls (any task, either endpoint) with `fault` (see FAULTS).

        `retry_after` sets a Retry-After header (http429 always has one, default 1 s);
        "hang" waits `delay_s` (default: until the sandbox stops) before answering normally.
        "reset" drops the connection; aiohttp retries a GET once by itself after that, so one
        reset the client sees takes two queued "reset" faults. "other_task" answers with the
        record of another task of that endpoint (a caching proxy's mix-up).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        self._faults.extend(_Fault(fault, retry_after, delay_s) for _ in range(n))

    def clear_faults(self) -> None:
        self._faults.clear()

    def add_music(self, task_id: str, **knobs: Any) -> MusicTask:
        task = MusicTask(task_id, **knobs)
        for i in range(1, task.tracks + 1):
            seed = zlib.crc32(f"{task_id}:{i}".encode())
            task.files[f"audio{i}"] = self._add_audio(f"{task_id}-{i}.mp3", task.seconds, i, seed)
            task.files[f"image{i}"] = self.cdn.add(
                f"{task_id}-{i}.jpg", media.sample_jpeg(seed), content_type="image/jpeg"
            )
            # A live stream is never the final file: serve only the start of the song.
            head = media.sample_mp3(min(task.seconds, 1.0), seed + 1)
            task.files[f"stream{i}"] = self.cdn.add(
                f"{task_id}-{i}-stream.mp3", head, content_type="audio/mpeg"
            )
            if task.source_urls == "ok":
                task.files[f"source_audio{i}"] = self._add_audio(
                    f"{task_id}-{i}-source.mp3", task.seconds, i, seed
                )
                task.files[f"source_image{i}"] = self.cdn.add(
                    f"{task_id}-{i}-source.jpg", media.sample_jpeg(seed), content_type="image/jpeg"
                )
            elif task.source_urls == "forbidden":
                task.files[f"source_audio{i}"] = f"/forbidden/{task_id}-{i}.mp3"
                task.files[f"source_image{i}"] = f"/forbidden/{task_id}-{i}.jpg"
        self.music[task_id] = task
        return task

    def add_cover(self, task_id: str, **knobs: Any) -> CoverTask:
        task = CoverTask(task_id, **knobs)
        if not task.parent_task_id:
            task.parent_task_id = fake_hex_id(f"parent:{task_id}")
        for i in range(1, task.images + 1):
            png = media.sample_png(seed=zlib.crc32(f"{task_id}:cover:{i}".encode()))
            task.files.append(
                self.cdn.add(f"{task_id}-cover-{i}.png", png, content_type="image/png")
            )
        self.covers[task_id] = task
        return task

    def add_output(self, kind: OutputKind, task_id: str, **knobs: Any) -> OutputTask:
        """A WAV, stems, MP4, MIDI or lyrics task (knobs: see `outputs.OutputTask`)."""
        task = OutputTask(kind, task_id, **knobs)
        add_files(task, self.cdn)
        self.outputs[(kind, task_id)] = task
        return task

    def _add_audio(self, name: str, seconds: float, track: int, seed: int) -> str:
        if seconds <= _BIG_AUDIO_S:
            return self.cdn.add(name, media.sample_mp3(seconds, seed), content_type="audio/mpeg")
        key = (seconds, track)
        if key not in self._big_files:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="suno-sandbox-")
            path = Path(self._tmp.name) / f"song-{seconds:g}s-{track}.mp3"
            media.write_sample_mp3(path, int(seconds * 16_000), seed=track)
            self._big_files[key] = path
        return self.cdn.add(name, self._big_files[key], content_type="audio/mpeg")

    def install(self, app: web.Application) -> None:
        app.router.add_get(MUSIC_PATH, self._music_endpoint)
        app.router.add_get(COVER_PATH, self._cover_endpoint)
        for kind, path in OUTPUT_PATHS.items():
            app.router.add_get(path, self._output_endpoint(kind))
        app.router.add_post(ALIGNED_LYRICS_PATH, self._aligned_lyrics)
        app.router.add_get("/forbidden/{name}", self._forbidden)

    def close(self) -> None:
        """Release hung requests and the temporary files of long sample songs."""
        self._closing.set()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- HTTP ------------------------------------------------------------------------------

    async def _music_endpoint(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "music")

    async def _cover_endpoint(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "cover")

    def _output_endpoint(self, kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._answer(request, kind)

        return endpoint

    async def _aligned_lyrics(self, request: web.Request) -> web.Response:
        """Word timings of a music track: its prompt's words, a line every 5 s."""
        try:
            asked = await request.json()
        except ValueError:
            return _envelope(400, "body is not JSON")
        task_id, audio_id = str(asked.get("taskId", "")), str(asked.get("audioId", ""))
        self.calls[("aligned_lyrics", task_id)] += 1
        self.total_calls += 1
        if request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _envelope(401, "You do not have access permissions", http_status=401)
        if self.refuse_aligned_lyrics > 0:
            self.refuse_aligned_lyrics -= 1
            return _envelope(400, "Timestamped lyrics are not available for this audio")
        task = self.music.get(task_id)
        if task is None or audio_id not in {_audio_id(task, i) for i in range(1, task.tracks + 1)}:
            return _envelope(200, "success")
        words = [] if task.instrumental else _aligned_words(task.prompt)
        data = {"alignedWords": words, "waveformData": [0.0, 1.0, 0.5], "hootCer": 0.38}
        return web.json_response(
            {"code": 200, "msg": "success", "data": data | {"isStreamed": False}}
        )

    async def _forbidden(self, request: web.Request) -> web.Response:
        body = "<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"
        return web.Response(status=403, text=body, content_type="application/xml")

    async def _answer(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        task_id = request.query.get("taskId", "")
        self.calls[(endpoint, task_id)] += 1
        self.total_calls += 1
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.name == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay_s)
        elif fault is not None and fault.name == "other_task":
            task_id = self._other_task(endpoint, task_id)
        elif fault is not None:
            return self._fault_response(request, fault)
        if request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _envelope(401, "You do not have access permissions", http_status=401)
        if not task_id:
            return _envelope(422, "taskId cannot be empty")
        origin = str(request.url.origin())
        now = self.clock()
        if endpoint == "music" and task_id in self.music:
            task = self.music[task_id]
            task.started = now if task.started is None else task.started
            if now - task.started < task.unknown_for_s:
                return self._unknown()
            data = _music_data(task, self._elapsed(task), self._created_ms(task), origin)
            extra = task.extra_fields
        elif endpoint == "cover" and task_id in self.covers:
            cover = self.covers[task_id]
            cover.started = now if cover.started is None else cover.started
            if now - cover.started < cover.empty_for_s:
                return _envelope(200, "success", data={})
            data = _cover_data(cover, self._elapsed(cover), self._created_ms(cover), origin)
            extra = cover.extra_fields
        elif (endpoint, task_id) in self.outputs:
            output = self.outputs[(endpoint, task_id)]
            output.started = now if output.started is None else output.started
            data = output_data(output, self._elapsed(output), self._created_ms(output), origin)
            extra = False
        else:
            return self._unknown()
        body: dict[str, Any] = {"code": 200, "msg": "success", "data": data}
        if extra:
            body["traceId"] = "sandbox-trace"
        return web.json_response(body)

    def _elapsed(self, task: MusicTask | CoverTask | OutputTask) -> float:
        """Seconds since the task was created: since its first poll, plus `created_ago_s`."""
        assert task.started is not None
        return self.clock() - task.started + task.created_ago_s

    def _created_ms(self, task: MusicTask | CoverTask | OutputTask) -> int:
        assert task.started is not None
        return round((task.started + self._wall_offset - task.created_ago_s) * 1000)

    def _other_task(self, endpoint: str, task_id: str) -> str:
        known: Iterable[str] = self.music if endpoint == "music" else self.covers
        if endpoint in OUTPUT_PATHS:
            known = (other for kind, other in self.outputs if kind == endpoint)
        return next((other for other in known if other != task_id), task_id)

    def _unknown(self) -> web.Response:
        form = self.unknown_form
        if form == "http404":
            return web.json_response({"code": 404, "msg": "Not Found"}, status=404)
        if form == "http422":
            return _envelope(422, "recordInfo is null", http_status=422)
        if form == "code404":
            return _envelope(404, "task not found")
        if form == "code422":
            return _envelope(422, "recordInfo is null")
        return _envelope(200, "success")

    def _fault_response(self, request: web.Request, fault: _Fault) -> web.StreamResponse:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        match fault.name:
            case "http500":
                return _envelope(500, "Server Error", http_status=500, headers=headers)
            case "http502":
                return web.Response(status=502, body=_HTML, content_type="text/html")
            case "http455":
                return _envelope(
                    455, "System is currently undergoing maintenance", http_status=455,
                    reason="Service Unavailable", headers=headers,
                )  # fmt: skip
            case "body455":
                return _envelope(455, "System is currently undergoing maintenance", headers=headers)
            case "http429":
                headers.setdefault("Retry-After", "1")
                return _envelope(429, "Too Many Requests", http_status=429, headers=headers)
            case "body429":  # sunoapi.org's meaning of 429
                return _envelope(429, "insufficient credits", headers=headers)
            case "body429_limit":  # kie.ai's
                return _envelope(429, "Rate limited, please try again later", headers=headers)
            case "body402":
                return _envelope(402, "Insufficient credits", headers=headers)
            case "body433":
                return _envelope(433, "Sub-key Usage Exceeds Limit", headers=headers)
            case "http430":
                return _envelope(
                    430, "Your call frequency is too high", http_status=430, headers=headers
                )
            case "body430":
                return _envelope(430, "Your call frequency is too high", headers=headers)
            case "http405":
                return _envelope(405, "Rate limited", http_status=405, headers=headers)
            case "body405":
                return _envelope(405, "Rate limited", headers=headers)
            case "html":
                return web.Response(body=_HTML, content_type="text/html")
            case "badjson":
                return web.Response(
                    text='{"code": 200, "msg": "succ', content_type="application/json"
                )
            case "http401":
                return _envelope(401, "You do not have access permissions", http_status=401)
            case "body401":
                return _envelope(401, "You do not have access permissions")
            case _:  # "reset": drop the connection without a response
                if request.transport is not None:
                    request.transport.close()
                return web.Response()


def _envelope(
    code: int,
    msg: str,
    *,
    http_status: int = 200,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> web.Response:
    return web.json_response(
        {"code": code, "msg": msg, "data": data}, status=http_status, reason=reason, headers=headers
    )


# --- the records, as a function of the time since the first poll -----------------------------


def _stage(elapsed: float, ready_after: float) -> int:
    """0 PENDING, 1 TEXT_SUCCESS, 2 FIRST_SUCCESS, 3 finished."""
    if elapsed >= ready_after:
        return 3
    if elapsed >= ready_after * 3 / 4:
        return 2
    return 1 if elapsed >= ready_after / 4 else 0


def _time(created_ms: int, form: Literal["ms", "string"], *, iso: bool = False) -> Any:
    """A createTime/completeTime as the live API (epoch ms) or the docs (a date string) give it."""
    if form == "ms":
        return created_ms
    if iso:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_ms // 1000))
        return f"{stamp}.{created_ms % 1000:03d}Z"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created_ms / 1000))


def _music_data(task: MusicTask, elapsed: float, created_ms: int, origin: str) -> dict[str, Any]:
    stage = _stage(elapsed, task.ready_after_s)
    failed = task.fail_status is not None and stage == 3
    if failed:
        status = task.fail_status
    elif stage == 3:
        status = "CALLBACK_EXCEPTION" if task.callback_exception else "SUCCESS"
    else:
        status = ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS")[stage]
    if task.fail_status is not None and stage in (1, 2):
        status, stage = "PENDING", 0  # a task that will fail shows no text on the way

    response: dict[str, Any] | None = {"taskId": task.task_id, "sunoData": None}
    if failed:
        response = {
            "taskId": task.task_id, "sunoData": None,
            "errorCode": task.error_code, "errorMessage": task.error_message,
        }  # fmt: skip
    elif stage == 0:
        if task.pending_data == "empty":
            response = {"taskId": task.task_id, "sunoData": []}
        elif task.pending_data == "no_response":
            response = None
    else:
        assert response is not None
        response["sunoData"] = [
            _track(task, i, origin, created_ms, stage=stage) for i in range(1, task.tracks + 1)
        ]
    if response is not None and task.extra_fields:
        response["unknownList"] = [{"x": 1}]
    param = {"prompt": task.prompt, "style": task.tags, "title": task.title or "", "model": "V4"}
    data: dict[str, Any] = {
        "taskId": task.task_id,
        "parentMusicId": "",
        "param": json.dumps(param, ensure_ascii=False),
        "response": response,
        "status": status,
        "type": task.model_name,
        "operationType": "generate",
        "errorCode": task.error_code if failed else None,
        "errorMessage": task.error_message if failed else None,
        "createTime": _time(created_ms, task.create_time),
    }
    if stage == 3:
        done_ms = created_ms + round(task.ready_after_s * 1000)
        data["completeTime"] = _time(done_ms, task.create_time)
    if task.non_finite:
        data["creditsLeft"] = math.inf
    if task.extra_fields:
        data["newFeatureFlag"] = {"nested": [1, "two", None]}
        data["creditsUsed"] = 12
    return data


def _track(task: MusicTask, i: int, origin: str, created_ms: int, *, stage: int) -> dict[str, Any]:
    files = task.files
    audio = (stage == 3 or (stage == 2 and i == 1)) and task.missing_audio != i
    track: dict[str, Any] = {
        "id": _audio_id(task, i),
        # "" until done; a track the API never delivers shows null on the finished task
        "audioUrl": origin + files[f"audio{i}"] if audio else (None if stage == 3 else ""),
        "streamAudioUrl": origin + files[f"stream{i}"],
        "imageUrl": origin + files[f"image{i}"],
        "prompt": task.prompt,
        "modelName": task.model_name,
        "title": task.title if task.title is not None else f"Sandbox song {task.task_id[:6]}",
        "tags": task.tags,
        "createTime": _time(created_ms, task.create_time),
        "duration": round(task.seconds, 2) if audio else None,
    }
    if audio and i == 1 and task.odd_audio_url == "ftp":  # the same file, by another scheme
        track["audioUrl"] = "ftp" + track["audioUrl"].removeprefix("http")
    elif audio and i == 1 and task.odd_audio_url == "data":
        track["audioUrl"] = _DATA_URL
    if audio and task.non_finite:
        track["duration"] = math.nan
    if task.source_urls == "null":
        track["sourceAudioUrl"] = track["sourceStreamAudioUrl"] = track["sourceImageUrl"] = None
    elif task.source_urls is not None:
        track["sourceAudioUrl"] = origin + files[f"source_audio{i}"] if audio else ""
        track["sourceStreamAudioUrl"] = f"{origin}/forbidden/{task.task_id}-{i}-stream"
        track["sourceImageUrl"] = origin + files[f"source_image{i}"]
    if task.extra_fields:
        track["negativeTags"] = ""
        track["isNewFieldFrom2026"] = True
    return track


def _audio_id(task: MusicTask, i: int) -> str:
    if task.audio_ids and i <= len(task.audio_ids):
        return task.audio_ids[i - 1]
    return fake_hex_id(f"{task.task_id}:audio:{i}")


def _aligned_words(prompt: str) -> list[dict[str, Any]]:
    """The prompt's words as the API aligns them: a line break and any section tag before a
    line's first word ("[Verse]\nNight"), a line every 5 s from 10 s, 0.4 s a word."""
    words: list[dict[str, Any]] = []
    pending = ""
    line_no = 0
    for line in prompt.splitlines():
        if line.strip().startswith("[") or not line.strip():
            pending += line.strip() + "\n"  # a section tag rides on the next word
            continue
        for n, word in enumerate(line.split()):
            start = 10.0 + 5.0 * line_no + 0.4 * n
            text = (pending + ("\n" if words and n == 0 and not pending else "")) + word
            words.append({"word": text, "success": True, "startS": start,
                          "endS": round(start + 0.35, 2), "palign": 0})  # fmt: skip
            pending = ""
        line_no += 1
    return words


def _cover_data(task: CoverTask, elapsed: float, created_ms: int, origin: str) -> dict[str, Any]:
    done = elapsed >= task.ready_after_s
    flag = (3 if task.failed else 1) if done else (2 if elapsed >= task.ready_after_s / 2 else 0)
    data: dict[str, Any] = {
        "taskId": task.task_id,
        "parentTaskId": task.parent_task_id,
        "callbackUrl": "https://api.example.com/callback",
        "completeTime": None,
        "response": None,
        "successFlag": flag,
        "createTime": _time(created_ms, task.create_time, iso=True),
        "errorCode": None,
        "errorMessage": None,
    }
    if flag == 1:
        data["response"] = {"images": [origin + path for path in task.files]}
        done_ms = created_ms + round(task.ready_after_s * 1000)
        data["completeTime"] = _time(done_ms, task.create_time, iso=True)
        data["errorCode"], data["errorMessage"] = 200, ""
    elif flag == 3:
        data["errorCode"], data["errorMessage"] = 500, "Internal error - Please try again later."
    if task.extra_fields:
        data["coverStyle"] = "sandbox"
        if data["response"] is not None:
            data["response"]["unknownKey"] = 1
    return data
