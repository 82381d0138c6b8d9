"""Fetcher against the stand-in CDN over real loopback HTTP, with injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from archive_checks import strip_id3v2
from mutagen.id3 import ID3

from archiver.errors import FetchError, TaggingError
from archiver.fetch.download import Fetched, Fetcher
from archiver.kinds import media
from archiver.kinds.records import Track
from archiver.sandbox.cdn import Cdn, FileFaults
from archiver.tags.tagging import TagWriter, check_mp3

MP3 = frozenset({media.MP3})
SONG = media.sample_mp3(seconds=8, seed=7)  # about 130 kB


class Host:
    def __init__(self, cdn: Cdn, base: str) -> None:
        self.cdn = cdn
        self.base = base

    def add(self, name: str, data: bytes | Path = SONG, **kwargs: Any) -> str:
        kwargs.setdefault("content_type", "audio/mpeg")
        return self.base + self.cdn.add(name, data, **kwargs)

    def ranges(self, name: str) -> list[str | None]:
        return [r.range for r in self.cdn.requests if r.name == name]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    cdn = Cdn()
    app = web.Application()
    cdn.install(app)
    runner, base = await _serve(app)
    yield Host(cdn, base)
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path / "tmp"


@pytest.fixture
def make_fetcher(session: aiohttp.ClientSession, temp_dir: Path) -> Callable[..., Fetcher]:
    def make(**kwargs: Any) -> Fetcher:
        options: dict[str, Any] = {
            "temp_dir": temp_dir,
            "max_bytes": 10 * 1024 * 1024,
            "attempts": 3,
            "read_timeout_s": 5.0,
            "backoff_base_s": 0.001,
            "chunk_bytes": 4096,
        }
        options.update(kwargs)
        return Fetcher(session, **options)

    return make


def leftovers(temp_dir: Path) -> list[Path]:
    return sorted(temp_dir.iterdir()) if temp_dir.exists() else []


def assert_same(fetched: Fetched, source: bytes) -> None:
    data = fetched.path.read_bytes()
    assert data == source
    assert fetched.bytes == len(source)
    assert fetched.sha256 == hashlib.sha256(source).hexdigest()


# --- the happy path -------------------------------------------------------------------------


async def test_plain_fetch_gives_a_part_file_with_the_source_hash(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3")

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)
    assert fetched.media == media.MP3
    assert fetched.url == url
    assert fetched.path.parent == temp_dir and fetched.path.name.endswith(".part")
    assert host.cdn.hits["song.mp3"] == 1
    assert "Authorization" not in host.cdn.requests[0].headers


async def test_concurrent_fetches_use_distinct_part_files(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    other = media.sample_mp3(seconds=3, seed=9)
    fetcher = make_fetcher()
    a, b = await asyncio.gather(
        fetcher.fetch([host.add("a.mp3")], MP3), fetcher.fetch([host.add("b.mp3", other)], MP3)
    )
    assert a.path != b.path
    assert_same(a, SONG)
    assert_same(b, other)


async def test_wrong_content_type_is_ignored_for_a_real_mp3(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(content_type="text/plain"))
    fetched = await make_fetcher().fetch([url], MP3)
    assert_same(fetched, SONG)


async def test_chunked_body_without_content_length_is_fetched(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(no_content_length=True))
    assert_same(await make_fetcher().fetch([url], MP3), SONG)


async def test_a_big_file_served_from_disk_is_resumed_after_a_reset(
    host: Host, make_fetcher: Callable[..., Fetcher], tmp_path: Path
) -> None:
    source = tmp_path / "big.mp3"
    size = media.write_sample_mp3(source, 3 * 1024 * 1024, seed=3)
    url = host.add("big.mp3", source, faults=FileFaults(reset_after_bytes=1024 * 1024))

    fetched = await make_fetcher(chunk_bytes=64 * 1024).fetch([url], MP3)

    assert fetched.bytes == size
    assert fetched.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert host.ranges("big.mp3")[1] is not None


# --- a head replaced as the body streams in (Reshape) -------------------------------------


class NewHead:
    """Puts `new` in place of the body's first `size` bytes; remembers what it was shown."""

    def __init__(self, size: int, new: bytes, *, fail: Exception | None = None) -> None:
        self.size, self.new, self.fail = size, new, fail
        self.heads: list[bytes] = []

    def head_size(self, first: bytes) -> int:
        assert len(first) >= min(512, len(SONG))
        return self.size

    def replacement(self, head: bytes) -> bytes:
        self.heads.append(head)
        if self.fail is not None:
            raise self.fail
        return self.new


