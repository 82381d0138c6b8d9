"""`backfill` end to end, in process, against the stand-in API over loopback HTTP: the tasks that
do not end archived, or not yet. A failed task, an expired URL, a track whose audio never comes,
a name holding other content, an ID unknown for the whole window, a task that never finishes:
each gets the manifest or the report it should, and a retry keeps what was stored before. A
pending task is waited for without hammering the API; a rejected key ends the run."""

from __future__ import annotations

import json
import time

import pytest
from archive_checks import verify_archive
from backfills import Site, audio_id, phases
from mutagen.id3 import ID3
from structlog.testing import capture_logs

from archiver.cli.backfill import format_summary
from archiver.errors import AuthError
from archiver.sandbox import fake_hex_id
from archiver.sandbox.cdn import FileFaults
from archiver.tasks.taskstate import Phase

# --- tasks that do not end archived --------------------------------------------------------


async def test_failed_task_gets_a_manifest_with_the_api_error(site: Site) -> None:
    task = fake_hex_id("failed")
    site.sb.add_music(task, fail_status="GENERATE_AUDIO_FAILED", error_code=501)

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.FAILED} and not report.complete
    doc = site.manifest(task)
    assert doc["outcome"] == "failed" and doc["status"] == "GENERATE_AUDIO_FAILED"
    assert doc["error"]["code"] == 501 and doc["error"]["message"]
    assert task in format_summary(report, str(site.archive))


async def test_expired_url_is_partial_and_a_later_run_completes_it(site: Site) -> None:
    task = fake_hex_id("expired")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults(status=404))

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    doc = site.manifest(task)
    assert doc["outcome"] == "partial"
    missing = doc["tracks"][1]["audio"]
    assert "404" in missing["error"] and missing["source_url"].endswith(f"{task}-2.mp3")
    assert doc["tracks"][0]["audio"]["sha256"]  # the rest is archived all the same
    assert "partial" in format_summary(report, str(site.archive))

    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults())  # e.g. a vendor that re-hosted it
    again = await site.backfill()

    assert again.complete and site.manifest(task)["outcome"] == "archived"


async def test_retry_keeps_the_files_stored_before_though_their_urls_expired(
    site: Site,
) -> None:
    task = fake_hex_id("keep-stored")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults(status=404))
    assert phases(await site.backfill(task)) == {task: Phase.PARTIAL}
    stored = site.manifest(task)["tracks"][0]
    for name in (f"{task}-1.mp3", f"{task}-1.jpg"):  # track 1's URLs expire meanwhile
        site.sb.cdn.set_faults(name, FileFaults(status=404))
    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults())
    hits = dict(site.sb.cdn.hits)

    again = await site.backfill()

    assert again.complete
    track = site.manifest(task)["tracks"][0]  # and every file in the archive is named
    assert (track["audio"], track["image"]) == (stored["audio"], stored["image"])
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == hits[f"{task}-1.mp3"]  # not even asked for
    assert site.sb.cdn.hits[f"{task}-1.jpg"] == hits[f"{task}-1.jpg"]


async def test_retry_fetches_again_a_stored_file_removed_since(site: Site) -> None:
    task = fake_hex_id("removed-by-hand")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults(status=404))
    assert phases(await site.backfill(task)) == {task: Phase.PARTIAL}
    removed = site.archive / site.manifest(task)["tracks"][0]["audio"]["path"]
    removed.unlink()  # the manifest still names it
    site.sb.cdn.set_faults(f"{task}-2.mp3", FileFaults())

    again = await site.backfill()

    assert again.complete
    manifests = verify_archive(site.archive)  # every file named is there, with its hash
    assert manifests[task]["tracks"][0]["audio"]["path"] == str(removed.relative_to(site.archive))
    assert removed.is_file()


async def test_retry_after_a_missing_image_keeps_the_mp3_as_stored(site: Site) -> None:
    task = fake_hex_id("image-back")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-1.jpg", FileFaults(status=404))
    assert phases(await site.backfill(task)) == {task: Phase.PARTIAL}
    mp3 = site.manifest(task)["tracks"][0]["audio"]
    site.sb.cdn.set_faults(f"{task}-1.jpg", FileFaults())
    hits = site.sb.cdn.hits[f"{task}-1.mp3"]

    again = await site.backfill()

    # Tagged again, now with the cover, the MP3 would differ from the stored one: a conflict.
    assert again.complete
    track = site.manifest(task)["tracks"][0]
    assert track["audio"] == mp3 and track["image"]["sha256"]
    assert site.sb.cdn.hits[f"{task}-1.mp3"] == hits
    assert not ID3(site.archive / mp3["path"]).getall("APIC")  # its tags as first stored


async def test_an_mp3_archived_on_retry_embeds_the_image_stored_before(site: Site) -> None:
    task = fake_hex_id("cover-kept")
    site.sb.add_music(task)
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(status=404))
    assert phases(await site.backfill(task)) == {task: Phase.PARTIAL}
    image = site.manifest(task)["tracks"][0]["image"]
    site.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults())

    again = await site.backfill()

    assert again.complete
    track = site.manifest(task)["tracks"][0]
    assert track["image"] == image
    cover = ID3(site.archive / track["audio"]["path"]).getall("APIC")[0]
    assert cover.data == (site.archive / image["path"]).read_bytes()


