"""Fixtures shared by the tests/<package>/ folders. Helpers live in modules beside this file,
imported by name (pythonpath = ["tests"]): clirun, backfills, daemons, intakes, buckets,
s3daemons, s3stores, apiclients, fetching, verifying, manifestdocs, browsefiles,
archive_checks, s3server, waiting, alert_receiver, event_receiver, smallfs, pgcluster (PostgreSQL:
a cluster a session, a database a test, the store contract's subject). A folder's own fixtures
are in its conftest.py: api/ (http), fetch/ (host, session, temp_dir, make_fetcher), intake/
(site: the daemon with its intake on), storage/ (bucket), verify/ (archive)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from backfills import Site as BackfillSite
from daemons import Site as DaemonSite
from pgcluster import any_store, pg_cluster, pg_url
from s3daemons import Site as S3Site
from s3server import DUMMY_ENV, MotoServer

from archiver.sandbox import Sandbox

__all__ = ["any_store", "pg_cluster", "pg_url"]  # fixtures for every folder

# A shell starts a background job (`cmd &` without job control) with SIGINT ignored, and the
# CLI and daemon subprocesses would inherit that and ignore the tests' SIGINT: give them
# Python's default, whatever launched pytest.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A started stand-in API + file host on a free loopback port (key "sandbox-key")."""
    sb = Sandbox()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials only; no profile or config of the machine running the tests."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    """moto's S3 server in a subprocess on 127.0.0.1, one per test module."""
    srv = MotoServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def site(sandbox: Sandbox, tmp_path: Path) -> BackfillSite:
    """One user's `backfill` setup (in process): the sandbox, an archive folder, a state file
    and a task-list file."""
    return BackfillSite(sandbox, tmp_path)


@pytest.fixture
async def daemon_site(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[DaemonSite]:
    """A configured work folder for `suno-archiver run` children; they are killed at the end."""
    s = DaemonSite(tmp_path, sandbox)
    s.configure()
    try:
        yield s
    finally:
        for d in s.daemons:
            await d.kill()


@pytest.fixture
async def sites() -> AsyncIterator[list[S3Site]]:
    """The work folders a test archives into buckets from (s3daemons.add_site); their daemons
    are killed at the end."""
    made: list[S3Site] = []
    try:
        yield made
    finally:
        for site in made:
            for d in site.daemons:
                await d.kill()
