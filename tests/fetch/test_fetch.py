"""Fetcher against the stand-in CDN over real loopback HTTP, with injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from fetching import MP3, SONG, Host, assert_same, leftovers

from archiver.errors import FetchError
from archiver.fetch.download import Fetcher
from archiver.kinds import media
from archiver.sandbox.cdn import FileFaults

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
