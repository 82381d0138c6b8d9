"""ID3 frames for a downloaded MP3, written as it streams in, without ever touching its audio.

The stored file is

    new ID3v2 tag  +  every byte of the download after its original ID3v2 tag

and it is written once. `TagWriter` is the fetcher's `Reshape` for an MP3: the download's first
bytes, its own ID3v2 tag, are held back as they arrive, merged with the SPEC's frames and
replaced by the tag mutagen renders into memory; the audio after them goes to disk as it comes.
(mutagen's own `save()` edits a file in place and, for a larger tag, moves the whole rest of the
file: neither flat in memory for a 1 GB file nor a second pass this archiver wants to pay.)
Stripping the ID3v2 tag of the result gives back the downloaded audio byte for byte (an ID3v1 or
APE trailer is part of that audio tail and is kept).

The magic bytes said MP3 before anything was written; `check_mp3` then has mutagen read the
frames after the tag of the finished file, so that noise behind an MPEG header is not a song.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import BinaryIO, Final

from mutagen import MutagenError
from mutagen.id3 import (
    APIC,
    ID3,
    TALB,
    TCON,
    TDRC,
    TIT2,
    TLEN,
    TPE1,
    TXXX,
    USLT,
    Frame,
    ID3NoHeaderError,
    PictureType,
)
from mutagen.mp3 import MPEGInfo

from archiver.errors import TaggingError
from archiver.kinds import media
from archiver.kinds.records import Track

PADDING_BYTES: Final = 1024
# A download's own tag is held in memory until replaced, as mutagen would load it anyway.
# Suno's are a few hundred bytes; this bounds a hostile one.
MAX_TAG_BYTES: Final = 64 * 1024 * 1024
ID3_HEADER_BYTES: Final = 10
_AUDIO_START_SCAN: Final = 64 * 1024  # zero padding tolerated between the tag and the first frame
_UTF8: Final = 3  # mutagen turns it into UTF-16 for ID3v2.3, which has no UTF-8
_YEAR = re.compile(r"\s*(\d{4})(?!\d)")


class TagWriter:
    """The new tag of one track's MP3, put in place of the download's own as it streams in
    (see archiver.fetch.download.Reshape). Errors call the file `name`: its archive key."""

    def __init__(
        self,
        *,
        track: Track,
        task_id: str,
        name: str,
        cover: Path | None = None,
        cover_mime: str | None = None,
        id3_version: int = 3,
        album: str = "",
        artist: str = "",
    ) -> None:
        if id3_version not in (3, 4):
            raise ValueError(f"id3_version must be 3 or 4, not {id3_version!r}")
        self._track = track
        self._task_id = task_id
        self._name = name
        self._picture = _read_cover(cover, cover_mime, name) if cover is not None else None
        self._version = id3_version
        self._names = (album, artist)

    def head_size(self, first: bytes) -> int:
        """How many of the download's leading bytes its own ID3v2 tag takes (0: none)."""
        size = id3v2_size(first)
        if size > MAX_TAG_BYTES:
            raise TaggingError(f"{self._name}: its ID3v2 tag claims {size} bytes")
        return size

    def replacement(self, head: bytes) -> bytes:
        """The new tag, to be written instead of `head` (the download's own tag)."""
        if len(head) < id3v2_size(head):
            raise TaggingError(f"{self._name}: its ID3v2 tag claims more bytes than the file has")
        tags = _existing_tags(head, self._name)
        _apply(
            tags,
            track=self._track,
            task_id=self._task_id,
            picture=self._picture,
            id3_version=self._version,
            album=self._names[0],
            artist=self._names[1],
        )
        return _render(tags, self._version, self._name)


def check_mp3(path: Path, name: str) -> None:
    """Raise TaggingError unless mutagen reads MPEG audio frames after the file's ID3v2 tag.

    Blocking: run it in a thread."""
    with path.open("rb") as src:
        audio_start = id3v2_size(src.read(ID3_HEADER_BYTES))
        _check_mpeg(src, audio_start, name)


def frames_for(track: Track, task_id: str, *, album: str = "", artist: str = "") -> list[Frame]:
    """The SPEC's frames for a track (ID3v2.4 flavour: the year as TDRC), and the album and
    artist (`[tagging] album`/`artist`, filled in); empty values skipped."""
    frames: list[Frame] = []
    if _filled(track.title):
        frames.append(TIT2(encoding=_UTF8, text=[track.title]))
    if _filled(album):
        frames.append(TALB(encoding=_UTF8, text=[album]))
    if _filled(artist):
        frames.append(TPE1(encoding=_UTF8, text=[artist]))
    if _filled(track.tags):
        frames.append(TCON(encoding=_UTF8, text=[track.tags]))
    if track.duration is not None and track.duration > 0:
        frames.append(TLEN(encoding=_UTF8, text=[str(round(track.duration * 1000))]))
    if _filled(track.prompt):
        frames.append(USLT(encoding=_UTF8, lang="eng", desc="", text=track.prompt))
    for desc, value in (
        ("SUNO_AUDIO_ID", track.audio_id),
        ("SUNO_TASK_ID", task_id),
        ("SUNO_MODEL", track.model_name),
    ):
        if _filled(value):
            frames.append(TXXX(encoding=_UTF8, desc=desc, text=[value]))
    year = _year(track.created_at)
    if year is not None:
        frames.append(TDRC(encoding=_UTF8, text=[year]))
    return frames


