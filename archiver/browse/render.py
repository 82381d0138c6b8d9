"""View rows → the bytes of the browse files. Pure (templates are read once).

`index.html` is one small page: a Jinja2 template with autoescaping on, its CSS and JS inlined
(no network). The tracks are in shard files beside it (`browse/`), loaded with <script>
elements, which `file://` allows where `fetch()` is refused: per shard, its tasks with their
lyrics (`browse/t/NNNNN.js`) and the distinct words a search may match (`browse/s/NNNNN.js`);
and `browse/shards.js`, the table of shards the page starts from. Every text from the API
reaches a file as JSON that `view.script_json` made safe, and the page sets it as text.

Playlists: `playlists/NNNNN.m3u8` per shard (every archived MP3), and `playlist.m3u8` at the
root with the newest RECENT_TRACKS (every MP3 while the archive has no more).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import jinja2

from archiver.browse.store import ShardInfo
from archiver.browse.view import ViewRow, script_json

INDEX_KEY: Final = "index.html"
PLAYLIST_KEY: Final = "playlist.m3u8"
SHARD_FOLDER: Final = "browse"  # the page's data: the archiver's own, derived like the page
PLAYLIST_FOLDER: Final = "playlists"
TABLE_KEY: Final = f"{SHARD_FOLDER}/shards.js"
INDEX_CONTENT_TYPE: Final = "text/html; charset=utf-8"
SCRIPT_CONTENT_TYPE: Final = "text/javascript; charset=utf-8"
PLAYLIST_CONTENT_TYPE: Final = "audio/x-mpegurl"
PAGE_SIZE: Final = 50  # tracks shown at once; the rest are a click (or a search) away
# Tracks in playlist.m3u8: past this many, the newest (a rewrite stays small; the shard
# playlists hold every track). About 150 bytes a track.
RECENT_TRACKS: Final = 1000
PLAYLIST_HEAD: Final = "#EXTM3U\n"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archiver.browse", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def tasks_key(shard: int) -> str:
    return f"{SHARD_FOLDER}/t/{shard_name(shard)}.js"


def words_key(shard: int) -> str:
    return f"{SHARD_FOLDER}/s/{shard_name(shard)}.js"


def shard_playlist_key(shard: int) -> str:
    return f"{PLAYLIST_FOLDER}/{shard_name(shard)}.m3u8"


def render_page(*, version: str) -> bytes:
    """index.html: the same bytes for every archive of one archiver version."""
    page = (
        _environment()
        .get_template("index.html.j2")
        .render(
            version=version,
            page_size=PAGE_SIZE,
            table=TABLE_KEY,
            folder=SHARD_FOLDER,
            playlist=PLAYLIST_KEY,
            playlists=PLAYLIST_FOLDER,
        )
    )
    return page.encode("utf-8")


@dataclass(frozen=True)
class ShardFiles:
    """One shard's files (keys are the render's functions of its number) and its counts."""

    info: ShardInfo
    tasks: bytes
    words: bytes
    playlist: bytes


def render_shard(shard: int, changes: int, rows: Sequence[ViewRow]) -> ShardFiles:
    """The files of one shard from its rows (newest first), at version `changes`."""
    dates = sorted(row.sort_key for row in rows if row.sort_key)
    info = ShardInfo(
        shard=shard,
        changes=changes,
        tasks=len(rows),
        tracks=sum(row.tracks for row in rows),
        first=dates[0][:10] if dates else None,
        last=dates[-1][:10] if dates else None,
    )
    tasks = (
        f"SUNO.tasks({shard},[{','.join(r.data for r in rows)}],"
        f"[{','.join(r.lyrics for r in rows)}]);\n"
    )
    words = dict.fromkeys(word for row in rows for word in row.hay.split())
    hay = f"SUNO.words({shard},{script_json(' '.join(words))});\n"
    span = " to ".join(dict.fromkeys(d for d in (info.first, info.last) if d))
    title = f"Suno archive, part {shard + 1}" + (f": {span}" if span else "")
    playlist = PLAYLIST_HEAD + f"#PLAYLIST:{title}\n" + "".join(_up(row.m3u) for row in rows)
    return ShardFiles(
        info=info,
        tasks=tasks.encode("utf-8"),
        words=hay.encode("utf-8"),
        playlist=playlist.encode("utf-8"),
    )


def _up(m3u: str) -> str:
    """A row's playlist lines as seen from the playlists folder: its paths one folder up."""
    lines = m3u.splitlines()
    lines[1::2] = ["../" + path for path in lines[1::2]]
    return "".join(line + "\n" for line in lines)


def render_table(
    shards: Sequence[ShardInfo], *, shard_tasks: int, generated_at: str, version: str
) -> bytes:
    """browse/shards.js: the totals, and each shard's number, version and counts (oldest
    first). About 40 bytes a shard: the page reads it before anything else."""
    table = {
        "generated": generated_at,
        "version": version,
        "tasks": sum(s.tasks for s in shards),
        "tracks": sum(s.tracks for s in shards),
        "size": shard_tasks,
        "shards": [[s.shard, s.changes, s.tasks, s.tracks, s.first, s.last] for s in shards],
    }
    return f"SUNO.table({script_json(table)});\n".encode()


def render_recent(batches: Iterable[list[str]], limit: int = RECENT_TRACKS) -> tuple[bytes, int]:
    """playlist.m3u8 from the rows' playlist lines, newest first: the first `limit` tracks.
    Returns it and how many it lists."""
    out, count = [PLAYLIST_HEAD], 0
    for batch in batches:
        for m3u in batch:
            lines = m3u.splitlines()
            take = min(len(lines) // 2, limit - count)
            out.extend(line + "\n" for line in lines[: 2 * take])
            count += take
            if count >= limit:
                return "".join(out).encode("utf-8"), count
    return "".join(out).encode("utf-8"), count
