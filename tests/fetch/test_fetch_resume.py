"""Fetcher against the stand-in CDN over real loopback HTTP: interrupted transfers resumed with
Range, or started over when the server or the file says so, and given up after the attempts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from fetching import MP3, SONG, Host, assert_same, leftovers, resume_offset, serve

from archiver.errors import FetchError
from archiver.fetch.download import Fetcher
from archiver.kinds import media
from archiver.sandbox.cdn import FileFaults

# --- interrupted transfers ------------------------------------------------------------------


async def test_connection_reset_mid_file_is_resumed_with_range(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(reset_after_bytes=50_000))

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)
    first, second = host.ranges("song.mp3")
    assert first is None
    assert 0 < resume_offset(second) <= 50_000


async def test_server_ignoring_range_restarts_from_zero(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    faults = FileFaults(reset_after_bytes=50_000, ignore_range=True)
    url = host.add("song.mp3", faults=faults)

    fetched = await make_fetcher().fetch([url], MP3)

    assert_same(fetched, SONG)  # not the first 50 kB twice
    assert resume_offset(host.ranges("song.mp3")[1]) > 0


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
    first, second = resume_offset(ranges[1]), resume_offset(ranges[2])
    assert 0 < first <= 30_000
    assert first < second <= first + 30_000


async def test_read_stall_times_out_and_is_resumed(
    host: Host, make_fetcher: Callable[..., Fetcher]
) -> None:
    url = host.add("song.mp3", faults=FileFaults(stall_after_bytes=40_000))

    fetched = await make_fetcher(read_timeout_s=0.3).fetch([url], MP3)

    assert_same(fetched, SONG)
    assert resume_offset(host.ranges("song.mp3")[1]) == 40_000


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
    runner, base = await serve(app)
    try:
        fetched = await make_fetcher().fetch([base + "/f"], MP3)
    finally:
        await runner.cleanup()

    assert_same(fetched, SONG)
    assert seen == [None, "bytes=100-", None]
