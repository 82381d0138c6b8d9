"""The stand-in record-info API: every kind's endpoint, every answer variant SPEC lists, and
faults (the music and cover records are in `songs`, the other kinds' in `outputs`).

A task's clock starts at the first authorised call about it, so what a test sees depends only on
how long after its first poll it asks, never on when the sandbox started. Its `createTime` is
that moment on the wall clock, or `created_ago_s` before it (a task listed after it was created,
which is that much further along at its first poll). File URLs are built
from the request's own origin, so they are absolute and right whatever port was bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from archiver.kinds import media
from archiver.sandbox.cdn import Cdn
from archiver.sandbox.outputs import PATHS as OUTPUT_PATHS
from archiver.sandbox.outputs import OutputKind, OutputTask, add_files, output_data
from archiver.sandbox.songs import (
    CoverTask,
    MusicTask,
    aligned_words,
    cover_data,
    fake_hex_id,
    music_data,
    track_audio_id,
)

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
_HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@dataclass(frozen=True)
class _Fault:
    name: str
    retry_after: float | None
    delay_s: float | None


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
        if task is None or audio_id not in {
            track_audio_id(task, i) for i in range(1, task.tracks + 1)
        }:
            return _envelope(200, "success")
        words = [] if task.instrumental else aligned_words(task.prompt)
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
            data = music_data(task, self._elapsed(task), self._created_ms(task), origin)
            extra = task.extra_fields
        elif endpoint == "cover" and task_id in self.covers:
            cover = self.covers[task_id]
            cover.started = now if cover.started is None else cover.started
            if now - cover.started < cover.empty_for_s:
                return _envelope(200, "success", data={})
            data = cover_data(cover, self._elapsed(cover), self._created_ms(cover), origin)
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
