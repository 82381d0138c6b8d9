"""Child processes: the bench server, moto's S3 server, and the measured archiver."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
REPO = Path(__file__).resolve().parents[1]  # `python -m bench.server` runs from here
LAUNCH = Path(__file__).with_name("launch.py")
_AWS_OVERRIDES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def archiver_command() -> list[str]:
    """`suno-archiver` of this interpreter's environment (the console script when installed)."""
    script = Path(sys.executable).with_name("suno-archiver")
    return [str(script)] if script.exists() else [sys.executable, "-m", "archiver.cli"]


def s3_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _AWS_OVERRIDES}
    env.update(S3_ENV, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return env


@dataclass(frozen=True)
class Run:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system, the child's own
    max_rss: int  # bytes: the child's own peak resident set (see bench/launch.py)
    marks: Mapping[str, float]  # seconds since the start at which `watch` saw something


def run_child(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    watch: Callable[[], str | None] | None = None,
    interrupt_on: str | None = None,
) -> Run:
    """Run `argv` to its end through bench/launch.py; its output goes to `log`.

    `watch()` is called every 5 ms while the child runs and may name an event; the first time
    of each is kept in `marks`. `interrupt_on` names the event at which the child gets SIGINT
    (as a user pressing Ctrl-C).
    """
    result = log.with_name(log.name + ".result.json")
    result.unlink(missing_ok=True)
    seen: dict[str, float] = {}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-S", str(LAUNCH), str(result), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
        while watch is not None and proc.poll() is None:
            event = watch()
            if event is not None and event not in seen:
                seen[event] = time.monotonic()
                if event == interrupt_on:
                    proc.send_signal(signal.SIGINT)
                    watch = None
            time.sleep(0.005)
        proc.wait()
    if not result.exists():
        raise RuntimeError(f"{argv[0]} could not be run: {log_tail(log)}")
    doc = json.loads(result.read_text())
    return Run(
        returncode=doc["returncode"],
        wall_s=doc["end"] - doc["start"],
        cpu_s=doc["cpu_s"],
        max_rss=doc["max_rss_kb"] * 1024,
        marks={event: at - doc["start"] for event, at in seen.items()},
    )


def log_tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " / ".join(text[-lines:])


class BenchServer:
    """`python -m bench.server` with the given arguments, until closed."""

    def __init__(self, *args: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.base_url: str = hello["base_url"]
        self.api_key: str = hello["api_key"]
        self.tasks: dict[str, list[str]] = hello["tasks"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("bench server exited without answering")
        return json.loads(line)

    def stats(self) -> tuple[int, int]:
        """(API calls, file downloads) the server has answered so far."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        doc = self._read()
        return doc["api_calls"], doc["cdn_hits"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """moto's S3 server (server mode, a subprocess on 127.0.0.1) with one bucket."""

    def __init__(self, bucket: str, log: Path) -> None:
        self.bucket = bucket
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._log = log.open("wb")
        port = self.url.rsplit(":", 1)[1]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
            env=s3_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(timeout_s=30.0)
            self.client().create_bucket(Bucket=bucket)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited at start ({self._proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"moto server did not start on {self.url}")

    def client(self) -> Any:
        env = s3_env()
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.url)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def __enter__(self) -> MotoS3:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_config(
    path: Path,
    server: BenchServer,
    *,
    archive: Path,
    concurrency: int = 4,
    s3: MotoS3 | None = None,
) -> Path:
    """An archive.toml for `server`; the rate cap is lifted (the API is on loopback) so that
    what is measured is the archiver, not its politeness to a real API."""
    lines = [
        "[api]",
        f"base_url = {json.dumps(server.base_url)}",
        f"api_key = {json.dumps(server.api_key)}",
        "requests_per_second = 1000",
        "[download]",
        f"concurrency = {concurrency}",
        "[storage]",
    ]
    if s3 is None:
        lines += [f"path = {json.dumps(str(archive))}", "min_free_bytes = 0"]
    else:
        lines += [
            'backend = "s3"',
            f"bucket = {json.dumps(s3.bucket)}",
            f"endpoint_url = {json.dumps(s3.url)}",
            'region = "us-east-1"',
            f"cache_dir = {json.dumps(str(archive / 'cache'))}",
            "[state]",
            f"path = {json.dumps(str(archive / 'state.sqlite3'))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ids(path: Path, ids: Sequence[str]) -> Path:
    path.write_text("".join(f"{task_id}\n" for task_id in ids))
    return path
