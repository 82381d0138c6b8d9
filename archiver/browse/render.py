"""View rows → the bytes of `index.html` and `playlist.m3u8`. Pure (templates are read once).

The page is a Jinja2 template with autoescaping on: whatever text reaches it from the API is
escaped, and the track data goes in as JSON that `view.script_json` made safe for <script>.
CSS and JS are inlined from the package's templates: the page needs no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Final

import jinja2
from markupsafe import Markup

from archiver.browse.view import ViewRow

INDEX_KEY: Final = "index.html"
PLAYLIST_KEY: Final = "playlist.m3u8"
INDEX_CONTENT_TYPE: Final = "text/html; charset=utf-8"
PLAYLIST_CONTENT_TYPE: Final = "audio/x-mpegurl"
PAGE_SIZE: Final = 50  # tracks shown at once; the rest are a click (or a search) away


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archiver.browse", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


PLAYLIST_HEAD: Final = b"#EXTM3U\n"
_TASKS_MARK: Final = "\x00tasks\x00"  # where the rows go; no template holds a NUL
_LYRICS_MARK: Final = "\x00lyrics\x00"


def page_frame(
    *, task_count: int, track_count: int, generated_at: str, version: str
) -> tuple[bytes, bytes, bytes]:
    """The page around its rows: (head, middle, foot), so that the page is head, the task
    rows' JSON joined by commas, middle, the lyrics' JSON joined by commas, foot. Written
    piecewise: a million rows are never one string."""
    page = (
        _environment()
        .get_template("index.html.j2")
        .render(
            tasks=Markup("[" + _TASKS_MARK + "]"),
            lyrics=Markup("[" + _LYRICS_MARK + "]"),
            track_count=track_count,
            task_count=task_count,
            generated_at=generated_at,
            version=version,
            page_size=PAGE_SIZE,
        )
    )
    head, rest = page.split(_TASKS_MARK)
    middle, foot = rest.split(_LYRICS_MARK)
    return head.encode("utf-8"), middle.encode("utf-8"), foot.encode("utf-8")


def render_index(rows: Sequence[ViewRow], *, generated_at: str, version: str) -> bytes:
    """The page listing `rows` (newest first, as given), whole: for a few rows."""
    head, middle, foot = page_frame(
        task_count=len(rows),
        track_count=sum(row.tracks for row in rows),
        generated_at=generated_at,
        version=version,
    )
    tasks = ",".join(row.data for row in rows).encode("utf-8")
    lyrics = ",".join(row.lyrics for row in rows).encode("utf-8")
    return head + tasks + middle + lyrics + foot


def render_playlist(rows: Sequence[ViewRow]) -> bytes:
    """Every archived MP3 of `rows`, in their order, as an extended M3U in UTF-8."""
    return PLAYLIST_HEAD + "".join(row.m3u for row in rows).encode("utf-8")
