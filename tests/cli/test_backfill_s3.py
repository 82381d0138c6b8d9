"""`backfill` end to end into a bucket (moto's server mode) from the stand-in API."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from archive_checks import file_entries
from buckets import PREFIX, VIEW_TYPES, Bucket, add_tasks, make_config, verify_bucket
from clirun import Cli, assert_one_line_error
from s3server import Gate, MotoServer
from structlog.testing import capture_logs

import archiver.storage.s3client as s3client
import archiver.storage.s3objects as s3objects
from archiver.cli.backfill import backfill
from archiver.config import StorageConfig
from archiver.errors import InternalError, StorageAccessError
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase


def is_view(key: str) -> bool:
    return key.removeprefix(PREFIX + "/") in VIEW_TYPES


UPLOADS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def bucket(server: MotoServer, request: pytest.FixtureRequest) -> Any:
    """A new bucket; returns a plain boto3 client's view of it."""
    name = "bf-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    client = boto3.session.Session().client("s3", endpoint_url=server.url)
    client.create_bucket(Bucket=name)
    return Bucket(client, name)


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every upload request (PUT, part, multipart start/complete) the archiver's S3 clients
    send, by operation name."""
    seen: list[str] = []
    real = s3client.build_client

    def counting_client(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)

        def record(event_name: str, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            if operation in UPLOADS:
                seen.append(operation)

        client.meta.events.register("before-send.s3", record)
        return client

    monkeypatch.setattr(s3client, "build_client", counting_client)
    return seen


async def test_backfill_into_a_bucket_then_a_rerun_uploads_nothing(
    tmp_path: Path, sandbox: Sandbox, server: MotoServer, bucket: Bucket, uploads: list[str]
) -> None:
    ids, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, bucket.name)

    report = await backfill(config, ids_file, retry_base_s=0.1)
    assert report.complete, [(t.task_id, t.phase, t.last_error) for t in report.not_archived]
    manifests = verify_bucket(bucket, tmp_path)
    assert sorted(manifests) == sorted(ids)
    assert all(doc["outcome"] == "archived" for doc in manifests.values())
    files = sum(len(file_entries(doc)) for doc in manifests.values())
    assert files == 10  # two music tasks of two tracks (audio + image), one cover of two
    # small files: no multipart; then the browse files
    assert uploads == ["PutObject"] * (files + len(ids) + len(VIEW_TYPES))
    before = bucket.versions()

    uploads.clear()
    report = await backfill(config, ids_file, retry_base_s=0.1)
    assert report.complete
    assert uploads == []
    assert bucket.versions() == before

    # The state lost: the manifests in the bucket are trusted, nothing goes up again but
    # the browse files, whose rows in the state were lost too.
    config.state.path.unlink()
    report = await backfill(config, ids_file, retry_base_s=0.1)
    assert report.complete
    assert uploads == ["PutObject"] * len(VIEW_TYPES)
    after = bucket.versions()
    assert {k: v for k, v in after.items() if not is_view(k)} == {
        k: v for k, v in before.items() if not is_view(k)
    }


async def test_a_task_archived_again_finds_its_files_already_there(
    tmp_path: Path, sandbox: Sandbox, server: MotoServer, bucket: Bucket, uploads: list[str]
) -> None:
    """No state and no manifest, but the files are in the bucket (a run killed just before
    the manifest): they are recognised by their SHA-256, and only the manifest goes up."""
    ids, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, bucket.name)
    assert (await backfill(config, ids_file, retry_base_s=0.1)).complete
    files_before = {
        k: v for k, v in bucket.versions().items() if "manifest" not in k and not is_view(k)
    }

    config.state.path.unlink()
    for task_id in ids:
        bucket.client.delete_object(Bucket=bucket.name, Key=f"{PREFIX}/{task_id}/manifest.json")
    uploads.clear()
    report = await backfill(config, ids_file, retry_base_s=0.1)
    assert report.complete, [(t.task_id, t.phase, t.last_error) for t in report.not_archived]
    assert uploads == ["PutObject"] * (3 + len(VIEW_TYPES))  # the manifests, then the views
    verify_bucket(bucket, tmp_path)
    after = bucket.versions().items()
    assert {k: v for k, v in after if "manifest" not in k and not is_view(k)} == files_before


async def test_an_upload_that_cannot_be_confirmed_leaves_no_manifest(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task_id = fake_hex_id("s3:unconfirmed")
    sandbox.add_music(task_id, title="Never Confirmed")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(task_id + "\n", encoding="utf-8")
    real_head = s3objects.S3Objects.head

    def short_head(self: s3objects.S3Objects, full: str) -> dict[str, Any] | None:
        head = real_head(self, full)
        if head is not None and full.endswith(".mp3"):
            head = {**head, "ContentLength": head["ContentLength"] - 1}
        return head

    monkeypatch.setattr(s3objects.S3Objects, "head", short_head)
    config = make_config(tmp_path, sandbox, server.url, bucket.name, give_up_after_s=3.0)
    report = await backfill(config, ids_file, retry_base_s=0.2)
    assert not report.complete
    (task,) = report.not_archived
    assert task.phase is Phase.TIMED_OUT
    assert "upload not confirmed" in (task.last_error or "")
    assert not [k for k in bucket.objects() if k.endswith("manifest.json")]
    assert not [k for k in bucket.objects() if k.endswith(".mp3")]  # removed, not left half-trusted


async def test_a_missing_bucket_ends_backfill_with_an_access_error(
    tmp_path: Path, sandbox: Sandbox, server: MotoServer
) -> None:
    _, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, "no-such-bucket")
    with pytest.raises(StorageAccessError, match=r"'no-such-bucket'.*does not exist"):
        await backfill(config, ids_file, retry_base_s=0.1)
    assert sandbox.api.total_calls == 0  # the bucket is checked before any work


async def test_the_s3_store_unreachable_mid_run_then_back(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store becomes unreachable at the first upload (the path to it is cut: connections
    reset, new ones refused) and reachable again a little later, buckets intact: the failed
    uploads are retried by the engine and the backfill completes."""
    loop = asyncio.get_running_loop()
    gate = Gate(server.port)
    await gate.open()
    real = s3client.build_client
    reopened: list[concurrent.futures.Future[None]] = []

    async def reopen_later() -> None:
        await asyncio.sleep(1.5)
        await gate.open()

    def cut_at_first_upload(**_: Any) -> None:
        if not reopened:
            asyncio.run_coroutine_threadsafe(gate.close(), loop).result()
            reopened.append(asyncio.run_coroutine_threadsafe(reopen_later(), loop))

    def quick_client(config: StorageConfig, **_: Any) -> Any:
        client = real(config, max_attempts=2, connect_timeout_s=2, read_timeout_s=10)
        client.meta.events.register("before-send.s3.PutObject", cut_at_first_upload)
        return client

    monkeypatch.setattr(s3client, "build_client", quick_client)
    try:
        _, ids_file = add_tasks(sandbox, tmp_path)
        config = make_config(tmp_path, sandbox, gate.url, bucket.name)
        with capture_logs() as logs:
            report = await backfill(config, ids_file, retry_base_s=0.2)
        assert reopened and reopened[0].done()
        retried = [e["error"] for e in logs if e["event"] == "task_retry_later"]
        assert retried and all("s3://" in error for error in retried), retried
        assert report.complete, [(t.task_id, t.phase, t.last_error) for t in report.not_archived]
        with StateStore.open(config.state.path) as state:  # attempts reset once archived
            assert state.connection.execute("SELECT SUM(attempts) FROM tasks").fetchone() == (0,)
        verify_bucket(bucket, tmp_path)
    finally:
        if reopened:
            await asyncio.wrap_future(reopened[0])
        await gate.close()


