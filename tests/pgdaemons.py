"""Several `run` daemons on one PostgreSQL state and one bucket: each daemon's work folder
(`Member`), and what the tests of tests/state wait for and look at."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from buckets import PREFIX, Bucket
from daemons import free_port
from s3daemons import RETRY_BASE_S, S3Daemon

from archiver.sandbox import Sandbox

LEASE_S = 5.0
TOKEN = "intake-token-0123456789abcdef"


class Member:
    """One daemon's work folder: its config (shared state and bucket), its list, its cache."""

    def __init__(
        self,
        root: Path,
        sandbox: Sandbox,
        endpoint: str,
        bucket: Bucket,
        url: str,
        *,
        listen: bool = False,
    ) -> None:
        self.root = root
        # only where a test asks them: a free port picked here may be taken by the time the
        # daemon binds it, and three daemons with two each make that likelier
        self.metrics = f"127.0.0.1:{free_port()}" if listen else ""
        self.intake = f"127.0.0.1:{free_port()}" if listen else ""
        root.mkdir(parents=True)
        (root / "archive.toml").write_text(
            f"""
[api]
base_url = "{sandbox.base_url}"
api_key = "sandbox-key"
requests_per_second = 50
[tasks]
list = "tasks.txt"
give_up_after_s = 600
[storage]
backend = "s3"
bucket = "{bucket.name}"
prefix = "{PREFIX}"
endpoint_url = "{endpoint}"
region = "us-east-1"
cache_dir = "cache"
[state]
url = "{url}"
lease_s = {LEASE_S}
[download]
attempts = 2
[daemon]
grace_period_s = 5
metrics_listen = "{self.metrics}"
[intake]
listen = "{self.intake}"
token_file = "intake-token"
""",
            encoding="utf-8",
        )
        (root / "intake-token").write_text(TOKEN + "\n", encoding="utf-8")

    def list_tasks(self, *ids: str) -> None:
        (self.root / "tasks.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")

    async def start(self) -> S3Daemon:
        self.daemon = S3Daemon(self.root, None, retry_base_s=RETRY_BASE_S, started="daemon_ready")
        return await self.daemon.start()


def archived_ids(bucket: Bucket) -> set[str]:
    return {k.split("/")[-2] for k in bucket.objects() if k.endswith("/manifest.json")}


async def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")