def assert_reshaped(fetched: Fetched, source: bytes, new: bytes, size: int) -> None:
    data = fetched.path.read_bytes()
    assert data == new + source[size:]
    assert (fetched.bytes, fetched.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert fetched.source_bytes == len(source)
    assert fetched.source_sha256 == hashlib.sha256(source).hexdigest()


@pytest.mark.parametrize("size", [0, 10, 20_000], ids=["none", "short", "longer-than-a-chunk"])
async def test_the_head_a_reshape_replaces_is_written_in_its_place(
    host: Host, make_fetcher: Callable[..., Fetcher], size: int
) -> None:
    url = host.add("song.mp3")
    reshape = NewHead(size, b"NEW-HEAD" * 100)

    fetched = await make_fetcher().fetch([url], MP3, reshape)

    assert_reshaped(fetched, SONG, reshape.new, size)
    assert reshape.heads == [SONG[:size]]


async def test_a_reshaped_body_reset_mid_file_resumes_at_the_bodys_offset(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000))
    reshape = NewHead(1000, b"x" * 3000)  # the file runs 2000 bytes ahead of the body

    fetched = await make_fetcher().fetch([url], MP3, reshape)

    assert_reshaped(fetched, SONG, reshape.new, 1000)
    assert 1000 < _resume_offset(host.ranges("song.mp3")[1]) <= 50_000
    assert len(reshape.heads) == 1  # the head is not replaced twice


async def test_a_reshaped_body_starting_over_is_reshaped_once_more(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000, ignore_range=True))
    reshape = NewHead(1000, b"x" * 3000)

    fetched = await make_fetcher().fetch([url], MP3, reshape)

    assert_reshaped(fetched, SONG, reshape.new, 1000)  # not the new head twice
    assert reshape.heads == [SONG[:1000], SONG[:1000]]


async def test_a_body_shorter_than_its_head_shows_the_reshape_all_of_it(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3")
    reshape = NewHead(len(SONG) + 100, b"whole")

    fetched = await make_fetcher().fetch([url], MP3, reshape)

    assert reshape.heads == [SONG]
    assert fetched.path.read_bytes() == b"whole"


async def test_what_a_reshape_raises_ends_the_fetch_and_leaves_nothing(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3")
    reshape = NewHead(10, b"", fail=TaggingError("song.mp3: its existing ID3 tag is unreadable"))

    with pytest.raises(TaggingError, match="unreadable"):
        await make_fetcher().fetch([url, host.add("other.mp3")], MP3, reshape)

    assert leftovers(temp_dir) == []
    assert host.cdn.hits["other.mp3"] == 0  # not a reason to try another URL


async def test_an_mp3_is_tagged_as_it_downloads_through_a_reset(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000))
    track = Track("aud-1", "A title", "lo-fi", 8.0, "chirp", "", None, url, "", "", "")
    writer = TagWriter(track=track, task_id="t", name="t/aud-1.mp3")

    fetched = await make_fetcher().fetch([url], MP3, writer)

    check_mp3(fetched.path, "t/aud-1.mp3")
    assert ID3(fetched.path)["TIT2"].text == ["A title"]
    assert strip_id3v2(fetched.path.read_bytes()) == strip_id3v2(SONG)
    assert fetched.source_sha256 == hashlib.sha256(SONG).hexdigest()
    assert fetched.sha256 == hashlib.sha256(fetched.path.read_bytes()).hexdigest()


# --- interrupted transfers ------------------------------------------------------------------


def _resume_offset(header: str | None) -> int:
    assert header is not None and header.startswith("bytes=") and header.endswith("-")
    return int(header.removeprefix("bytes=").removesuffix("-"))


async def test_connection_reset_mid_file_is_resumed_with_range(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000))

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)
    first, second = host.ranges("song.mp3")
    assert first is None
    assert 0 < _resume_offset(second) <= 50_000


async def test_server_ignoring_range_restarts_from_zero(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    faults = FileFaults(reset_after_bytes=50_000, ignore_range=True)
    url = host.add("song.mp3", faults=faults)

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)  # not the first 50 kB twice
    assert _resume_offset(host.ranges("song.mp3")[1]) > 0


async def test_a_file_changed_between_attempts_comes_again_whole_not_spliced(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    other = media.sample_mp3(seconds=8, seed=8)  # the CDN replaced the file meanwhile
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000, changed_to=other))

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, other)  # not the first 50 kB of SONG followed by the rest of `other`
    _, second = [r for r in host.cdn.requests if r.name == "song.mp3"]
    assert second.range is not None and "If-Range" in second.headers