@pytest.mark.parametrize(
    ("storage", "env", "needles"),
    [
        ("", {"AWS_PROFILE": "nosuch"}, ["'bf-cli'", "nosuch", "could not be found"]),
        ('region = "eu_west!"\n', {}, ["[storage] region", '"eu_west!"']),
        ('bucket = "a:b!c"\n', {}, ["[storage] bucket", '"a:b!c"']),
    ],
    ids=["unknown-profile", "bad-region", "bad-bucket"],
)
async def test_unusable_aws_settings_end_backfill_with_one_line(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    storage: str,
    env: dict[str, str],
    needles: list[str],
) -> None:
    cli = Cli(sandbox, tmp_path)
    cli.env.update(env)
    cli.write_config(
        f'[storage]\nbackend = "s3"\nendpoint_url = "{server.url}"\n'
        + (storage if "bucket" in storage else f'bucket = "bf-cli"\n{storage}')
    )
    result = await cli.run("backfill", str(cli.ids(fake_hex_id("s3:cli"))))
    assert_one_line_error(result, *needles)
    assert sandbox.api.total_calls == 0


async def test_a_bug_under_the_storage_ends_backfill_at_once(
    tmp_path: Path,
    sandbox: Sandbox,
    server: MotoServer,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A programming error (here a broken head_object of the boto3 client) is not a transient
    fault: backfill ends with it, in one line naming the task, instead of retrying every task
    until tasks.give_up_after_s."""
    real = s3client.build_client

    def broken_client(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)

        def broken_head(**_: Any) -> None:
            raise TypeError("broken head_object")

        client.head_object = broken_head  # this client instance only
        return client

    monkeypatch.setattr(s3client, "build_client", broken_client)
    ids, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, bucket.name)

    with capture_logs() as logs, pytest.raises(InternalError) as raised:
        await asyncio.wait_for(backfill(config, ids_file, retry_base_s=0.1), timeout=60)
    message = str(raised.value)
    assert "TypeError: broken head_object" in message and "\n" not in message
    assert any(task_id in message for task_id in ids)
    assert "task_step_crashed" in [e["event"] for e in logs]
    assert "task_retry_later" not in [e["event"] for e in logs]
    assert [k for k in bucket.objects() if not is_view(k)] == []


BROKEN_HEAD = """
import archiver.storage.s3client as s3client

real = s3client.build_client


def broken_client(*args, **kwargs):
    client = real(*args, **kwargs)

    def broken_head(**_):
        raise TypeError("broken head_object")

    client.head_object = broken_head
    return client


s3client.build_client = broken_client
"""


async def test_a_bug_under_the_storage_is_one_line_from_the_cli_exit_1(
    tmp_path: Path, sandbox: Sandbox, server: MotoServer, bucket: Bucket
) -> None:
    """The CLI process's boto3 client is broken by a sitecustomize on its PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BROKEN_HEAD, encoding="utf-8")
    cli = Cli(sandbox, tmp_path)
    cli.env["PYTHONPATH"] = str(site)
    cli.write_config(
        f'[storage]\nbackend = "s3"\nendpoint_url = "{server.url}"\nbucket = "{bucket.name}"\n'
        f'cache_dir = "{tmp_path / "cache"}"\n'
    )
    task_id = fake_hex_id("s3:bug")
    sandbox.add_music(task_id)
    result = await cli.run("backfill", str(cli.ids(task_id)))
    assert result.code == 1, result
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert "task_step_crashed" in [e["event"] for e in logged]  # with its traceback
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith("{")]
    assert lines == [  # and for the user, one line
        f"suno-archiver: error: task {task_id}: internal error: TypeError: broken head_object "
        "(a bug: the log has the traceback)"
    ], result.stderr
