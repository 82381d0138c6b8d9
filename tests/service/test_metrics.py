"""The daemon's metrics and health, in process: what task steps, log events and pauses count,
and when /healthz turns bad."""

from __future__ import annotations

import dataclasses
from typing import Any

from archiver.service.metrics import Metrics
from archiver.tasks.taskstate import Phase, TaskState


def _state(task_id: str, **changes: Any) -> TaskState:
    base = TaskState(task_id, None, Phase.PENDING, 0.0, 0.0, 0, 0, None, None, 0.0)
    return dataclasses.replace(base, **changes)


def test_metrics_count_api_answers_and_failures_from_task_steps() -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.seed([_state("a"), _state("b"), _state("c")])
    now[0] = 1010.0
    metrics.task_changed(_state("a", polls=1))
    metrics.task_changed(_state("b", attempts=1, last_error="HTTP 500"))
    metrics.task_changed(_state("c", unknown_polls=1))  # unknown yet: asked again later
    metrics.task_changed(_state("c", unknown_polls=2, phase=Phase.NOT_FOUND))
    metrics.task_changed(_state("a", polls=2, phase=Phase.ARCHIVED))
    value = metrics.registry.get_sample_value
    assert value("suno_archiver_api_calls_total", {"outcome": "ok"}) == 2
    assert value("suno_archiver_api_calls_total", {"outcome": "error"}) == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "not_found"}) == 2
    assert value("suno_archiver_tasks_ended_total", {"phase": "archived"}) == 1
    now[0] = 1015.0
    assert value("suno_archiver_seconds_since_api_success") == 5.0


def test_metrics_count_logged_retries_and_stored_files() -> None:
    metrics = Metrics()
    event = {"event": "api_retry", "error_class": "SlowDown"}
    assert metrics.log_processor(None, "warning", event) is event
    metrics.log_processor(None, "info", {"event": "task_archived", "files": 4, "bytes": 1000})
    value = metrics.registry.get_sample_value
    assert value("suno_archiver_api_retries_total") == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "slow_down"}) == 1
    assert value("suno_archiver_files_archived_total") == 4
    assert value("suno_archiver_bytes_archived_total") == 1000


def test_pauses_are_counted_by_their_cause() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "storage"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) is None
    assert value("suno_archiver_storage_pauses_total") == 1
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "api_key"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) == 1
    metrics.log_processor(None, "error", {"event": "archiving_paused", "cause": "api_url"})
    assert value("suno_archiver_api_calls_total", {"outcome": "auth_rejected"}) == 1
    assert value("suno_archiver_api_calls_total", {"outcome": "wrong_endpoint"}) == 1
    assert value("suno_archiver_storage_pauses_total") == 1


def test_health_turns_bad_when_pending_tasks_get_no_api_answer() -> None:
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    counts = {Phase.PENDING: 1}
    metrics.bind(lambda: counts, dict, lambda: 0)
    assert metrics.health()[0]
    now[0] = 1000.0
    metrics.tick()
    ok, body = metrics.health()
    assert not ok and body["status"] == "unhealthy"
    counts.update({Phase.PENDING: 0, Phase.ARCHIVED: 1})  # nothing pending: idle is healthy
    assert metrics.health()[0]
    now[0] = 1100.0  # the loop stopped ticking
    assert not metrics.health()[0]
