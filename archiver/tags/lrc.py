"""A track's timestamped lyrics (the API's `alignedWords`) → an LRC file: one line of lyrics
per lyrics line, timed by its first word. Pure.

The words carry the song's layout: a word may start with a section tag and a line break
(`"[Verse]\\nWaggin'"`), so a new line starts wherever a word holds a break; section tags
(`[Chorus]`) are left out, and the lines come out in time order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from archiver.kinds import fields

_SECTION_TAG: Final = re.compile(r"\[[^\]\n]*\]")


def lrc_lines(aligned: Mapping[str, Any]) -> list[tuple[float, str]]:
    """(start in seconds, text) of every lyrics line, in time order; [] for an instrumental."""
    lines: list[tuple[float | None, list[str]]] = [(None, [])]
    for word in fields.items(aligned.get("alignedWords")):
        start = fields.number(word.get("startS"))
        pieces = fields.text(word.get("word")).replace("\r", "").split("\n")
        for n, piece in enumerate(pieces):
            if n:
                lines.append((None, []))
            piece = _SECTION_TAG.sub("", piece).strip()
            if piece:
                at, words = lines[-1]
                lines[-1] = (at if at is not None else start, [*words, piece])
    timed = [(at, " ".join(words)) for at, words in lines if at is not None and at >= 0]
    return sorted(timed, key=lambda line: line[0])


def lrc_text(lines: list[tuple[float, str]]) -> str:
    """The lines as LRC (`[mm:ss.xx]text`, one a line)."""
    return "".join(f"[{_stamp(at)}]{text}\n" for at, text in lines)


def _stamp(seconds: float) -> str:
    hundredths = round(seconds * 100)
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"