# --- the tag ----------------------------------------------------------------------------------


def _apply(
    tags: ID3,
    *,
    track: Track,
    task_id: str,
    picture: APIC | None,
    id3_version: int,
    album: str,
    artist: str,
) -> None:
    for frame in frames_for(track, task_id, album=album, artist=artist):
        if isinstance(frame, TDRC):
            # Our year replaces whatever date the download had, in either version's frames.
            for key in ("TDRC", "TYER", "TDAT", "TIME", "TRDA"):
                tags.delall(key)
        tags.add(frame)  # replaces a frame with the same key (e.g. TXXX:SUNO_MODEL, USLT::eng)
    if picture is not None:
        others = [f for f in tags.getall("APIC") if f.type != PictureType.COVER_FRONT]
        tags.setall("APIC", [*others, picture])
    if id3_version == 3:
        tags.update_to_v23()  # TDRC -> TYER, and v2.4-only frames converted or dropped


def _render(tags: ID3, id3_version: int, name: str) -> bytes:
    buffer = io.BytesIO()
    try:
        tags.save(buffer, v1=0, v2_version=id3_version, padding=_padding)
    except (MutagenError, ValueError, TypeError) as exc:
        raise TaggingError(f"{name}: cannot build its ID3 tag: {exc}") from exc
    header = buffer.getvalue()
    if not header.startswith(b"ID3"):  # pragma: no cover - mutagen always writes a header
        raise TaggingError(f"{name}: mutagen rendered no ID3 tag")
    return header


def _padding(_info: object) -> int:
    return PADDING_BYTES


def _existing_tags(head: bytes, name: str) -> ID3:
    if not head:
        return ID3()
    try:
        # load_v1=False: an ID3v1 trailer stays where it is (in the audio tail), not merged in.
        return ID3(io.BytesIO(head), load_v1=False)
    except ID3NoHeaderError:
        return ID3()
    except (MutagenError, ValueError) as exc:
        raise TaggingError(f"{name}: its existing ID3 tag is unreadable: {exc}") from exc


def _read_cover(cover: Path, mime: str | None, name: str) -> APIC:
    try:
        data = cover.read_bytes()
    except OSError as exc:
        raise TaggingError(f"{name}: cannot read its cover: {exc.strerror or exc}") from exc
    kind = media.sniff(data[: media.SNIFF_BYTES])
    if mime is None:
        if kind not in (media.JPEG, media.PNG):
            raise TaggingError(f"{name}: its cover is neither JPEG nor PNG")
        mime = media.CONTENT_TYPES[kind]
    return APIC(encoding=_UTF8, mime=mime, type=PictureType.COVER_FRONT, desc="", data=data)


def _filled(value: str | None) -> bool:
    return bool(value and value.strip())


def _year(created_at: str | None) -> str | None:
    match = _YEAR.match(created_at or "")
    return match.group(1) if match else None


# --- the file ---------------------------------------------------------------------------------


def id3v2_size(first: bytes) -> int:
    """How many bytes the leading ID3v2 tag takes, by its 10-byte header (0 when none)."""
    head = first[:ID3_HEADER_BYTES]
    if len(head) < ID3_HEADER_BYTES or not head.startswith(b"ID3") or head[3] not in (2, 3, 4):
        return 0
    if head[4] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return 0  # not a valid header; mutagen will not read it as one either
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]  # excludes the header
    footer = 10 if head[3] == 4 and head[5] & 0x10 else 0  # extended header is inside `size`
    return ID3_HEADER_BYTES + size + footer


def _check_mpeg(src: BinaryIO, audio_start: int, name: str) -> None:
    """Refuse anything that is not MPEG audio: HTML, JSON, an image renamed .mp3, noise."""
    src.seek(audio_start)
    head = src.read(_AUDIO_START_SCAN).lstrip(b"\x00")
    if media.sniff(head[: media.SNIFF_BYTES]) != media.MP3:
        raise TaggingError(f"{name} is not an MP3: no MPEG audio frame after its tag")
    try:
        MPEGInfo(src, audio_start)  # wants several consecutive valid frames
    except (MutagenError, ValueError, OSError) as exc:
        raise TaggingError(f"{name} is not an MP3 mutagen can read: {exc}") from exc
