"""The stand-in API as a process (`python -m archiver.sandbox`): it says where it listens, stops
on SIGTERM and refuses a public address."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from archiver.api.client import RateLimiter, SunoApi
from archiver.kinds.records import Kind, MusicRecord
from archiver.sandbox import Sandbox

# --- the sandbox as a process -----------------------------------------------------------------


def test_sandbox_process_prints_its_address_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver.sandbox", "--scenario", "demo", "--api-key", "k1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = json.loads(proc.stdout.readline())
        assert line["base_url"].startswith("http://127.0.0.1:") and line["api_key"] == "k1"
        assert len(line["tasks"]) >= 6

        async def poll() -> MusicRecord:
            async with aiohttp.ClientSession() as session:
                api = SunoApi(
                    session, base_url=line["base_url"], api_key="k1", limiter=RateLimiter(10)
                )
                task_id = line["tasks"][1].partition(":")[2]
                return (await api.lookup(task_id, Kind.MUSIC))[1]

        assert asyncio.run(poll()).status == "SUCCESS"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_process_refuses_a_public_address():
    done = subprocess.run(
        [sys.executable, "-m", "archiver.sandbox", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "loopback" in done.stderr
    assert done.stdout == ""


async def test_sandbox_refuses_a_public_address():
    with pytest.raises(ValueError, match="loopback"):
        await Sandbox().start("0.0.0.0")
