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


def render_index(rows: Sequence[ViewRow], *, generated_at: str, version: str) -> bytes:
    """The page listing `rows` (newest first, as given)."""
    page = (
        _environment()
        .get_template("index.html.j2")
        .render(
            tasks=Markup("[" + ",".join(row.data for row in rows) + "]"),
            lyrics=Markup("[" + ",".join(row.lyrics for row in rows) + "]"),
            track_count=sum(row.tracks for row in rows),
            task_count=len(rows),
            generated_at=generated_at,
            version=version,
            page_size=PAGE_SIZE,
        )
    )
    return page.encode("utf-8")


def render_playlist(rows: Sequence[ViewRow]) -> bytes:
    """Every archived MP3 of `rows`, in their order, as an extended M3U in UTF-8."""
    return ("#EXTM3U\n" + "".join(row.m3u for row in rows)).encode("utf-8")
