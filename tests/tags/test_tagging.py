"""TagWriter and check_mp3: the SPEC's frames, existing tags kept, audio bytes untouched.

`tag` below puts a download through a TagWriter as the fetcher does (tests/fetch/ checks the
fetcher's side: streaming, resuming, hashes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from archive_checks import strip_id3v2
from mutagen.id3 import ID3, TALB, TCON, TIT2, TXXX
from mutagen.mp3 import MP3

from archiver.errors import TaggingError
from archiver.kinds import media
from archiver.kinds.records import Track
from archiver.tags.tagging import PADDING_BYTES, TagWriter, check_mp3, frames_for

TRACK = Track(
    audio_id="aud-123",
    title="Neon Harbour — ünïcode 東京",
    tags="synthwave, dreamy",
    duration=198.44,
    model_name="chirp-v4",
    prompt="[Verse]\nLights on the water\n[Chorus]\nNeon harbour",
    created_at="2025-03-14T09:26:53Z",
    audio_url="https://cdn.example/a.mp3",
    image_url="https://cdn.example/a.jpg",
    source_audio_url="",
    source_image_url="",
)


def synchsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "download.mp3"
    path.write_bytes(media.sample_mp3(seconds=3.0, seed=7))
    return path


def tag(source: Path, tmp_path: Path, **kwargs) -> Path:
    """`source` as the fetcher stores it with a TagWriter: its own tag replaced, then checked."""
    kwargs.setdefault("track", TRACK)
    kwargs.setdefault("task_id", "task-9")
    kwargs.setdefault("name", "task-9/aud-123.mp3")
    writer = TagWriter(**kwargs)
    data = source.read_bytes()
    size = writer.head_size(data[:512])
    dest = tmp_path / "tagged.mp3"
    dest.write_bytes(writer.replacement(data[:size]) + data[size:])
    check_mp3(dest, kwargs["name"])
    return dest


@pytest.mark.parametrize("version", [3, 4])
def test_every_spec_frame_reads_back_with_mutagen(source: Path, tmp_path: Path, version: int):
    dest = tag(source, tmp_path, id3_version=version)
    tags = ID3(dest)
    assert tags.version[:2] == (2, version)
    assert tags["TIT2"].text == [TRACK.title]
    assert tags["TCON"].text == [TRACK.tags]
    assert tags["TLEN"].text == ["198440"]
    lyrics = tags.getall("USLT")
    assert len(lyrics) == 1
    assert (lyrics[0].lang, lyrics[0].desc, lyrics[0].text) == ("eng", "", TRACK.prompt)
    assert tags["TXXX:SUNO_AUDIO_ID"].text == ["aud-123"]
    assert tags["TXXX:SUNO_TASK_ID"].text == ["task-9"]
    assert tags["TXXX:SUNO_MODEL"].text == ["chirp-v4"]
    if version == 3:
        raw = ID3(dest, translate=False)  # mutagen turns TYER into TDRC on load unless told
        assert raw["TYER"].text == ["2025"]
        assert "TDRC" not in raw
    else:
        assert "TYER" not in ID3(dest, translate=False)
    assert str(tags["TDRC"].text[0]) == "2025"
    assert tags.getall("APIC") == []  # no cover given


def test_frames_already_in_the_download_are_kept(source: Path, tmp_path: Path):
    dest = tag(source, tmp_path)
    assert ID3(dest)["TSSE"].text == ["suno-archiver sandbox 7"]


def test_frames_of_the_spec_replace_existing_ones_and_others_stay(source: Path, tmp_path: Path):
    pre = ID3(source)
    pre.add(TIT2(encoding=3, text=["old title"]))
    pre.add(TALB(encoding=3, text=["an album"]))
    pre.add(TXXX(encoding=3, desc="SUNO_MODEL", text=["old-model"]))
    pre.add(TCON(encoding=3, text=["Rock"]))
    pre.update_to_v23()
    pre.save(source, v2_version=3)
    dest = tag(source, tmp_path)
    tags = ID3(dest)
    assert tags["TIT2"].text == [TRACK.title]
    assert tags["TXXX:SUNO_MODEL"].text == ["chirp-v4"]
    assert tags["TCON"].text == [TRACK.tags]
    assert tags["TALB"].text == ["an album"]
    assert tags["TSSE"].text == ["suno-archiver sandbox 7"]


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(
    ("image", "mime"),
    [(media.sample_jpeg(3), "image/jpeg"), (media.sample_png(seed=3), "image/png")],
)
def test_cover_becomes_the_front_cover(
    source: Path, tmp_path: Path, version: int, image: bytes, mime: str
):
    cover = tmp_path / "cover.img"
    cover.write_bytes(image)
    dest = tag(source, tmp_path, cover=cover, id3_version=version)  # mime sniffed
    pictures = ID3(dest).getall("APIC")
    assert len(pictures) == 1
    assert (pictures[0].type, pictures[0].mime, pictures[0].desc) == (3, mime, "")
    assert pictures[0].data == image


def test_given_cover_mime_is_used(source: Path, tmp_path: Path):
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(media.sample_jpeg())
    dest = tag(source, tmp_path, cover=cover, cover_mime="image/jpeg")
    assert ID3(dest).getall("APIC")[0].mime == "image/jpeg"


def test_cover_that_is_not_an_image_is_refused(source: Path, tmp_path: Path):
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(b"<html>expired</html>")
    refused = r"^task-9/aud-123\.mp3: its cover is neither JPEG nor PNG"
    with pytest.raises(TaggingError, match=refused):
        tag(source, tmp_path, cover=cover)


@pytest.mark.parametrize("version", [3, 4])
def test_audio_after_the_tag_is_byte_identical(source: Path, tmp_path: Path, version: int):
    cover = tmp_path / "c.png"
    cover.write_bytes(media.sample_png())
    dest = tag(source, tmp_path, cover=cover, id3_version=version)
    assert strip_id3v2(dest.read_bytes()) == strip_id3v2(source.read_bytes())
    assert MP3(dest).info.length == pytest.approx(MP3(source).info.length)


def test_padding_is_modest(source: Path, tmp_path: Path):
    dest = tag(source, tmp_path)
    data = dest.read_bytes()
    tag_bytes = len(data) - len(strip_id3v2(data))
    assert data[tag_bytes - PADDING_BYTES : tag_bytes] == b"\x00" * PADDING_BYTES
    assert tag_bytes < PADDING_BYTES + 2048


def test_source_without_any_tag(tmp_path: Path):
    audio = strip_id3v2(media.sample_mp3(seed=2))
    source = tmp_path / "bare.mp3"
    source.write_bytes(audio)
    dest = tag(source, tmp_path)
    assert ID3(dest)["TIT2"].text == [TRACK.title]
    assert strip_id3v2(dest.read_bytes()) == audio


def test_id3v1_trailer_is_kept_as_is(tmp_path: Path):
    v1 = b"TAG" + b"v1 title".ljust(30, b"\0") + b"\0" * 60 + b"2024" + b"\0" * 30 + b"\xff"
    assert len(v1) == 128
    source = tmp_path / "v1.mp3"
    source.write_bytes(media.sample_mp3(seed=4) + v1)
    dest = tag(source, tmp_path)
    data = dest.read_bytes()
    assert data.endswith(v1)
    assert strip_id3v2(data) == strip_id3v2(source.read_bytes())
    tags = ID3(dest, load_v1=False)
    assert tags["TIT2"].text == [TRACK.title]


def test_v24_source_with_footer_and_extended_header(tmp_path: Path):
    audio = strip_id3v2(media.sample_mp3(seed=5))
    text = b"\x03old-encoder"
    frame = b"TSSE" + synchsafe(len(text)) + b"\x00\x00" + text
    ext = synchsafe(6) + b"\x01\x00"  # v2.4 extended header: size 6 (itself), no flags
    body = ext + frame
    header = b"ID3\x04\x00" + bytes([0x40 | 0x10]) + synchsafe(len(body))
    footer = b"3DI\x04\x00" + bytes([0x40 | 0x10]) + synchsafe(len(body))
    source = tmp_path / "v24.mp3"
    source.write_bytes(header + body + footer + audio)
    dest = tag(source, tmp_path)
    data = dest.read_bytes()
    assert strip_id3v2(data) == audio
    tags = ID3(dest)
    assert tags["TSSE"].text == ["old-encoder"]
    assert tags["TIT2"].text == [TRACK.title]


def test_empty_values_are_skipped(source: Path, tmp_path: Path):
    bare = replace(
        TRACK, title="", tags="  ", duration=None, prompt="", model_name="", created_at=None
    )
    dest = tag(source, tmp_path, track=bare)
    tags = ID3(dest)
    for key in ("TIT2", "TCON", "TLEN", "USLT::eng", "TXXX:SUNO_MODEL", "TDRC", "TYER"):
        assert key not in tags
    assert tags["TXXX:SUNO_AUDIO_ID"].text == ["aud-123"]
    assert [f.FrameID for f in frames_for(bare, "")] == ["TXXX"]


@pytest.mark.parametrize(
    "junk",
    [
        b"<!DOCTYPE html><html><body>Access denied</body></html>" * 50,
        media.sample_png(),
        bytes(range(256)) * 400,
        b"",
        b"ID3\x03\x00\x00\x00\x00\x00\x05TIT2\x00",  # a tag and nothing after it
    ],
    ids=["html", "png", "noise", "empty", "tag-only"],
)
def test_what_is_not_an_mp3_after_its_tag_fails_the_check(tmp_path: Path, junk: bytes):
    source = tmp_path / "download.mp3"
    source.write_bytes(junk)
    with pytest.raises(TaggingError, match=r"^task-9/aud-123\.mp3 is not an MP3"):
        tag(source, tmp_path)


def test_a_tag_claiming_more_than_the_file_has_is_refused(tmp_path: Path):
    source = tmp_path / "download.mp3"
    source.write_bytes(b"ID3\x03\x00\x00" + synchsafe(10_000) + b"TIT2")
    with pytest.raises(TaggingError, match="claims more bytes than the file has"):
        tag(source, tmp_path)


def test_a_huge_tag_is_refused_before_it_is_held_in_memory():
    writer = TagWriter(track=TRACK, task_id="t", name="t/a.mp3")
    header = b"ID3\x03\x00\x00" + synchsafe((1 << 28) - 1)  # 256 MiB, the most ID3 can say
    with pytest.raises(TaggingError, match="claims"):
        writer.head_size(header)


def test_bad_version_is_refused(source: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="id3_version"):
        tag(source, tmp_path, id3_version=2)
