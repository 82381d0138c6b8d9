"""`verify` beside a running daemon, and the daemon's own rolling verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemons import Site, metric

from archiver.sandbox import Sandbox, fake_hex_id

ROUND_S = 2.4  # verify_every_s: a slice every 0.1 s, the whole archive every 2.4 s


@pytest.fixture
async def site(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[Site]:
    """The daemon site (daemons.Site), its daemon verifying the archive as it goes."""
    rolling = Site(tmp_path, sandbox)
    rolling.configure()
    config = rolling.root / "archive.toml"
    config.write_text(config.read_text() + f"verify_every_s = {ROUND_S}\n", encoding="utf-8")
    try:
        yield rolling
    finally:
        for daemon in rolling.daemons:
            await daemon.kill()


async def _problems_metric(site: Site, timeout: float = 20.0) -> float:
    """suno_archiver_verify_problems once a round found some (0 if none did in time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        _status, body = await site.get("/metrics")
        found = metric(body, "suno_archiver_verify_problems")
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def _verify(site: Site) -> tuple[int, str]:
    code, out, err = await site.cli("verify")
    return code, out + err


async def test_verify_beside_a_daemon_that_is_archiving_finds_no_false_problem(
    site: Site,
) -> None:
    tasks = [fake_hex_id(f"busy:{n}") for n in range(12)]
    for n, task in enumerate(tasks):
        site.sandbox.add_music(task, ready_after_s=0.3 * n)
    site.list_tasks(*tasks)
    daemon = await site.daemon(tuning={"poll_time_scale": 0.01})

    runs = 0
    while not all(site.manifest(t) for t in tasks) or runs < 3:
        code, output = await _verify(site)
        assert code == 0, output
        runs += 1
    await daemon.wait_for("verify_slice", where=lambda e: e["slice"] == 23)
    assert not daemon.named("verify_problem"), daemon.named("verify_problem")
    _status, body = await site.get("/metrics")
    assert metric(body, "suno_archiver_verify_last_full_timestamp_seconds") > 0
    assert metric(body, "suno_archiver_verify_problems") == 0
    assert await daemon.stop() == 0


async def test_the_rolling_verify_finds_a_damaged_file_within_a_round(
    site: Site,
) -> None:
    task = fake_hex_id("rolling")
    site.sandbox.add_music(task)
    site.list_tasks(task)
    daemon = await site.daemon()
    await site.wait_archived(task)
    audio = site.archive / site.manifest(task)["tracks"][0]["audio"]["path"]
    data = bytearray(audio.read_bytes())
    data[500] ^= 1
    audio.write_bytes(bytes(data))

    event = await daemon.wait_for("verify_problem")

    assert event["category"] == "corrupt" and event["path"].endswith(audio.name)
    assert await _problems_metric(site) == 1  # once the round that saw it ended
    assert await daemon.stop() == 0
