"""`verify` of an archive a real `backfill` made in a bucket (moto's S3 server): HEADs, not
downloads, unless --read-data; every damage reported with its category."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from buckets import PREFIX, Bucket, add_tasks, make_config, new_bucket
from clirun import Cli

import archiver.storage.s3client as s3client
from archiver.cli.backfill import backfill
from archiver.config import Config
from archiver.sandbox import Sandbox
from archiver.verify import VerifyReport, verify_archive
from archiver.verify.repair import verify_and_repair

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 operation the archiver's clients send, by name."""
    seen: list[str] = []
    real = s3client.build_client

    def counting_client(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register(
            "before-send.s3", lambda event_name, **_: seen.append(event_name.rsplit(".", 1)[-1])
        )
        return client

    monkeypatch.setattr(s3client, "build_client", counting_client)
    return seen


class Site:
    def __init__(self, config: Config, bucket: Bucket, tasks: list[str]) -> None:
        self.config = config
        self.bucket = bucket
        self.tasks = tasks

    def manifest(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.bucket.get(f"{PREFIX}/{task_id}/manifest.json")[0])

    def audio_key(self, task_id: str) -> str:
        return f"{PREFIX}/{self.manifest(task_id)['tracks'][0]['audio']['path']}"

    async def verify(self, **kwargs: Any) -> VerifyReport:
        return await asyncio.to_thread(verify_archive, self.config, **kwargs)


@pytest.fixture
async def site(
    tmp_path: Path, sandbox: Sandbox, server: Any, request: pytest.FixtureRequest
) -> Site:
    bucket = new_bucket(server.url, request)
    tasks, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, bucket.name)
    report = await backfill(config, ids_file)
    assert report.complete
    return Site(config, bucket, tasks)


def categories(report: VerifyReport) -> list[tuple[str, str]]:
    return [(p.category.value, p.path) for p in report.problems]


async def test_an_intact_bucket_is_checked_by_head_without_downloading(
    site: Site, calls: list[str]
) -> None:
    report = await site.verify()

    assert report.intact, report.problems
    assert report.manifests == 3 and report.files == 10 and report.bytes_read == 0
    assert calls.count("HeadObject") == report.files
    assert calls.count("GetObject") == report.manifests  # the manifests only
    assert set(calls) <= {"HeadBucket", "ListObjectsV2", "HeadObject", "GetObject"}


async def test_read_data_downloads_and_hashes_every_file(site: Site, calls: list[str]) -> None:
    report = await site.verify(read_data=True)

    assert report.intact and report.bytes_read > 0
    assert calls.count("GetObject") == report.manifests + report.files
    assert "HeadObject" not in calls


async def test_an_object_overwritten_by_another_tool_is_corrupt(site: Site) -> None:
    key = site.audio_key(site.tasks[0])
    data = bytearray(site.bucket.get(key)[0])
    data[1000] ^= 1
    site.bucket.client.put_object(Bucket=site.bucket.name, Key=key, Body=bytes(data))

    report = await site.verify()

    rel = key.removeprefix(PREFIX + "/")
    assert categories(report) == [("corrupt", rel)]
    assert hashlib.sha256(data).hexdigest() in report.problems[0].detail


async def test_bytes_changed_under_our_metadata_need_read_data(site: Site) -> None:
    key = site.audio_key(site.tasks[0])
    data, head = site.bucket.get(key)
    changed = bytearray(data)
    changed[1000] ^= 1
    site.bucket.client.put_object(
        Bucket=site.bucket.name, Key=key, Body=bytes(changed), Metadata=head["Metadata"]
    )

    assert (await site.verify()).intact  # what the store says of it is all a HEAD shows
    report = await site.verify(read_data=True)
    assert categories(report) == [("corrupt", key.removeprefix(PREFIX + "/"))]


async def test_deletions_and_strays_in_a_bucket(site: Site) -> None:
    client, name = site.bucket.client, site.bucket.name
    audio = site.audio_key(site.tasks[0])
    client.delete_object(Bucket=name, Key=audio)
    client.delete_object(Bucket=name, Key=f"{PREFIX}/{site.tasks[1]}/manifest.json")
    for stray in ("loose.mp3", f"{site.tasks[2]}/notes.txt"):
        client.put_object(Bucket=name, Key=f"{PREFIX}/{stray}", Body=b"x")
    for own in (
        "index.html",
        "playlist.m3u8",
        "browse/shards.js",
        "browse/s/00000.js",
        "playlists/00000.m3u8",
        f".suno-archiver-quarantine/{site.tasks[0]}/a.mp3",
    ):
        client.put_object(Bucket=name, Key=f"{PREFIX}/{own}", Body=b"x")
    client.put_object(Bucket=name, Key="outside-the-prefix.txt", Body=b"x")

    report = await site.verify()

    assert sorted(categories(report)) == [
        ("missing", audio.removeprefix(PREFIX + "/")),
        ("no-manifest", site.tasks[1]),
        ("stray", f"{site.tasks[2]}/notes.txt"),
        ("stray", "loose.mp3"),
    ]


async def test_verify_from_the_command_line_on_s3(
    sandbox: Sandbox, tmp_path: Path, server: Any, request: pytest.FixtureRequest
) -> None:
    cli = Cli(sandbox, tmp_path)  # after aws_env: it copies the environment
    bucket = new_bucket(server.url, request)
    task = "s3cli"
    cli.sb.add_music(task)
    cli.write_config(
        f'[storage]\nbackend = "s3"\nbucket = "{bucket.name}"\nprefix = "suno/"\n'
        f'endpoint_url = "{server.url}"\nregion = "us-east-1"\n'
    )
    assert (await cli.run("backfill", str(cli.ids(task)))).code == 0

    result = await cli.run("verify", "--json")

    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["archive"] == f"s3://{bucket.name}/suno" and doc["intact"] and doc["files"] == 4


async def test_repair_in_a_bucket_copies_the_bad_object_aside_and_restores_it(site: Site) -> None:
    client, name = site.bucket.client, site.bucket.name
    key = site.audio_key(site.tasks[0])
    good, _ = site.bucket.get(key)
    bad = bytearray(good)
    bad[1000] ^= 1
    client.put_object(Bucket=name, Key=key, Body=bytes(bad))
    cover = f"{PREFIX}/{site.manifest(site.tasks[2])['images'][1]['path']}"
    client.delete_object(Bucket=name, Key=cover)

    repaired = await verify_and_repair(site.config)

    assert [a.what for a in repaired.actions] == ["quarantined", "restored", "restored"]
    assert repaired.final.intact, repaired.final.problems
    data, head = site.bucket.get(key)
    assert data == good and head["Metadata"]["sha256"] == hashlib.sha256(good).hexdigest()
    [kept] = [k for k in site.bucket.objects() if "/.suno-archiver-quarantine/" in k]
    assert kept.startswith(f"{PREFIX}/.suno-archiver-quarantine/") and kept.endswith(
        key.removeprefix(PREFIX)
    )
    assert site.bucket.get(kept)[0] == bytes(bad)
    assert (await site.verify()).intact
