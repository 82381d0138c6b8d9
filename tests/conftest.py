"""Shared fixtures."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from s3server import DUMMY_ENV, MotoServer

from archiver.sandbox import Sandbox

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