async def test_a_resumed_answer_for_a_file_of_another_size_starts_over(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    """A host whose ETag does not change with the file (or that sends none): the size in its
    Content-Range still tells that the bytes in hand are of another file."""
    longer = SONG + media.sample_mp3(seconds=1, seed=9)
    faults = FileFaults(reset_after_bytes=50_000, changed_to=longer, fixed_etag=True)
    url = host.add("song.mp3", faults=faults)

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, longer)
    assert host.ranges("song.mp3")[-1] is None  # from the start, once the size told


async def test_body_shorter_than_content_length_is_resumed(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(truncate_to=30_000, truncate_times=2))

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)
    ranges = host.ranges("song.mp3")
    assert len(ranges) == 3
    # aiohttp drops what it had buffered when it raises the short-body error, so a resume may
    # start a little before the truncation point, never after it and never back at 0.
    first, second = _resume_offset(ranges[1]), _resume_offset(ranges[2])
    assert 0 < first <= 30_000
    assert first < second <= first + 30_000


async def test_read_stall_times_out_and_is_resumed(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(stall_after_bytes=40_000))

    fetched = await make_fetcher(read_timeout_s=0.3).fetch([url], MP3)

    assert_same(fetched, SONG)
    assert _resume_offset(host.ranges("song.mp3")[1]) == 40_000


async def test_interruptions_beyond_the_attempts_fail_transiently_and_leave_nothing(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=10_000, reset_times=None))

    with pytest.raises(FetchError) as error:
        await make_fetcher(attempts=2).fetch([url], MP3)

    assert error.value.permanent is False
    assert host.cdn.hits["song.mp3"] == 2
    assert leftovers(temp_dir) == []


@pytest.mark.parametrize("second", ["wrong_start", "416"])
async def test_bad_range_answer_starts_over_without_range(
    make_fetcher: Callable[..., Fetcher], second: str
) -> None:
    """A 206 that ends before its Content-Range total is incomplete; a resume answered with
    another start or 416 is started over."""
    seen: list[str | None] = []
    size = len(SONG)

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Range"))
        if len(seen) == 1:  # a partial answer: the first 100 bytes of `size`
            return web.Response(
                status=206, body=SONG[:100], headers={"Content-Range": f"bytes 0-99/{size}"}
            )
        if len(seen) == 2 and second == "wrong_start":
            return web.Response(
                status=206, body=SONG[50:], headers={"Content-Range": f"bytes 50-{size - 1}/{size}"}
            )
        if len(seen) == 2:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        return web.Response(body=SONG)

    app = web.Application()
    app.router.add_get("/f", handler)
    runner, base = await _serve(app)
    try:
        fetched = await make_fetcher().fetch([base + "/f"], MP3)
    finally:
        await runner.cleanup()

    assert_same(fetched, SONG)
    assert seen == [None, "bytes=100-", None]


# --- not the file ---------------------------------------------------------------------------


async def test_html_page_instead_of_mp3_fails_after_retries_and_leaves_nothing(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3", faults=FileFaults(html=True))

    with pytest.raises(FetchError, match="HTML page, not mp3") as error:
        await make_fetcher(attempts=3).fetch([url], MP3)

    assert error.value.permanent is False
    assert host.cdn.hits["song.mp3"] == 3
    assert leftovers(temp_dir) == []


async def test_html_page_under_load_is_retried(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(html=True, html_times=2))
    assert_same(await make_fetcher(attempts=3).fetch([url], MP3), SONG)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (json.dumps({"code": 500, "msg": "error"}).encode(), "unknown content"),
        (media.sample_png(), "got png, not mp3"),
        (b"", "empty body"),
    ],
)
async def test_a_body_that_is_not_accepted_media_is_refused(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path, body: bytes, said: str
) -> None:
    url = host.add("song.mp3", body)

    with pytest.raises(FetchError, match=said) as error:
        await make_fetcher().fetch([url], MP3)

    assert error.value.permanent is True
    assert host.cdn.hits["song.mp3"] == 1
    assert leftovers(temp_dir) == []


# --- dead URLs, transient statuses ----------------------------------------------------------


