"""Logging: JSON lines off a terminal, the task ID on every line about a task, no secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from archiver.service.logs import REDACTED, configure_logging

SECRET = "sk-live-9f8e7d6c5b4a"


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """Later tests must not log into this test's captured stream."""
    yield
    structlog.reset_defaults()


def test_json_lines_carry_the_bound_task_id_and_never_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json=True, level=logging.INFO, secrets=[SECRET])
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(task_id="abc123"):
        log.info("fetch_done", url=f"https://x.test/a.mp3?key={SECRET}")
        try:
            raise RuntimeError(f"Authorization: Bearer {SECRET}")
        except RuntimeError:
            log.exception("task_step_crashed")
    log.debug("hidden")

    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["fetch_done", "task_step_crashed"]
    assert all(e["task_id"] == "abc123" and e["timestamp"].endswith("Z") for e in events)
    assert SECRET not in "\n".join(lines)
    assert REDACTED in events[0]["url"] and "Bearer ***" in events[1]["exception"]


def test_readable_lines_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=False, level=logging.INFO, secrets=[SECRET])
    structlog.get_logger().warning("task_retry_later", error=f"bad {SECRET}", attempt=2)

    err = capsys.readouterr().err
    assert not err.startswith("{") and "task_retry_later" in err and "attempt=2" in err
    assert SECRET not in err
