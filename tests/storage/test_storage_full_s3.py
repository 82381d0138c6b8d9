"""A full bucket behaves as a full disk: the store's 507 (MinIO's XMinioStorageFull, here
answered for moto, which has no quotas) stops backfill with nothing recorded against any task;
a rerun once the store has room completes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from buckets import FULL_ANSWER, add_tasks, make_config, new_bucket, verify_bucket
from s3server import MotoServer

import archiver.storage.s3client as s3client
from archiver.cli.backfill import backfill
from archiver.errors import StorageFull
from archiver.sandbox import Sandbox
from archiver.storage.tempdir import TEMP_NAME
from archiver.tasks.taskstate import Phase

pytestmark = pytest.mark.usefixtures("aws_env")


class _Body:
    def stream(self, **_: Any) -> Any:
        yield FULL_ANSWER


class FullStore:
    """While `full`, every upload the archiver's clients send is answered 507."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        real = s3client.build_client

        def client(*args: Any, **kwargs: Any) -> Any:
            built = real(*args, **kwargs)
            for operation in ("PutObject", "UploadPart"):
                built.meta.events.register(f"before-send.s3.{operation}", self._answer)
            return built

        monkeypatch.setattr(s3client, "build_client", client)

    def _answer(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self.full:
            return None
        headers = {"Content-Type": "application/xml", "Content-Length": str(len(FULL_ANSWER))}
        return AWSResponse(request.url, 507, headers, _Body())


async def test_a_full_bucket_stops_backfill_with_nothing_recorded_and_a_rerun_completes(
    server: MotoServer,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    bucket = new_bucket(server.url, request)
    store = FullStore(monkeypatch)
    tasks, ids_file = add_tasks(sandbox, tmp_path)
    config = make_config(tmp_path, sandbox, server.url, bucket.name)

    report = await backfill(config, ids_file, retry_base_s=0.05)

    assert isinstance(report.stopped, StorageFull)
    assert f"s3://{bucket.name}: storage full" in str(report.stopped)
    assert "XMinioStorageFull" in str(report.stopped)
    assert report.not_archived and all(
        (t.phase, t.attempts, t.archive_attempts, t.last_error) == (Phase.PENDING, 0, 0, None)
        for t in report.not_archived
    )
    assert not [k for k in bucket.objects() if k.endswith("manifest.json")]
    temp = tmp_path / "cache" / TEMP_NAME
    assert sorted(p.name for p in temp.iterdir()) == [".suno-archiver.lock"]

    store.full = False
    report = await backfill(config, ids_file, retry_base_s=0.05)
    assert report.complete
    assert sorted(verify_bucket(bucket, tmp_path)) == sorted(tasks)
