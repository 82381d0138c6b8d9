"""A `suno-archiver run` child archiving into a bucket on moto's S3 server, with a short base
retry delay (30 s in production), so that waiting out a missing bucket or an S3 outage takes
seconds; and its work folder (archive.toml, tasks.txt, state, cache)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import botocore.exceptions as bx
from buckets import PREFIX, Bucket
from daemons import REPO, Daemon

from archiver.sandbox import Sandbox
from archiver.storage.s3 import TEMP_NAME

RETRY_BASE_S = 0.3

# The CLI, with `run_daemon`'s retry_base_s set from argv[1].
_LAUNCH = """
import functools, sys
import archiver.cli.daemon
archiver.cli.daemon.run_daemon = functools.partial(
    archiver.cli.daemon.run_daemon, retry_base_s=float(sys.argv[1])
)
from archiver.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


class S3Daemon(Daemon):
    """A `run` child with a chosen retry base; `start` returns at the `started` event."""

    def __init__(
        self, workdir: Path, env: dict[str, str] | None, *, retry_base_s: float, started: str
    ) -> None:
        super().__init__(workdir, env)
        self.retry_base_s = retry_base_s
        self.started = started

    async def start(self) -> S3Daemon:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.extra_env}
        env.pop("SUNO_API_KEY", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LAUNCH, str(self.retry_base_s),
            "run", "--config", "archive.toml",
            cwd=self.workdir, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(self.started)
        return self


class Site:
    """A work folder (archive.toml, tasks.txt, state, cache) archiving into `bucket`."""

    def __init__(self, root: Path, sandbox: Sandbox, endpoint: str, bucket: Bucket) -> None:
        self.root = root
        self.sandbox = sandbox
        self.bucket = bucket
        self.daemons: list[S3Daemon] = []
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
path = "state/suno-archiver.sqlite3"

[download]
attempts = 2

[daemon]
grace_period_s = 10
""",
            encoding="utf-8",
        )

    def list_tasks(self, *lines: str) -> None:
        tmp = self.root / "tasks.new"
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        tmp.replace(self.root / "tasks.txt")

    async def daemon(
        self,
        env: dict[str, str] | None = None,
        *,
        retry_base_s: float = RETRY_BASE_S,
        started: str = "daemon_ready",
    ) -> S3Daemon:
        d = S3Daemon(self.root, env, retry_base_s=retry_base_s, started=started)
        self.daemons.append(d)
        return await d.start()

    def archived(self) -> set[str]:
        """Task IDs whose manifest is in the bucket (none while the store is down)."""
        try:
            keys = self.bucket.objects()
        except (bx.BotoCoreError, bx.ClientError):
            return set()
        return {k.split("/")[-2] for k in keys if k.endswith("/manifest.json")}

    async def wait_archived(self, *task_ids: str, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(task_ids) <= await asyncio.to_thread(self.archived):
                return
            assert self.daemons[-1].running, "\n".join(self.daemons[-1].raw)
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"not archived within {timeout} s: {set(task_ids) - self.archived()}; log:\n"
            + "\n".join(self.daemons[-1].raw)
        )

    def downloading(self) -> bool:
        temp = self.root / "cache" / TEMP_NAME
        return temp.exists() and any(p.name != ".suno-archiver.lock" for p in temp.iterdir())


def add_site(
    sites: list[Site], tmp_path: Path, sandbox: Sandbox, endpoint: str, bucket: Bucket
) -> Site:
    site = Site(tmp_path, sandbox, endpoint, bucket)
    sites.append(site)
    return site
