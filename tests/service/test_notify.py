"""Alerts over real loopback HTTP: each event once, a burst as one counted alert, retries, a
dead receiver that costs the sender nothing, and the API key never in a body."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alert_receiver import Receiver
from structlog.testing import capture_logs

from archiver.config import ConfigError, load_config
from archiver.service.notify import Alerter, DaemonAlerts
from archiver.tasks.taskstate import Phase, TaskState

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


def dead_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def task(task_id: str, phase: Phase, error: str | None = None) -> TaskState:
    return TaskState(
        task_id=task_id,
        kind=None,
        phase=phase,
        first_seen_at=0.0,
        next_poll_at=0.0,
        polls=1,
        attempts=0,
        last_status="SUCCESS",
        last_error=error,
        updated_at=0.0,
    )


async def test_an_alert_is_one_json_post_with_the_contract_fields(receiver: Receiver) -> None:
    async with Alerter([receiver.url]) as alerter:
        alerter.send("task_failed", "t1: the task failed", "t1")
        (body,) = await receiver.wait_for(1)
    assert body["event"] == "task_failed" and body["task_id"] == "t1"
    assert body["message"] == "t1: the task failed" and body["count"] == 1
    assert body["at"].endswith("Z")


async def test_a_burst_is_one_alert_that_counts_it(receiver: Receiver) -> None:
    async with Alerter([receiver.url], window_s=0.3) as alerter:
        for n in range(6):
            alerter.send("task_failed", f"t{n}: the task failed", f"t{n}")
        alerter.send("archiving_paused", "archiving paused (storage_full)")
        bodies = await receiver.wait_for(3)
        await asyncio.sleep(0.4)  # the next window: nothing more was sent
    assert len(receiver.bodies) == 3
    first, burst = [b for b in bodies if b["event"] == "task_failed"]
    assert first["task_id"] == "t0"
    assert burst["count"] == 5 and burst["task_id"] is None
    assert "t1" in burst["message"] and "t5" in burst["message"]
    assert receiver.events().count("archiving_paused") == 1


async def test_a_failing_receiver_is_retried() -> None:
    receiver = await Receiver(fail_first=2).start()
    try:
        async with Alerter([receiver.url], retry_base_s=0.01) as alerter:
            alerter.send("silence", "nothing moved")
            await receiver.wait_for(1)
        assert receiver.requests == 3
    finally:
        await receiver.stop()


async def test_a_dead_receiver_is_logged_and_costs_the_sender_nothing(receiver: Receiver) -> None:
    with capture_logs() as logs:
        async with Alerter([dead_url(), receiver.url], retry_base_s=0.01) as alerter:
            alerter.send("task_partial", "t1: archived without some files", "t1")  # never awaits
            await receiver.wait_for(1)
            for _ in range(200):
                if any(e["event"] == "alert_failed" for e in logs):
                    break
                await asyncio.sleep(0.01)
    failed = [e for e in logs if e["event"] == "alert_failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 3


async def test_the_api_key_never_travels_in_an_alert(receiver: Receiver) -> None:
    async with Alerter([receiver.url], secrets=[SECRET]) as alerter:
        alerter.send("archiving_paused", f"401 for key {SECRET}")
        (body,) = await receiver.wait_for(1)
    assert SECRET not in str(body) and "[redacted]" in body["message"]


async def test_bad_task_ends_pauses_resumes_and_silence_alert_once_each(
    receiver: Receiver,
) -> None:
    async with Alerter([receiver.url], window_s=0.05) as alerter:
        alerts = DaemonAlerts(alerter, silence_after_s=100)
        alerts.task_changed(task("ok", Phase.ARCHIVED))
        alerts.task_changed(task("nf", Phase.NOT_FOUND, "unknown to every endpoint"))
        for _ in range(3):  # the engine says it again at every retry
            alerts.log_processor(None, "error", {"event": "archiving_paused", "cause": "api_key"})
        alerts.tick(last_answer_at=1.0, quiet_s=99, pending=lambda: 2)  # an old answer
        alerts.tick(last_answer_at=None, quiet_s=150, pending=lambda: 2)
        alerts.tick(last_answer_at=None, quiet_s=160, pending=lambda: 2)
        alerts.tick(last_answer_at=9e99, quiet_s=0, pending=lambda: 2)
        await receiver.wait_for(4)
        await asyncio.sleep(0.1)
    assert receiver.events() == [
        "task_not_found",
        "archiving_paused",
        "silence",
        "archiving_resumed",
    ]
    assert "2 pending tasks" in receiver.bodies[2]["message"]


@pytest.mark.parametrize(
    ("urls", "ok"),
    [
        ('["https://ntfy.sh/my-archive"]', True),
        ('["http://127.0.0.1:8080/hook", "http://[::1]/x"]', True),
        ('["http://example.com/hook"]', False),
        ('["ftp://127.0.0.1/x"]', False),
        ('"https://ntfy.sh/one"', False),
    ],
)
def test_notify_urls_are_https_or_loopback(tmp_path: Path, urls: str, ok: bool) -> None:
    path = tmp_path / "archive.toml"
    path.write_text(f"[notify]\nurls = {urls}\n", encoding="utf-8")
    if ok:
        assert load_config(path, {}).notify.urls
    else:
        with pytest.raises(ConfigError, match=r"\[notify\] urls: expected a list of https://"):
            load_config(path, {})
