"""`[tagging] aligned_lyrics`: each song's timestamped lyrics as JSON and LRC, in the track's
manifest entry; the LRC built from word timings (pure), and the whole over loopback HTTP."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from backfills import Site

from archiver.sandbox import fake_hex_id
from archiver.tags.lrc import lrc_lines, lrc_text
from archiver.tasks.taskstate import Phase

# --- LRC from word timings (pure) ----------------------------------------------------------------


def test_lines_start_at_their_first_word_and_drop_section_tags() -> None:
    words = [
        {"word": "[Verse]\nWaggin'", "startS": 1.36, "endS": 1.79},
        {"word": "my ", "startS": 1.8},
        {"word": "tail", "startS": 2.1},
        {"word": "\n[Chorus]\nOh", "startS": 65.2},
        {"word": "yes", "startS": "66.0"},  # a number as a string
    ]
    assert lrc_text(lrc_lines({"alignedWords": words})) == (
        "[00:01.36]Waggin' my tail\n[01:05.20]Oh yes\n"
    )


def test_lines_come_out_in_time_order_whatever_order_the_words_came_in() -> None:
    words = [
        {"word": "\nlater", "startS": 30.0},
        {"word": "\nearlier", "startS": 3.5},
        {"word": "\nno time", "startS": None},  # cannot be placed: left out
    ]
    assert lrc_lines({"alignedWords": words}) == [(3.5, "earlier"), (30.0, "later")]


def test_an_instrumental_has_no_lines() -> None:
    assert lrc_lines({"alignedWords": []}) == []
    assert lrc_lines({"alignedWords": None, "waveformData": [0.1]}) == []


def test_stamps_past_ten_minutes() -> None:
    assert lrc_text([(725.456, "late")]) == "[12:05.46]late\n"


# --- end to end ----------------------------------------------------------------------------------


STAMP = re.compile(r"^\[(\d\d):(\d\d)\.(\d\d)\](.*)$")


def times(lrc: str) -> list[float]:
    found = [STAMP.match(line) for line in lrc.splitlines()]
    assert all(found), lrc
    return [int(m[1]) * 60 + int(m[2]) + int(m[3]) / 100 for m in found if m]


async def test_each_song_gets_its_lyrics_json_and_lrc_in_its_manifest_entry(site: Site) -> None:
    site.tagging = replace(site.tagging, aligned_lyrics=True)
    task = fake_hex_id("aligned")
    site.sb.add_music(task, prompt="[Verse]\nNight city lights\nShining bright\n[Chorus]\nOh oh")

    report = await site.backfill(task)

    assert report.complete and report.total == 1
    doc = site.manifest(task)  # verify_archive: every file as the manifest says
    for track in doc["tracks"]:
        name = track["audio"]["path"].removesuffix(".mp3")
        assert track["lyrics"]["path"] == f"{name}.lyrics.json"
        assert track["lrc"]["path"] == f"{name}.lrc"
        answer = json.loads((site.archive / track["lyrics"]["path"]).read_bytes())
        assert answer["alignedWords"][0]["word"] == "[Verse]\nNight"
        lrc = (site.archive / track["lrc"]["path"]).read_text(encoding="utf-8")
        assert lrc.splitlines() == ["[00:10.00]Night city lights", "[00:15.00]Shining bright",
                                    "[00:20.00]Oh oh"]  # fmt: skip
        assert times(lrc) == sorted(times(lrc))
    assert site.sb.api.calls[("aligned_lyrics", task)] == 2  # one a track


async def test_an_instrumental_keeps_its_answer_and_has_no_lrc(site: Site) -> None:
    site.tagging = replace(site.tagging, aligned_lyrics=True)
    task = fake_hex_id("instrumental")
    site.sb.add_music(task, instrumental=True)

    report = await site.backfill(task)

    assert report.complete and report.total == 1  # not an error
    for track in site.manifest(task)["tracks"]:
        assert "lrc" not in track
        answer = json.loads((site.archive / track["lyrics"]["path"]).read_bytes())
        assert answer["alignedWords"] == []
    assert not list((site.archive / task).glob("*.lrc"))


async def test_off_by_default_asks_nothing_and_the_manifest_is_as_before(site: Site) -> None:
    task = fake_hex_id("no-aligned")
    site.sb.add_music(task)
    await site.backfill(task)
    assert site.sb.api.calls[("aligned_lyrics", task)] == 0
    assert all("lyrics" not in t and "lrc" not in t for t in site.manifest(task)["tracks"])


async def test_a_refusal_is_recorded_and_the_next_run_completes_keeping_the_mp3s(
    site: Site,
) -> None:
    site.tagging = replace(site.tagging, aligned_lyrics=True)
    task = fake_hex_id("aligned-refused")
    site.sb.add_music(task)
    site.sb.api.refuse_aligned_lyrics = 2

    first = await site.backfill(task)

    (partial,) = first.not_archived
    assert partial.phase is Phase.PARTIAL
    assert ".lyrics.json: the API refused the request (400" in (partial.last_error or "")
    tracks = site.manifest(task)["tracks"]
    assert all("path" in t["audio"] and "error" in t["lyrics"] for t in tracks)
    hits = sum(site.sb.cdn.hits.values())

    second = await site.backfill()

    assert second.complete and second.total == 1
    assert sum(site.sb.cdn.hits.values()) == hits  # the stored MP3s and images are kept
    assert all(t["lrc"]["path"].endswith(".lrc") for t in site.manifest(task)["tracks"])
    calls = site.sb.api.total_calls

    third = await site.backfill()

    assert third.complete and site.sb.api.total_calls == calls  # archived: nothing asked
