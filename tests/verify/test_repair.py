"""`verify --repair` on a local archive made by a real `backfill`: what the stand-in API can
still serve is restored byte for byte, the bad copy is kept in quarantine, and what cannot be
restored is named, with the manifest left describing the file as archived."""

from __future__ import annotations

import json
import os
import sqlite3

from verifying import Archive, flip_byte, problem_lines

from archiver.kinds import media
from archiver.sandbox.cdn import FileFaults

QUARANTINE = ".suno-archiver-quarantine"


def cdn_name(entry: dict) -> str:
    return entry["source_url"].rsplit("/", 1)[1]


def quarantined(archive: Archive) -> dict[str, bytes]:
    root = archive.root / QUARANTINE
    return {
        p.relative_to(root).as_posix().split("/", 1)[1]: p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
    }


async def test_flipped_truncated_and_deleted_files_are_restored_and_the_bad_ones_kept(
    archive: Archive,
) -> None:
    task, other = archive.tasks[0], archive.tasks[2]
    before = {t: (archive.root / t / "manifest.json").read_bytes() for t in archive.tasks}
    audio, image = archive.audio(task), archive.image(task, 1)
    cover = archive.root / archive.manifest(other)["images"][0]["path"]
    good = {p: p.read_bytes() for p in (audio, image, cover)}
    flip_byte(audio)
    flipped = audio.read_bytes()
    os.truncate(image, 50)
    cover.unlink()
    calls = archive.cli.sb.api.total_calls

    result = await archive.verify("--repair")

    assert result.code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rel = {p: p.relative_to(archive.root).as_posix() for p in good}
    assert sum(line.startswith("quarantined") for line in lines) == 2
    for path in good:
        assert f"restored         {rel[path]}  fetched again: the same bytes as archived" in lines
        assert path.read_bytes() == good[path]  # re-tagged the same way: the very same bytes
    assert quarantined(archive) == {rel[audio]: flipped, rel[image]: good[image][:50]}
    assert archive.cli.sb.api.total_calls == calls + 2  # fresh URLs for the two tasks
    assert lines[-1].startswith(f"{archive.root}: intact")
    assert (archive.root / archive.tasks[1] / "manifest.json").read_bytes() == before[
        archive.tasks[1]
    ]
    assert (await archive.verify()).code == 0


async def test_a_file_the_vendor_no_longer_serves_is_listed_and_the_manifest_kept(
    archive: Archive,
) -> None:
    task = archive.tasks[0]
    entry = archive.manifest(task)["tracks"][0]["audio"]
    archive.cli.sb.cdn.set_faults(cdn_name(entry), FileFaults(status=403))
    manifest = (archive.root / task / "manifest.json").read_bytes()
    archive.audio(task).unlink()

    result = await archive.verify("--repair")

    assert result.code == 1
    assert f"not-repaired     {entry['path']}  " in result.stdout and "403" in result.stdout
    assert [line.split()[0] for line in problem_lines(result)] == ["missing"]
    assert (archive.root / task / "manifest.json").read_bytes() == manifest


async def test_other_bytes_from_the_vendor_are_a_conflict_not_a_replacement(
    archive: Archive,
) -> None:
    task = archive.tasks[1]
    entry = archive.manifest(task)["tracks"][1]["audio"]
    archive.cli.sb.cdn.add(
        cdn_name(entry), media.sample_mp3(3.0, seed=99), content_type="audio/mpeg"
    )
    flip_byte(archive.root / entry["path"])

    result = await archive.verify("--repair")

    assert result.code == 1
    assert "a conflict, left as is" in result.stdout
    assert not (archive.root / entry["path"]).exists()  # the bad copy is in quarantine only
    assert entry["path"] in quarantined(archive)
    assert archive.manifest(task)["tracks"][1]["audio"] == entry


async def test_the_state_follows_the_archive(archive: Archive) -> None:
    gone, unknown = archive.tasks[0], archive.tasks[1]
    (archive.root / gone / "manifest.json").unlink()
    with sqlite3.connect(archive.state) as db:
        db.execute("DELETE FROM tasks WHERE task_id = ?", (unknown,))

    result = await archive.verify("--repair", "--json")

    assert result.code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert {(a["action"], a["path"]) for a in doc["repair"]} == {
        ("pending", gone),
        ("indexed", f"{unknown}/manifest.json"),
    }
    with sqlite3.connect(archive.state) as db:
        phases = dict(db.execute("SELECT task_id, phase FROM tasks"))
    assert phases[gone] == "pending" and phases[unknown] == "archived"
    backfill = await archive.cli.run("backfill", str(archive.cli.ids(*archive.tasks)))
    assert backfill.code == 0 and (archive.root / gone / "manifest.json").exists()
    assert (await archive.verify()).code == 0


async def test_a_manifest_of_another_task_is_quarantined_and_the_task_archived_again(
    archive: Archive,
) -> None:
    a, b = archive.tasks[0], archive.tasks[1]
    mine = archive.manifest(b)
    (archive.root / b / "manifest.json").write_bytes(
        (archive.root / a / "manifest.json").read_bytes()
    )

    result = await archive.verify("--repair")

    assert result.code == 0, result.stdout
    assert f"restored         {b}/manifest.json  archived again: archived" in result.stdout
    again = archive.manifest(b)
    assert again["task_id"] == b and again["tracks"] == mine["tracks"]
    assert json.loads(quarantined(archive)[f"{b}/manifest.json"])["task_id"] == a


async def test_repair_beside_a_running_archiver_says_so(archive: Archive) -> None:
    from archiver.state.store import StateStore

    archive.audio(archive.tasks[0]).unlink()
    with StateStore.open(archive.state):
        result = await archive.verify("--repair")

    assert result.code == 2 and "another suno-archiver is using this state" in result.stderr
