"""What the browse page and the playlists get of a manifest (archiver.browse.view), and the
files of a shard, its table and the page (archiver.browse.render)."""

from __future__ import annotations

import json
import re
from typing import Any

from manifestdocs import TASK, music, track

from archiver.browse.render import (
    render_page,
    render_recent,
    render_shard,
    render_table,
)
from archiver.browse.view import ViewRow, script_json, view_row

HOSTILE = '</script><script>alert(1)</script><!-- & "quotes"'


def data(row: ViewRow) -> dict[str, Any]:
    return json.loads(row.data)


def test_a_music_task_gives_its_tracks_newest_key_and_shared_lyrics_once() -> None:
    row = view_row(music())

    task = data(row)
    assert (task["i"], task["k"], task["o"], task["w"]) == (TASK, "music", "archived", row.sort_key)
    assert row.sort_key == "2025-01-01T00:00:00Z"  # the task's first track was created then
    assert [t["p"] for t in task["t"]] == [f"{TASK}/au1.mp3", f"{TASK}/au2.mp3"]
    assert task["t"][0]["im"] == f"{TASK}/au1.jpeg" and task["t"][0]["d"] == 199.44
    assert "e" not in task and "f" not in task  # empty values are left out
    assert json.loads(row.lyrics) == ["[Verse] the same lyrics"]
    assert [t["l"] for t in task["t"]] == [0, 0]
    assert row.tracks == 2


def test_untrusted_text_cannot_close_the_script_element() -> None:
    row = view_row(music(tracks=[track(1, title=HOSTILE, prompt=HOSTILE)]))

    for text in (row.data, row.lyrics):
        assert not re.search(r"[<>&]", text)
    assert data(row)["t"][0]["n"] == HOSTILE  # the same text once parsed
    assert json.loads(row.lyrics) == [HOSTILE]
    assert script_json("a</script>") == '"a\\u003c/script\\u003e"'


def test_a_shard_holds_its_rows_as_script_calls_and_escapes_nothing_twice() -> None:
    rows = [view_row(music(tracks=[track(1, title=HOSTILE, tags="Synth  WAVE")]))]

    files = render_shard(7, 3, rows)

    for blob in (files.tasks, files.words):
        assert b"alert(1)</script>" not in blob and b"<!-- &" not in blob
    call = re.fullmatch(r"SUNO\.tasks\(7,\[(.*)\],\[(.*)\]\);\n", files.tasks.decode(), re.S)
    assert call is not None and json.loads(call.group(1))["t"][0]["n"] == HOSTILE
    assert json.loads(call.group(2)) == ["[Verse] the same lyrics"]
    words = re.fullmatch(r"SUNO\.words\(7,(.*)\);\n", files.words.decode(), re.S)
    assert words is not None
    assert json.loads(words.group(1)).split() == [
        TASK,
        "music",
        "archived",
        *HOSTILE.lower().split(),
        "synth",
        "wave",
        "chirp-v4",
        "au1",
    ]
    assert (files.info.shard, files.info.changes, files.info.tasks, files.info.tracks) == (
        7,
        3,
        1,
        1,
    )
    assert (files.info.first, files.info.last) == ("2025-01-01", "2025-01-01")


def test_the_page_is_small_and_the_same_for_every_archive() -> None:
    page = render_page(version="0").decode()

    assert page == render_page(version="0").decode()
    assert len(page) < 40_000
    assert "http://" not in page and "https://" not in page  # no network: nothing to fetch
    table = render_table([], shard_tasks=500, generated_at="now", version="0").decode()
    assert table.startswith("SUNO.table(") and '"shards":[]' in table


def test_failed_and_partial_tasks_carry_their_reason() -> None:
    failed = view_row(
        music(
            status="SENSITIVE_WORD_ERROR",
            outcome="failed",
            error={"code": 400, "message": "Lyrics contained copyrighted material"},
            tracks=[],
        )
    )
    gone = {"source_url": "https://cdn/x.mp3", "error": "HTTP 404: the URL has expired"}
    partial = view_row(music(outcome="partial", tracks=[track(1, audio=gone), track(2)]))
    no_audio = view_row(music(outcome="partial", tracks=[track(1, audio=None)]))

    assert data(failed)["e"] == "400: Lyrics contained copyrighted material"
    assert data(failed)["w"] == "2025-01-01T00:00:00Z"  # raw createTime, no track to tell
    assert data(partial)["e"] == "Neon Highway (audio): HTTP 404: the URL has expired"
    assert data(partial)["t"][0]["pe"] == "HTTP 404: the URL has expired"
    assert "p" not in data(partial)["t"][0] and partial.tracks == 1
    assert data(no_audio)["e"] == "Neon Highway: no audio from the API"


def test_other_kinds_show_their_files_by_role_and_what_they_were_made_from() -> None:
    cover = view_row(
        {
            "task_id": "cov",
            "kind": "cover",
            "outcome": "archived",
            "images": [{"path": "cov/cover-1.png", "content_type": "image/png"}],
            "parent_task_id": TASK,
            "raw": {},
            "archived_at": "2026-01-02T00:00:00Z",
        }
    )
    stems = view_row(
        {
            "task_id": "stm",
            "kind": "stems",
            "outcome": "partial",
            "files": [
                {"path": "stm/vocals.mp3", "content_type": "audio/mpeg", "role": "vocals"},
                {"source_url": "https://cdn/d.mp3", "error": "HTTP 403", "role": "drums"},
            ],
            "raw": {"musicId": "au1", "createTime": "2025-01-03 00:00:00"},
        }
    )
    lyrics_file = {"path": f"{TASK}/au1.lrc", "content_type": "text/plain"}
    aligned = view_row(music(tracks=[track(1, lyrics=lyrics_file)]))

    assert data(cover)["f"] == [["cover", "cov/cover-1.png", "image/png"]]
    assert data(cover)["pa"] == TASK
    assert data(stems)["f"] == [["vocals", "stm/vocals.mp3", "audio/mpeg"]]
    assert (data(stems)["mu"], data(stems)["e"]) == ("au1", "drums: HTTP 403")
    assert stems.sort_key == "2025-01-03T00:00:00Z" and stems.m3u == ""
    assert data(aligned)["t"][0]["x"] == [["lyrics", f"{TASK}/au1.lrc"]]


def test_the_playlist_lists_every_mp3_with_its_whole_seconds_and_one_line_title() -> None:
    rows = [
        view_row(music(tracks=[track(1, title="Two\nlines"), track(2, duration=None)])),
        view_row(music(task_id="b", tracks=[track(1, title="")])),
    ]

    text = render_recent([[r.m3u for r in rows]])[0].decode("utf-8")
    part = render_shard(0, 1, rows).playlist.decode("utf-8")

    assert text.splitlines() == [
        "#EXTM3U",
        "#EXTINF:199,Two lines",
        f"{TASK}/au1.mp3",
        "#EXTINF:-1,Neon Highway",
        f"{TASK}/au2.mp3",
        "#EXTINF:199,au1",
        f"{TASK}/au1.mp3",
    ]
    assert (
        part.splitlines()
        == [  # from the playlists folder: one folder up
            "#EXTM3U",
            "#PLAYLIST:Suno archive, part 1: 2025-01-01",
            *(f"../{line}" if line.startswith(TASK) else line for line in text.splitlines()[1:]),
        ]
    )
    assert render_recent([[r.m3u for r in rows]], limit=2) == (
        "\n".join([*text.splitlines()[:5], ""]).encode(),
        2,
    )
