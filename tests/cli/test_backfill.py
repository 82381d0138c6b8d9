"""`backfill` end to end, in process, against the stand-in API over loopback HTTP.

Each test archives into a real folder with a real SQLite state and then checks the archive
with `verify_archive`: what the manifests say is exactly what is on disk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

import pytest
from archive_checks import TEMP_DIR, strip_id3v2, verify_archive
from backfills import Site, audio_id, phases
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from archiver.cli.backfill import format_summary
from archiver.config import DownloadConfig, TaggingConfig
from archiver.engine.step import ARCHIVE_ATTEMPTS
from archiver.sandbox import fake_hex_id
from archiver.sandbox.cdn import FileFaults
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase

# --- the happy path ------------------------------------------------------------------------


async def test_archives_music_and_cover_tasks_with_verified_manifests(site: Site) -> None:
    music, callback, cover = (fake_hex_id(f"ok:{n}") for n in range(3))
    site.sb.add_music(music, create_time="string", extra_fields=True)
    site.sb.add_music(callback, callback_exception=True)
    site.sb.add_cover(cover, parent_task_id=music)

    report = await site.backfill(music, f"music:{callback}", cover)

    assert report.complete
    manifests = verify_archive(site.archive)
    assert set(manifests) == {music, callback, cover}
    doc = manifests[music]
    assert (doc["schema_version"], doc["kind"], doc["status"], doc["outcome"]) == (
        1,
        "music",
        "SUCCESS",
        "archived",
    )
    assert doc["raw"]["newFeatureFlag"] == {"nested": [1, "two", None]}  # unknown fields kept
    assert doc["error"] is None and doc["archived_at"].endswith("Z")
    for track in doc["tracks"]:
        audio = track["audio"]
        assert audio["path"].startswith(f"{music}/") and audio["content_type"] == "audio/mpeg"
        name = audio["source_url"].rsplit("/", 1)[1]
        source = site.source_bytes(name)
        assert audio["source_sha256"] == hashlib.sha256(source).hexdigest()
        assert audio["source_bytes"] == len(source)
        assert track["image"]["content_type"] == "image/jpeg"
    assert manifests[callback]["status"] == "CALLBACK_EXCEPTION"
    assert manifests[callback]["outcome"] == "archived"
    assert [i["content_type"] for i in manifests[cover]["images"]] == ["image/png"] * 2
    assert manifests[cover]["parent_task_id"] == music
    assert "archived" in format_summary(report, str(site.archive))


async def test_tags_read_back_and_audio_frames_are_the_download(site: Site) -> None:
    task = fake_hex_id("tags")
    site.sb.add_music(task, title="Neon Highway", tags="synthwave", seconds=4.0)

    await site.backfill(task)

    track = site.manifest(task)["tracks"][0]
    stored = site.archive / track["audio"]["path"]
    tags = ID3(stored)
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Neon Highway"
    assert str(tags["TCON"]) == "synthwave"
    assert str(tags["TLEN"]) == "4000"
    assert "Sandbox lyrics" in tags.getall("USLT")[0].text
    assert str(tags["TXXX:SUNO_TASK_ID"]) == task
    assert str(tags["TXXX:SUNO_AUDIO_ID"]) == track["audio_id"]
    assert str(tags["TXXX:SUNO_MODEL"]) == "chirp-v4"
    # mutagen reads the v2.3 TYER frame as TDRC: the year of the track's createTime
    assert str(tags["TDRC"]) == track["created_at"][:4]
    assert b"TYER" in stored.read_bytes()[:4096]
    cover = tags.getall("APIC")[0]
    assert cover.type == 3 and cover.data == (site.archive / track["image"]["path"]).read_bytes()
    assert str(tags["TSSE"]).startswith("suno-archiver sandbox")  # the file's own tag kept
    source = site.source_bytes(track["audio"]["source_url"].rsplit("/", 1)[1])
    assert strip_id3v2(stored.read_bytes()) == strip_id3v2(source)
    assert MP3(stored).info.length > 3.5


async def test_tagging_disabled_stores_the_download_as_it_came(site: Site) -> None:
    task = fake_hex_id("untagged")
    site.sb.add_music(task)
    site.tagging = TaggingConfig(enabled=False)

    await site.backfill(task)

    audio = site.manifest(task)["tracks"][0]["audio"]
    source = site.source_bytes(f"{task}-1.mp3")
    assert (site.archive / audio["path"]).read_bytes() == source
    assert audio["sha256"] == audio["source_sha256"] == hashlib.sha256(source).hexdigest()


async def test_id3v24_without_an_embedded_cover(site: Site) -> None:
    task = fake_hex_id("v24")
    site.sb.add_music(task, title="Neon Highway")
    site.tagging = TaggingConfig(id3_version=4, embed_cover=False)

    await site.backfill(task)

    track = site.manifest(task)["tracks"][0]
    tags = ID3(site.archive / track["audio"]["path"])
    assert tags.version[:2] == (2, 4)
    assert str(tags["TIT2"]) == "Neon Highway"
    assert str(tags["TDRC"]) == track["created_at"][:4]
    assert not tags.getall("APIC")
    assert track["image"]["sha256"]  # the image is archived all the same


# --- reruns: nothing fetched, nothing asked ------------------------------------------------


async def test_rerun_fetches_nothing_and_asks_the_api_nothing(site: Site) -> None:
    tasks = [fake_hex_id(f"rerun:{n}") for n in range(3)]
    for task in tasks:
        site.sb.add_music(task)
    await site.backfill(*tasks)
    before = site.archive.joinpath(tasks[0], "manifest.json").read_bytes()
    calls, hits = site.sb.api.total_calls, sum(site.sb.cdn.hits.values())

    report = await site.backfill()

    assert report.complete
    assert (site.sb.api.total_calls, sum(site.sb.cdn.hits.values())) == (calls, hits)
    assert site.archive.joinpath(tasks[0], "manifest.json").read_bytes() == before


async def test_deleted_state_trusts_the_manifests(site: Site) -> None:
    task = fake_hex_id("lost-state")
    site.sb.add_music(task)
    await site.backfill(task)
    site.state.unlink()
    calls, hits = site.sb.api.total_calls, sum(site.sb.cdn.hits.values())

    report = await site.backfill()

    assert report.complete
    assert (site.sb.api.total_calls, sum(site.sb.cdn.hits.values())) == (calls, hits)


async def test_duplicates_are_archived_once(site: Site) -> None:
    task = fake_hex_id("dup")
    site.sb.add_music(task)

    report = await site.backfill(task, f"  {task}  ", f"music:{task}")

    assert report.complete and report.total == 1
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == 1


# --- faults on the way ---------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["http500", "http455", "html", "badjson", "body430"])
async def test_api_faults_are_retried(site: Site, fault: str) -> None:
    task = fake_hex_id(f"api-{fault}")
    site.sb.add_music(task)
    site.sb.api.fail_next(2, fault, retry_after=0.1)

    report = await site.backfill(task)

    assert report.complete


async def test_downloads_never_exceed_the_concurrency_cap(site: Site) -> None:
    task = fake_hex_id("cap")
    site.sb.add_music(task, tracks=3)
    site.download = DownloadConfig(concurrency=2, attempts=2, timeout_s=0.5)
    for track in (1, 2, 3):  # each MP3 stalls once until the client gives up on it: they overlap
        site.sb.cdn.set_faults(f"{task}-{track}.mp3", FileFaults(stall_after_bytes=1000))

    report = await site.backfill(task)

    assert report.complete
    assert site.sb.cdn.max_in_flight == 2


async def test_after_an_api_outage_one_transient_file_failure_is_retried(site: Site) -> None:
    task = fake_hex_id("after-outage")
    site.sb.add_music(task)
    with StateStore.open(site.state) as state:  # what four failed lookups in a row leave
        state.add([(task, None)], now=time.time())
        state.save(
            replace(
                state.get_many([task])[task],
                attempts=4,
                last_error="the API is in maintenance (455: System is currently undergoing "
                "maintenance)",
            )
        )
    site.download = DownloadConfig(attempts=1)  # one 503 fails the file for this try
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(status=503, status_times=1))

    report = await site.backfill(task)

    assert report.complete
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == 2
    with StateStore.open(site.state) as state:
        saved = state.get_many([task])[task]
    assert (saved.attempts, saved.archive_attempts) == (0, 0)


async def test_a_file_failing_transiently_on_every_try_is_recorded_after_five(
    site: Site,
) -> None:
    task = fake_hex_id("always-503")
    site.sb.add_music(task)
    site.download = DownloadConfig(attempts=1)
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(status=503))

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == ARCHIVE_ATTEMPTS
    assert "503" in site.manifest(task)["tracks"][0]["audio"]["error"]


async def test_connection_reset_mid_file_is_resumed(site: Site) -> None:
    task = fake_hex_id("reset")
    site.sb.add_music(task, seconds=20)
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(reset_after_bytes=100_000))

    report = await site.backfill(task)

    assert report.complete
    ranges = [r.range for r in site.sb.cdn.requests if r.name == f"{task}-1.mp3"]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    verify_archive(site.archive)


async def test_truncated_body_and_ignored_range_still_give_the_whole_file(site: Site) -> None:
    task = fake_hex_id("truncated")
    site.sb.add_music(task, seconds=20)
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(truncate_to=50_000, ignore_range=True))

    report = await site.backfill(task)

    assert report.complete
    track = site.manifest(task)["tracks"][0]
    source = site.source_bytes(f"{task}-1.mp3")
    assert track["audio"]["source_sha256"] == hashlib.sha256(source).hexdigest()


async def test_html_served_as_mp3_is_never_archived_as_a_song(site: Site) -> None:
    task = fake_hex_id("html")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(html=True))

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    audio = site.manifest(task)["tracks"][0]["audio"]
    assert "path" not in audio and "html" in audio["error"].lower()
    assert not list(site.archive.joinpath(task).glob("*.mp3"))[1:]  # only track 2's MP3


async def test_source_url_is_the_fallback_when_the_main_url_is_gone(site: Site) -> None:
    task = fake_hex_id("fallback")
    site.sb.add_music(task, source_urls="ok")
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(status=403))

    report = await site.backfill(task)

    assert report.complete
    audio = site.manifest(task)["tracks"][0]["audio"]
    assert audio["source_url"].endswith(f"{task}-1-source.mp3")


# --- odd answers of the API ----------------------------------------------------------------


async def test_an_answer_about_another_task_never_touches_that_task(site: Site) -> None:
    asked, other = fake_hex_id("asked"), fake_hex_id("other")
    site.sb.add_music(asked)
    site.sb.add_music(other)
    site.sb.api.fail_next(1, "other_task")  # the first answer is about `other`

    report = await site.backfill(asked)

    assert report.complete and report.total == 1
    manifests = verify_archive(site.archive)
    assert set(manifests) == {asked} and manifests[asked]["raw"]["taskId"] == asked
    assert not site.archive.joinpath(other).exists()


async def test_nan_and_infinity_in_the_answer_are_archived_as_null(site: Site) -> None:
    task = fake_hex_id("nan")
    site.sb.add_music(task, non_finite=True)
    site.give_up_after_s = 5.0  # unfixed, the manifest could never be written: no waiting a day

    report = await site.backfill(task)

    assert report.complete and report.total == 1
    doc = site.manifest(task)
    assert doc["raw"]["creditsLeft"] is None
    assert [t["duration"] for t in doc["tracks"]] == [None, None]


@pytest.mark.parametrize("scheme", ["ftp", "data"])
async def test_an_audio_url_that_is_not_http_is_refused_and_the_task_partial(
    site: Site, scheme: str
) -> None:
    task = fake_hex_id(f"scheme-{scheme}")
    site.sb.add_music(task, odd_audio_url=scheme)

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == 0  # not even by another scheme's path
    doc = site.manifest(task)
    refused = doc["tracks"][0]["audio"]
    assert "path" not in refused and refused["source_url"].startswith(f"{scheme}:")
    assert "not an http(s) URL" in refused["error"]
    assert doc["tracks"][1]["audio"]["sha256"]  # the other track is archived all the same
    (state,) = report.not_archived
    assert "not an http(s) URL" in (state.last_error or "")  # named in the summary


async def test_a_file_that_only_looks_like_an_mp3_is_reported_by_its_archive_name(
    site: Site,
) -> None:
    task = fake_hex_id("fake-mp3")
    site.sb.add_music(task)
    not_mp3 = b"\xff\xfb\x90\x44" + bytes(range(256)) * 40  # an MPEG frame header, then noise
    site.sb.cdn.add(f"{task}-1.mp3", not_mp3, content_type="audio/mpeg")

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    error = site.manifest(task)["tracks"][0]["audio"]["error"]
    assert error.startswith(f"{task}/{audio_id(task, 1)}.mp3 is not an MP3")
    assert ".part" not in error


# --- hostile names -------------------------------------------------------------------------


async def test_path_like_titles_and_audio_ids_stay_inside_the_archive(site: Site) -> None:
    task = fake_hex_id("paths")
    site.sb.add_music(
        task, title="../../etc/passwd", audio_ids=["../../../escape", "a/b\\c\x00.mp3"]
    )

    report = await site.backfill(task, "../outside", "a/b", "music:..")

    assert report.complete is False  # the three bad lines are reported and skipped
    assert [b.line_no for b in report.bad_lines] == [2, 3, 4]
    doc = site.manifest(task)
    for track in doc["tracks"]:
        assert Path(track["audio"]["path"]).parent.name == task
        assert ".." not in track["audio"]["path"] and "\\" not in track["audio"]["path"]
    assert {t["audio_id"] for t in doc["tracks"]} == {"../../../escape", "a/b\\c\x00.mp3"}
    outside = [p for p in site.archive.parent.rglob("*") if p.is_file()]
    assert all(
        p.is_relative_to(site.archive) or p.name.startswith(("state.sqlite3", "ids.txt"))
        for p in outside
    )
    assert not (site.archive / TEMP_DIR).exists() or not [
        p for p in (site.archive / TEMP_DIR).iterdir() if p.suffix == ".part"
    ]
