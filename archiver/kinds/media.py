"""Media types by their magic bytes, and small valid sample files for the stand-in API.

The archiver never trusts `Content-Type`: what a body *is* comes from its first bytes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Final

MP3: Final = "mp3"
PNG: Final = "png"
JPEG: Final = "jpeg"
WAV: Final = "wav"
MP4: Final = "mp4"
# Never sniffed: what the archiver writes itself from a record's inline data.
JSON: Final = "json"
TEXT: Final = "text"
LRC: Final = "lrc"

CONTENT_TYPES: Final = {
    MP3: "audio/mpeg",
    PNG: "image/png",
    JPEG: "image/jpeg",
    WAV: "audio/wav",
    MP4: "video/mp4",
    JSON: "application/json",
    TEXT: "text/plain; charset=utf-8",
    LRC: "text/plain; charset=utf-8",
}
EXTENSIONS: Final = {
    MP3: "mp3", PNG: "png", JPEG: "jpg", WAV: "wav", MP4: "mp4", JSON: "json", TEXT: "txt",
    LRC: "lrc",
}  # fmt: skip
SNIFF_BYTES: Final = 16  # enough of a body's start to tell what it is


def sniff(head: bytes) -> str | None:
    """The media type of a body from its first bytes, or None (HTML, JSON, anything else)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[4:8] == b"ftyp":  # an ISO media file: MP4 video (or M4A audio)
        return MP4
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4):
        return MP3
    # An MPEG audio frame: 11 sync bits, a valid version/layer and a bitrate that is not "bad".
    if len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version, layer, bitrate = (head[1] >> 3) & 3, (head[1] >> 1) & 3, head[2] >> 4
        if version != 1 and layer != 0 and bitrate != 0xF:
            return MP3
    return None


# --- samples ----------------------------------------------------------------------------------

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint stereo, no CRC: 417 bytes, 1152 samples a frame.
_FRAME_HEADER: Final = b"\xff\xfb\x90\x44"
_FRAME_BYTES: Final = 417
_FRAME_SECONDS: Final = 1152 / 44100


def _id3v23_text_tag(frame_id: str, text: str) -> bytes:
    body = b"\x00" + text.encode("latin-1", "replace")
    frame = frame_id.encode("ascii") + struct.pack(">I", len(body)) + b"\x00\x00" + body
    size = len(frame)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + frame


def _mp3_frame(index: int, seed: int) -> bytes:
    # Side info and main data are zero (silence); a few payload bytes carry the seed and
    # frame number so that two sample songs never hash alike.
    payload = struct.pack(">II", seed & 0xFFFFFFFF, index)
    return _FRAME_HEADER + b"\x00" * 32 + payload + b"\x00" * (_FRAME_BYTES - 4 - 32 - 8)


def sample_mp3(seconds: float = 3.0, seed: int = 0) -> bytes:
    """A valid MP3 of silence that starts with an ID3v2.3 tag (as the vendors' files do)."""
    frames = max(1, round(seconds / _FRAME_SECONDS))
    tag = _id3v23_text_tag("TSSE", f"suno-archiver sandbox {seed}")
    return tag + b"".join(_mp3_frame(i, seed) for i in range(frames))


def write_sample_mp3(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Write an MP3 of about `size_bytes` without holding it in memory; returns its size."""
    tag = _id3v23_text_tag("TSSE", f"suno-archiver sandbox {seed}")
    frames = max(1, (size_bytes - len(tag)) // _FRAME_BYTES)
    with path.open("wb") as out:
        out.write(tag)
        batch = 2048
        for start in range(0, frames, batch):
            end = min(frames, start + batch)
            out.write(b"".join(_mp3_frame(i, seed) for i in range(start, end)))
    return len(tag) + frames * _FRAME_BYTES


def sample_wav(seconds: float = 1.0, seed: int = 0) -> bytes:
    """A valid 8 kHz mono 8-bit PCM WAV of near-silence; a few bytes carry the seed."""
    rate = 8000
    frames = struct.pack(">I", seed & 0xFFFFFFFF) + b"\x80" * max(0, round(seconds * rate) - 4)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sample_mp4(size_bytes: int = 4096, seed: int = 0) -> bytes:
    """An ISO media file's outline (`ftyp` then an `mdat` box of filler): what MP4 magic
    bytes and a size check see; no player would show a picture."""
    ftyp = b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    head = struct.pack(">I", 8 + len(ftyp)) + b"ftyp" + ftyp
    payload = struct.pack(">I", seed & 0xFFFFFFFF) * max(1, (size_bytes - len(head) - 8) // 4)
    return head + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def sample_png(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A valid RGB PNG filled with a colour derived from `seed`."""
    rgb = bytes(((seed * 73) % 256, (seed * 151 + 80) % 256, (seed * 37 + 160) % 256))
    rows = b"".join(b"\x00" + rgb * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def sample_jpeg(seed: int = 0) -> bytes:
    """A valid 8x8 grey baseline JPEG; its shade comes from `seed`.

    One block, one component, quantisation 1 and a one-symbol Huffman table per class: the
    only coefficient is DC, so the entropy-coded data is a few bits.
    """
    dc = (seed % 15 + 1) * 8  # DC of a flat block = 8 * (level - 128); always > 0 here
    category = dc.bit_length()
    bits = "0" + format(dc, f"0{category}b") + "0"  # DC symbol, its value bits, AC end-of-block
    bits += "1" * (-len(bits) % 8)
    scan = int(bits, 2).to_bytes(len(bits) // 8, "big")
    scan = scan.replace(b"\xff", b"\xff\x00")

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    one_code = bytes([1] + [0] * 15)
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xDB, b"\x00" + b"\x01" * 64)
        + segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code + bytes([category]))
        + segment(0xC4, b"\x10" + one_code + b"\x00")
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + scan
        + b"\xff\xd9"
    )
