"""WAV, stems, MP4, MIDI and lyrics tasks end to end: `backfill` in process, against the
stand-in API over loopback HTTP (the daemon's side: test_kinds_daemon.py)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from backfills import Site as BackfillSite
from prometheus_client.exposition import generate_latest

from archiver.cli.status import format_status, read_status, status_json
from archiver.config import DownloadConfig
from archiver.kinds import PROBE_ORDER
from archiver.kinds.records import Kind
from archiver.sandbox import fake_hex_id
from archiver.service.metrics import Metrics
from archiver.state.store import StateStore
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase

OUTPUT_KINDS = ("wav", "stems", "mp4", "midi", "lyrics")
# What each kind's stand-in task yields by default: file name in the task folder → role.
EXPECTED = {
    "wav": {"wav.wav": "wav"},
    "stems": {
        "instrumental.mp3": "instrumental",
        "vocals.mp3": "vocals",
        "origin-1-vocals.mp3": "origin",
        "origin-2-instrumental.mp3": "origin",
    },
    "mp4": {"video.mp4": "video"},
    "midi": {"midi.json": "midi"},
    "lyrics": {"lyrics-1.txt": "lyrics", "lyrics-2.txt": "lyrics", "lyrics.json": "lyrics"},
}
FAILURES = [
    ("wav", "CREATE_TASK_FAILED"),
    ("wav", "GENERATE_WAV_FAILED"),
    ("stems", "GENERATE_AUDIO_FAILED"),
    ("mp4", "GENERATE_MP4_FAILED"),
    ("midi", "CREATE_TASK_FAILED"),  # successFlag 2
    ("midi", "GENERATE_MIDI_FAILED"),  # successFlag 3
    ("lyrics", "GENERATE_LYRICS_FAILED"),
    ("lyrics", "SENSITIVE_WORD_ERROR"),
]


def files_of(doc: dict[str, Any]) -> dict[str, str]:
    return {Path(entry["path"]).name: entry["role"] for entry in doc["files"]}


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
async def test_a_task_waits_then_finishes_and_is_archived(site: BackfillSite, kind: str) -> None:
    task = fake_hex_id(f"{kind}:happy")
    site.sb.add_output(kind, task, ready_after_s=0.5)  # 50 s of schedule: polled while pending

    report = await site.backfill(f"{kind}:{task}")

    assert report.complete and report.total == 1
    assert site.sb.api.calls[(kind, task)] >= 2  # seen waiting, then finished
    doc = site.manifest(task)
    assert (doc["kind"], doc["outcome"], doc["error"]) == (kind, "archived", None)
    assert files_of(doc) == EXPECTED[kind]
    assert doc["raw"]["taskId"] == task


@pytest.mark.parametrize("kind", ["wav", "stems", "mp4"])
async def test_the_manifest_files_are_the_served_bytes(site: BackfillSite, kind: str) -> None:
    task = fake_hex_id(f"{kind}:bytes")
    site.sb.add_output(kind, task, create_time="ms")
    await site.backfill(f"{kind}:{task}")
    for entry in site.manifest(task)["files"]:
        served = site.source_bytes(entry["source_url"].rpartition("/")[2])
        assert entry["sha256"] == hashlib.sha256(served).hexdigest()
        assert entry["bytes"] == len(served)
        assert (site.archive / entry["path"]).read_bytes() == served


async def test_inline_data_is_stored_as_the_api_gave_it(site: BackfillSite) -> None:
    midi, lyrics = fake_hex_id("midi:inline"), fake_hex_id("lyrics:inline")
    site.sb.add_output("midi", midi, create_time="ms")
    site.sb.add_output("lyrics", lyrics, variants=3)
    await site.backfill(f"midi:{midi}", f"lyrics:{lyrics}")

    doc = site.manifest(midi)
    stored = json.loads((site.archive / midi / "midi.json").read_text(encoding="utf-8"))
    assert stored == doc["raw"]["midiData"] and stored["instruments"][0]["name"] == "Drums"
    assert doc["files"][0]["content_type"] == "application/json"
    assert doc["files"][0]["source_url"] is None  # written from the record, not downloaded

    doc = site.manifest(lyrics)
    variants = doc["raw"]["response"]["data"]
    assert files_of(doc) == {
        "lyrics-1.txt": "lyrics",
        "lyrics-3.txt": "lyrics",
        "lyrics.json": "lyrics",
    }
    assert (site.archive / lyrics / "lyrics-3.txt").read_text(encoding="utf-8") == variants[2][
        "text"
    ]
    assert json.loads((site.archive / lyrics / "lyrics.json").read_bytes()) == variants


@pytest.mark.parametrize(("kind", "status"), FAILURES)
async def test_a_failed_task_gets_a_manifest_with_the_api_error(
    site: BackfillSite, kind: str, status: str
) -> None:
    task = fake_hex_id(f"{kind}:{status}")
    site.sb.add_output(kind, task, fail_status=status)

    report = await site.backfill(f"{kind}:{task}")

    assert report.not_archived[0].phase is Phase.FAILED
    doc = site.manifest(task)
    assert (doc["status"], doc["outcome"], doc["files"]) == (status, "failed", [])
    assert doc["error"] == {"code": 501, "message": "Generation failed"}


async def test_split_stems_archive_every_stem_and_skip_the_null_ones(site: BackfillSite) -> None:
    task = fake_hex_id("stems:split")
    site.sb.add_output("stems", task, stems_type="split_stem")
    await site.backfill(f"stems:{task}")
    roles = files_of(site.manifest(task))
    assert "instrumental.mp3" not in roles  # null in a split_stem answer
    assert roles["backing_vocals.mp3"] == "backing_vocals" and roles["woodwinds.mp3"] == "woodwinds"
    assert len(roles) == 13  # 12 stems and the one originData entry


@pytest.mark.parametrize(
    ("kind", "wrong", "reason"),
    [
        ("wav", "mp3", "got mp3, not wav"),  # an MP3 behind a .wav URL
        ("wav", "html", "HTML"),
        ("mp4", "html", "HTML"),
        ("stems", "html", "HTML"),
    ],
)
async def test_a_body_that_is_not_the_kind_s_media_is_never_stored(
    site: BackfillSite, kind: str, wrong: str, reason: str
) -> None:
    task = fake_hex_id(f"{kind}:{wrong}")
    site.sb.add_output(kind, task, wrong_body=wrong)
    site.download = DownloadConfig(attempts=1)  # an HTML page may pass: retried by the engine

    report = await site.backfill(f"{kind}:{task}")

    assert report.not_archived[0].phase is Phase.PARTIAL
    assert reason.lower() in (report.not_archived[0].last_error or "").lower()
    doc = site.manifest(task)
    assert doc["outcome"] == "partial"
    assert all("error" in entry and "path" not in entry for entry in doc["files"])
    assert sorted(p.name for p in (site.archive / task).iterdir()) == ["manifest.json"]


async def test_success_without_a_file_ends_partial(site: BackfillSite) -> None:
    task = fake_hex_id("wav:nofile")
    site.sb.add_output("wav", task, no_file=True)
    site.poll_time_scale = 0.002  # the 600 s it waits for the file take 1.2 s
    report = await site.backfill(f"wav:{task}")
    assert report.not_archived[0].phase is Phase.PARTIAL
    assert "the API gave no file" in (report.not_archived[0].last_error or "")


async def test_callback_exception_with_its_file_is_archived(site: BackfillSite) -> None:
    task = fake_hex_id("mp4:callback")
    site.sb.add_output("mp4", task, callback_exception=True)
    report = await site.backfill(f"mp4:{task}")
    assert report.complete and report.total == 1
    assert site.manifest(task)["status"] == "CALLBACK_EXCEPTION"


async def test_a_bare_id_of_each_kind_is_found_and_its_kind_remembered(site: BackfillSite) -> None:
    tasks = {kind: fake_hex_id(f"{kind}:bare") for kind in OUTPUT_KINDS}
    for kind, task in tasks.items():
        site.sb.add_output(kind, task, ready_after_s=1.0)  # polled a few times after the lookup

    report = await site.backfill(*tasks.values())

    assert report.complete
    with StateStore.open(site.state) as store:
        known = store.get_many(list(tasks.values()))
    for kind, task in tasks.items():
        assert known[task].kind is Kind(kind)
        assert site.manifest(task)["kind"] == kind
        earlier = PROBE_ORDER[: PROBE_ORDER.index(Kind(kind))]
        assert all(site.sb.api.calls[(str(e), task)] == 1 for e in earlier)  # asked once only
        assert site.sb.api.calls[(kind, task)] >= 2


async def test_a_rerun_asks_and_fetches_nothing(site: BackfillSite) -> None:
    lines = []
    for kind in OUTPUT_KINDS:
        task = fake_hex_id(f"{kind}:rerun")
        site.sb.add_output(kind, task)
        lines.append(f"{kind}:{task}")
    await site.backfill(*lines)
    calls, hits = site.sb.api.total_calls, sum(site.sb.cdn.hits.values())

    report = await site.backfill()

    assert report.complete
    assert (site.sb.api.total_calls, sum(site.sb.cdn.hits.values())) == (calls, hits)


async def test_a_deleted_state_trusts_the_manifests_of_every_kind(site: BackfillSite) -> None:
    task = fake_hex_id("stems:adopt")
    site.sb.add_output("stems", task)
    await site.backfill(f"stems:{task}")
    site.state.unlink()
    calls = site.sb.api.total_calls

    report = await site.backfill(task)  # bare: the manifest says which kind it is

    assert report.complete and site.sb.api.total_calls == calls
    with StateStore.open(site.state) as store:
        assert store.get_many([task])[task].kind is Kind.STEMS


async def test_status_and_metrics_count_tasks_by_kind(site: BackfillSite) -> None:
    lines = []
    for kind in ("wav", "wav", "midi"):
        task = fake_hex_id(f"{kind}:count:{len(lines)}")
        site.sb.add_output(kind, task)
        lines.append(f"{kind}:{task}")
    site.sb.add_music("song")
    report = await site.backfill(*lines, "song")

    status = read_status(site.state)
    assert status.kinds == {"music": 1, "wav": 2, "midi": 1}  # in the registry's order
    assert "by kind: 1 music, 2 wav, 1 midi" in format_status(status)
    assert status_json(status)["kinds"] == status.kinds

    assert report.complete
    with StateStore.open(site.state) as store:  # the engine's counts, as the daemon has them
        saved = store.get_many([line.partition(":")[2] for line in lines] + ["song"])
    by_kind = Counter((t.kind.value if t.kind else UNKNOWN_KIND, t.phase) for t in saved.values())
    metrics = Metrics()
    metrics.bind(dict, lambda: by_kind, lambda: 0)
    body = generate_latest(metrics.registry).decode()
    assert 'suno_archiver_tasks_by_kind{kind="wav",phase="archived"} 2.0' in body
    assert 'suno_archiver_tasks_by_kind{kind="lyrics",phase="archived"} 0.0' in body
    assert 'kind="unknown"' not in body  # only when some listed ID is of no known kind yet
