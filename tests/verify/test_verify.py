"""`verify` of a local archive made by a real `backfill`, damaged the ways disks and people
damage archives; each damage is reported with its category and the exit code says so."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from clirun import assert_one_line_error
from verifying import Archive, flip_byte, problem_lines

from archiver.sandbox import fake_hex_id


async def test_an_intact_archive_exits_0_and_says_what_it_read(archive: Archive) -> None:
    result = await archive.verify()

    assert result.code == 0, result.stdout + result.stderr
    summary = result.stdout.strip()
    assert summary.startswith(f"{archive.root}: intact (3 manifests, ")
    assert "Traceback" not in result.stderr


async def test_a_flipped_byte_is_corrupt(archive: Archive) -> None:
    flip_byte(archive.audio(archive.tasks[0]))

    result = await archive.verify()

    assert result.code == 1
    rel = archive.audio(archive.tasks[0]).relative_to(archive.root).as_posix()
    assert problem_lines(result) == [
        f"corrupt          {rel}  sha256 {_sha(archive.audio(archive.tasks[0]))}, "
        f"the manifest says {archive.manifest(archive.tasks[0])['tracks'][0]['audio']['sha256']}"
    ]
    assert "1 problems: 1 corrupt" in result.stdout


async def test_a_truncated_file_is_corrupt_by_its_size(archive: Archive) -> None:
    image = archive.image(archive.tasks[1])
    size = image.stat().st_size
    os.truncate(image, size // 2)

    result = await archive.verify()

    assert result.code == 1
    [line] = problem_lines(result)
    assert line.startswith("corrupt ") and f"{size // 2} bytes, the manifest says {size}" in line


async def test_a_deleted_file_is_missing(archive: Archive) -> None:
    audio = archive.audio(archive.tasks[0], 1)
    audio.unlink()

    result = await archive.verify()

    assert result.code == 1
    rel = audio.relative_to(archive.root).as_posix()
    assert problem_lines(result) == [
        f"missing          {rel}  named by {archive.tasks[0]}/manifest.json"
    ]


async def test_a_deleted_manifest_is_no_manifest_for_the_state(archive: Archive) -> None:
    task = archive.tasks[1]
    (archive.root / task / "manifest.json").unlink()

    result = await archive.verify()

    assert result.code == 1
    [line] = problem_lines(result)
    assert line.startswith(f"no-manifest      {task}  the state says archived")
    assert "(4 files in its folder)" in line  # its files are said once, not as four strays


async def test_a_manifest_naming_another_task_is_corrupt(archive: Archive) -> None:
    a, b = archive.tasks[0], archive.tasks[1]
    copied = (archive.root / a / "manifest.json").read_bytes()
    (archive.root / b / "manifest.json").write_bytes(copied)

    result = await archive.verify("--json")

    assert result.code == 1
    doc = json.loads(result.stdout)
    assert doc["intact"] is False and doc["counts"]["corrupt"] == 1
    [problem] = doc["problems"]
    assert problem["category"] == "corrupt" and problem["path"] == f"{b}/manifest.json"
    assert repr(a) in problem["detail"]


async def test_an_unreadable_manifest_is_corrupt(archive: Archive) -> None:
    task = archive.tasks[2]
    (archive.root / task / "manifest.json").write_text("{not json", encoding="utf-8")

    result = await archive.verify()

    assert result.code == 1
    [line] = problem_lines(result)
    assert line.startswith(f"corrupt          {task}/manifest.json  unreadable: ")


async def test_strays_and_old_temp_files_are_reported_but_the_archivers_own_files_are_not(
    archive: Archive,
) -> None:
    root = archive.root
    (root / archive.tasks[0] / "notes.txt").write_text("mine")
    (root / "loose.mp3").write_bytes(b"x")
    (root / "holiday").mkdir()
    (root / "holiday" / "a.jpg").write_bytes(b"y")
    temp = root / ".suno-archiver-tmp"
    old, young = temp / ".part-old", temp / ".part-young"
    old.write_bytes(b"z" * 10)
    young.write_bytes(b"z")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(temp / ".suno-archiver.lock", (two_days_ago, two_days_ago))
    own = ("index.html", "playlist.m3u8", "browse/shards.js", "browse/t/00007.js")
    for name in (*own, "playlists/00007.m3u8"):  # the browse files, more than written
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / ".suno-archiver-quarantine" / archive.tasks[1]).mkdir(parents=True)
    (root / ".suno-archiver-quarantine" / archive.tasks[1] / "x.mp3").write_bytes(b"q")

    result = await archive.verify()

    assert result.code == 1
    assert problem_lines(result) == [
        "stray            .suno-archiver-tmp/.part-old  temp file left by a run 2 days ago",
        f"stray            {archive.tasks[0]}/notes.txt  no manifest names it",
        "stray            holiday/a.jpg  no manifest names it",
        "stray            loose.mp3  no manifest names it",
    ]
    assert "4 problems: 4 stray" in result.stdout


async def test_a_lost_state_makes_every_manifest_unknown_until_reindex(archive: Archive) -> None:
    archive.state.unlink()

    result = await archive.verify()

    assert result.code == 1
    lines = problem_lines(result)
    assert [line.split()[0] for line in lines] == ["unknown-to-state"] * 3
    assert "no state found" in result.stdout

    reindexed = await archive.cli.run("reindex")
    assert reindexed.code == 0, reindexed.stderr
    assert reindexed.stdout.startswith(
        f"3 manifests in {archive.root} → {archive.state}: 3 archived"
    )
    assert (await archive.verify()).code == 0
    await assert_backfill_asks_nothing(archive)


async def test_an_archive_copied_elsewhere_is_adopted_by_reindex(
    archive: Archive, tmp_path: Path
) -> None:
    shutil.copytree(archive.root, tmp_path / "copy", ignore=shutil.ignore_patterns(".suno*"))
    archive.cli.write_config('[storage]\npath = "copy"\n')
    archive.root, archive.state = tmp_path / "copy", tmp_path / "copy.state.sqlite3"

    before = await archive.verify()
    reindexed = await archive.cli.run("reindex")
    after = await archive.verify()

    assert before.code == 1 and len(problem_lines(before)) == 3
    assert reindexed.code == 0 and after.code == 0, after.stdout
    await assert_backfill_asks_nothing(archive)


async def test_reindex_sets_tasks_whose_manifest_is_gone_back_to_pending(archive: Archive) -> None:
    task = archive.tasks[0]
    (archive.root / task / "manifest.json").unlink()
    (archive.root / archive.tasks[1] / "manifest.json").write_text("{}")

    result = await archive.cli.run("reindex")

    assert result.code == 1  # an unreadable manifest was left out
    assert f"corrupt          {archive.tasks[1]}/manifest.json  unreadable" in result.stdout
    assert "1 tasks the state had as archived have no manifest" in result.stdout
    with sqlite3.connect(archive.state) as db:
        phases = dict(db.execute("SELECT task_id, phase FROM tasks"))
    assert phases == {task: "pending", archive.tasks[1]: "archived", archive.tasks[2]: "archived"}
    backfill = await archive.cli.run("backfill", str(archive.cli.ids(*archive.tasks)))
    assert backfill.code == 0  # archived again (its files were still there: no conflict)
    assert (archive.root / task / "manifest.json").exists()


async def assert_backfill_asks_nothing(archive: Archive) -> None:
    calls = archive.cli.sb.api.total_calls
    result = await archive.cli.run("backfill", str(archive.cli.ids(*archive.tasks)))
    assert result.code == 0 and "3 of 3 tasks archived" in result.stdout
    assert archive.cli.sb.api.total_calls == calls


async def test_a_state_that_lies_is_no_manifest(archive: Archive) -> None:
    ghost = fake_hex_id("verify:ghost")
    with sqlite3.connect(archive.state) as db:
        db.execute(
            "INSERT INTO tasks (task_id, phase, first_seen_at, next_poll_at, updated_at) "
            "VALUES (?, 'archived', 0, 0, 0)",
            (ghost,),
        )

    result = await archive.verify()

    assert result.code == 1
    assert problem_lines(result) == [
        f"no-manifest      {ghost}  the state says archived, storage has no manifest"
    ]


async def test_task_ids_limit_the_check_to_those_tasks(archive: Archive) -> None:
    flip_byte(archive.audio(archive.tasks[0]))
    (archive.root / "loose.mp3").write_bytes(b"x")

    clean = await archive.verify(archive.tasks[1])
    dirty = await archive.verify(archive.tasks[0], archive.tasks[1])
    absent = await archive.verify(fake_hex_id("verify:never"))

    assert clean.code == 0 and "intact (1 manifests" in clean.stdout
    assert dirty.code == 1 and [line.split()[0] for line in problem_lines(dirty)] == ["corrupt"]
    assert absent.code == 1 and "asked for, storage has no manifest" in absent.stdout


async def test_bad_usage_exits_2_with_one_line(archive: Archive) -> None:
    assert_one_line_error(await archive.verify("not/an-id"), "not a task ID")
    archive.cli.write_config('[storage]\npath = "nowhere"\n')
    assert_one_line_error(await archive.verify(), "nowhere", "no archive folder")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
