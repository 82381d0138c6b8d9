"""ID3 frames onto a downloaded MP3, without ever touching its audio.

mutagen's own `save()` edits a file in place and, when the new tag is larger than the old one,
moves (or mmaps) the whole rest of the file. For a 1 GB upload that is neither flat in memory nor
safe for the only copy of a song. So mutagen only *renders* the tag here, into a small in-memory
buffer, and the stored file is written as

    new ID3v2 tag  +  every byte of the download after its original ID3v2 tag

streamed in chunks and hashed while written (not fsynced: storage makes durable what it keeps,
or uploads it). Stripping the ID3v2 tag of the result gives back the
downloaded audio byte for byte (an ID3v1 or APE trailer is part of that audio tail and is kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mutagen import MutagenError
from mutagen.id3 import (
    APIC,
    ID3,
    TCON,
    TDRC,
    TIT2,
    TLEN,
    TXXX,
    USLT,
    Frame,
    ID3NoHeaderError,
    PictureType,
)
from mutagen.mp3 import MPEGInfo

from archiver import media
from archiver.errors import TaggingError
from archiver.records import Track

CHUNK_BYTES: Final = 1024 * 1024
PADDING_BYTES: Final = 1024
_AUDIO_START_SCAN: Final = 64 * 1024  # zero padding tolerated between the tag and the first frame
_UTF8: Final = 3  # mutagen turns it into UTF-16 for ID3v2.3, which has no UTF-8
_YEAR = re.compile(r"\s*(\d{4})(?!\d)")


@dataclass(frozen=True)
class Tagged:
    path: Path  # dest
    bytes: int
    sha256: str  # of the tagged file, hashed while writing


def tag_mp3(
    source: Path,
    dest: Path,
    *,
    track: Track,
    task_id: str,
    cover: Path | None = None,
    cover_mime: str | None = None,
    id3_version: int = 3,
    name: str | None = None,
) -> Tagged:
    """Write `dest` = `source` with the SPEC's frames; `source` is only read.

    Blocking (the engine runs it in a thread). Raises TaggingError when `source` is not an MP3
    mutagen can read, its existing tag is unreadable or `cover` is not an image; OSError when a
    disk read or write fails. On any failure `dest` is left absent. Errors call the file
    `name` (say, its archive key; a temp file's name means nothing to a user), by default its
    file name.
    """
    if id3_version not in (3, 4):
        raise ValueError(f"id3_version must be 3 or 4, not {id3_version!r}")
    name = name or source.name
    picture = _read_cover(cover, cover_mime) if cover is not None else None
    _refuse_same_file(source, dest)
    with source.open("rb") as src:
        audio_start = _id3v2_end(src)
        size = os.fstat(src.fileno()).st_size
        if audio_start > size:
            raise TaggingError(f"{name}: its ID3v2 tag claims more bytes than the file has")
        _check_mpeg(src, audio_start, name)
        tags = _existing_tags(src, name)
        _apply(tags, track=track, task_id=task_id, picture=picture, id3_version=id3_version)
        header = _render(tags, id3_version, name)
        return _write(src, dest, header=header, audio_start=audio_start, size=size)


def frames_for(track: Track, task_id: str) -> list[Frame]:
    """The SPEC's frames for a track (ID3v2.4 flavour: the year as TDRC); empty values skipped."""
    frames: list[Frame] = []
    if _filled(track.title):
        frames.append(TIT2(encoding=_UTF8, text=[track.title]))
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
    tags: ID3, *, track: Track, task_id: str, picture: APIC | None, id3_version: int
) -> None:
    for frame in frames_for(track, task_id):
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


def _existing_tags(src: BinaryIO, name: str) -> ID3:
    src.seek(0)
    try:
        # load_v1=False: an ID3v1 trailer stays where it is (in the audio tail), not merged in.
        return ID3(src, load_v1=False)
    except ID3NoHeaderError:
        return ID3()
    except (MutagenError, ValueError) as exc:
        raise TaggingError(f"{name}: its existing ID3 tag is unreadable: {exc}") from exc


def _read_cover(cover: Path, mime: str | None) -> APIC:
    try:
        data = cover.read_bytes()
    except OSError as exc:
        raise TaggingError(f"cannot read cover {cover.name}: {exc.strerror or exc}") from exc
    kind = media.sniff(data[: media.SNIFF_BYTES])
    if mime is None:
        if kind not in (media.JPEG, media.PNG):
            raise TaggingError(f"cover {cover.name} is neither JPEG nor PNG")
        mime = media.CONTENT_TYPES[kind]
    return APIC(encoding=_UTF8, mime=mime, type=PictureType.COVER_FRONT, desc="", data=data)


def _filled(value: str | None) -> bool:
    return bool(value and value.strip())


def _year(created_at: str | None) -> str | None:
    match = _YEAR.match(created_at or "")
    return match.group(1) if match else None


# --- the file ---------------------------------------------------------------------------------


def _id3v2_end(src: BinaryIO) -> int:
    """Offset of the first byte after the file's leading ID3v2 tag (0 when there is none)."""
    src.seek(0)
    head = src.read(10)
    if len(head) < 10 or not head.startswith(b"ID3") or head[3] not in (2, 3, 4):
        return 0
    if head[4] == 0xFF or any(b & 0x80 for b in head[6:10]):
        return 0  # not a valid header; mutagen will not read it as one either
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]  # excludes the header
    footer = 10 if head[3] == 4 and head[5] & 0x10 else 0  # extended header is inside `size`
    return 10 + size + footer


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


def _write(src: BinaryIO, dest: Path, *, header: bytes, audio_start: int, size: int) -> Tagged:
    digest = hashlib.sha256()
    expected = len(header) + size - audio_start
    written = 0
    created = False
    try:
        with dest.open("wb") as out:
            created = True
            out.write(header)
            digest.update(header)
            written = len(header)
            src.seek(audio_start)
            written += _copy(src, out, digest.update)
        if written != expected:
            raise TaggingError(
                f"{dest.name}: wrote {written} bytes, expected {expected} (source changed?)"
            )
    except BaseException:
        # OSError (disk full…) propagates as is: it is the disk's fault, not the file's.
        if created:
            with contextlib.suppress(OSError):
                dest.unlink()
        raise
    return Tagged(path=dest, bytes=written, sha256=digest.hexdigest())


def _copy(src: BinaryIO, out: BinaryIO, update: Callable[[memoryview], None]) -> int:
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    total = 0
    while n := src.readinto(buffer):
        chunk = view[:n]
        out.write(chunk)
        update(chunk)
        total += n
    return total


def _refuse_same_file(source: Path, dest: Path) -> None:
    # Opening dest for writing would truncate the only copy of the download.
    try:
        same = dest.exists() and os.path.samefile(source, dest)
    except OSError:
        same = False
    if same or source.resolve() == dest.resolve():
        raise TaggingError(f"refusing to tag {source.name} onto itself: dest must differ")