async def test_finished_task_whose_last_audio_never_comes_is_partial_naming_the_track(
    site: Site,
) -> None:
    task = fake_hex_id("never-audio")
    site.sb.add_music(task, missing_audio=2)
    site.poll_time_scale = 0.002  # the ten minutes it is waited for take 1.2 s
    site.give_up_after_s = 30.0  # its deadline lies far beyond (four hours of schedule)

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    assert site.sb.api.total_calls <= 90  # about 80 polls in ten minutes, then archived
    doc = site.manifest(task)
    assert (doc["status"], doc["outcome"]) == ("SUCCESS", "partial")
    assert doc["tracks"][0]["audio"]["sha256"] and doc["tracks"][0]["image"]["sha256"]
    assert doc["tracks"][1]["audio"] is None and doc["tracks"][1]["image"] is None
    lacking = f"{task}/{audio_id(task, 2)}: the API gave no usable audio URL"
    assert report.not_archived[0].last_error == lacking
    assert lacking in format_summary(report, str(site.archive))


async def test_at_the_deadline_the_complete_tracks_are_archived_as_partial(site: Site) -> None:
    task = fake_hex_id("deadline")
    site.sb.add_music(task, missing_audio=2)
    site.give_up_after_s = 1.0  # 100 s of schedule: well before the ten-minute wait ends

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    doc = site.manifest(task)
    assert doc["outcome"] == "partial"
    assert doc["tracks"][0]["audio"]["sha256"] and doc["tracks"][1]["audio"] is None


async def test_a_name_holding_other_content_is_left_alone_and_reported(site: Site) -> None:
    task = fake_hex_id("taken")
    site.sb.add_music(task)
    taken = site.archive / task / f"{audio_id(task, 1)}.mp3"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"somebody else's song")

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.PARTIAL}
    assert taken.read_bytes() == b"somebody else's song"
    doc = json.loads((site.archive / task / "manifest.json").read_text(encoding="utf-8"))
    audio = doc["tracks"][0]["audio"]
    assert "path" not in audio and "already exists with other content" in audio["error"]
    assert doc["tracks"][1]["audio"]["sha256"]
    assert "already exists with other content" in format_summary(report, str(site.archive))


async def test_an_id_unknown_for_the_whole_window_is_not_found_after_it_not_before(
    site: Site,
) -> None:
    """Both endpoints are asked on a growing backoff (0.1, 0.2, 0.4 s … of the compressed
    schedule: 10, 20, 40 s) until tasks.not_found_after_s has passed since it was listed."""
    started = time.monotonic()
    with capture_logs() as logs:
        report = await site.backfill("no_such_task")

    assert time.monotonic() - started >= site.not_found_after_s
    assert phases(report) == {"no_such_task": Phase.NOT_FOUND}
    calls = dict(site.sb.api.calls)
    # 5 lookups at 0, 0.1, 0.3, 0.7 and 1 s; a slow machine may merge the last two
    polls = calls[("music", "no_such_task")]
    assert calls[("cover", "no_such_task")] == polls and 4 <= polls <= 5
    [ended] = [e for e in logs if e["event"] == "task_not_found"]
    assert ended["polls"] == polls and ended["after_s"] >= site.not_found_after_s
    assert len([e for e in logs if e["event"] == "task_unknown_yet"]) == polls - 1
    assert not site.archive.joinpath("no_such_task").exists()


async def test_unfinished_task_times_out(site: Site) -> None:
    task = fake_hex_id("slow")
    site.sb.add_music(task, ready_after_s=3600)
    site.give_up_after_s = 1.0

    report = await site.backfill(task)

    assert phases(report) == {task: Phase.TIMED_OUT}
    assert "not finished" in (report.not_archived[0].last_error or "")
    assert not site.archive.joinpath(task, "manifest.json").exists()


async def test_pending_task_is_waited_for_without_hammering_the_api(site: Site) -> None:
    task = fake_hex_id("pending")
    site.sb.add_music(task, ready_after_s=1.5, pending_data="empty")

    report = await site.backfill(task)

    assert report.complete
    # 1.5 s is 150 s of compressed schedule: a fixed 5 s poll would have taken 30 calls.
    assert site.sb.api.total_calls <= 12


async def test_the_endpoint_found_for_a_bare_id_is_asked_from_then_on(site: Site) -> None:
    task = fake_hex_id("bare-cover")
    site.sb.add_cover(task, ready_after_s=1.5)  # pending for 150 s of schedule

    report = await site.backfill(task)

    assert report.complete
    assert site.sb.api.calls[("cover", task)] >= 4
    assert site.sb.api.calls[("music", task)] == 1  # only the first lookup tried it


async def test_bad_key_ends_backfill(site: Site) -> None:
    site.api_key = "wrong-key"
    with pytest.raises(AuthError) as caught:
        await site.backfill(fake_hex_id("any"))
    assert "wrong-key" not in str(caught.value)
