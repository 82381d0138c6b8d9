"""Fetcher against the stand-in CDN over real loopback HTTP: a head replaced as the body streams
in (a Reshape, as tagging does), written in its place whatever the transfer does."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from archive_checks import strip_id3v2
from fetching import MP3, SONG, Host, leftovers, resume_offset
from mutagen.id3 import ID3

from archiver.errors import TaggingError
from archiver.fetch.download import Fetched, Fetcher
from archiver.kinds.records import Track
from archiver.sandbox.cdn import FileFaults
from archiver.tags.tagging import TagWriter, check_mp3

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
    assert 1000 < resume_offset(host.ranges("song.mp3")[1]) <= 50_000
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