async def test_expired_url_falls_back_to_the_next_one(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    dead = host.add("expired.mp3", faults=FileFaults(status=404))
    fallback = host.add("source.mp3")

    fetched = await make_fetcher().fetch([dead, fallback], MP3)

    assert_same(fetched, SONG)
    assert fetched.url == fallback
    assert host.cdn.hits["expired.mp3"] == 1  # a dead URL is not retried


async def test_fallback_after_a_partial_transfer_starts_from_zero(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    faults = FileFaults(reset_after_bytes=20_000, reset_times=None)
    flaky = host.add("flaky.mp3", faults=faults)
    fallback = host.add("source.mp3")

    fetched = await make_fetcher(attempts=2).fetch([flaky, fallback], MP3)

    assert_same(fetched, SONG)
    assert host.ranges("source.mp3") == [None]


@pytest.mark.parametrize("statuses", [(404, 403), (410, 401)])
async def test_all_urls_dead_is_a_permanent_error(
    host: Host,
    make_fetcher: Callable[..., Fetcher],
    temp_dir: Path,
    statuses: tuple[int, int],
) -> None:
    urls = [host.add(f"{s}.mp3", faults=FileFaults(status=s)) for s in statuses]

    with pytest.raises(FetchError, match=rf"expired or refused \({statuses[0]}\)") as error:
        await make_fetcher().fetch(urls, MP3)

    assert error.value.permanent is True
    assert leftovers(temp_dir) == []


async def test_server_errors_are_retried_until_the_file_comes(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(status=503, status_times=2))
    assert_same(await make_fetcher(attempts=3).fetch([url], MP3), SONG)
    assert host.cdn.hits["song.mp3"] == 3


async def test_persistent_server_errors_are_a_transient_failure(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3", faults=FileFaults(status=429))

    with pytest.raises(FetchError, match="HTTP 429") as error:
        await make_fetcher(attempts=3).fetch([url], MP3)

    assert error.value.permanent is False
    assert host.cdn.hits["song.mp3"] == 3
    assert leftovers(temp_dir) == []


async def test_retry_after_is_honoured(host: Host, make_fetcher: Callable[..., Fetcher]) -> None:
    faults = FileFaults(status=503, status_times=1, retry_after="0.4")
    url = host.add("song.mp3", faults=faults)

    started = time.monotonic()
    await make_fetcher().fetch([url], MP3)

    assert time.monotonic() - started >= 0.4


# --- limits and refusals --------------------------------------------------------------------


async def test_declared_size_over_the_cap_is_refused_at_once(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    # The body never comes: only the declared Content-Length can be the reason to stop.
    url = host.add("song.mp3", faults=FileFaults(stall_after_bytes=0, stall_times=None))

    with pytest.raises(FetchError, match=f"file is {len(SONG)} bytes, over the limit") as error:
        fetcher = make_fetcher(max_bytes=len(SONG) - 1, read_timeout_s=30)
        await asyncio.wait_for(fetcher.fetch([url], MP3), 5)

    assert error.value.permanent is True
    assert host.cdn.hits["song.mp3"] == 1
    assert leftovers(temp_dir) == []


async def test_streamed_body_growing_over_the_cap_is_aborted(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3", faults=FileFaults(no_content_length=True))

    with pytest.raises(FetchError, match="grew over the limit") as error:
        await make_fetcher(max_bytes=len(SONG) - 1).fetch([url], MP3)

    assert error.value.permanent is True
    assert host.cdn.hits["song.mp3"] == 1
    assert leftovers(temp_dir) == []


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/song.mp3", "file:///etc/passwd", "song.mp3"])
async def test_non_http_urls_are_refused_without_a_request(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path, bad: str
) -> None:
    with pytest.raises(FetchError, match="not an http") as error:
        await make_fetcher().fetch([bad], MP3)

    assert error.value.permanent is True
    assert sum(host.cdn.hits.values()) == 0
    assert leftovers(temp_dir) == []


async def test_a_non_http_url_is_skipped_for_the_next_one(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    good = host.add("song.mp3")
    fetched = await make_fetcher().fetch(["file:///etc/passwd", good], MP3)
    assert fetched.url == good


async def test_a_session_carrying_credentials_is_refused(temp_dir: Path) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer secret"}) as s:
        with pytest.raises(ValueError, match="credentials"):
            Fetcher(s, temp_dir=temp_dir, max_bytes=1000)


# --- cancellation ---------------------------------------------------------------------------


async def test_cancellation_removes_the_part_file(
    host: Host, make_fetcher: Callable[..., Fetcher], temp_dir: Path
) -> None:
    url = host.add("song.mp3", faults=FileFaults(stall_after_bytes=40_000, stall_times=None))
    task = asyncio.create_task(make_fetcher(read_timeout_s=30).fetch([url], MP3))

    for _ in range(200):  # until bytes are on disk
        parts = leftovers(temp_dir)
        if parts and parts[0].stat().st_size > 0:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the fetch never wrote to its part file")
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(temp_dir) == []
