"""What the daemon exposes on its optional HTTP listener: `/healthz` and `/metrics`.

Counters come from two sources that need no hook inside the engine or the API client:

* the engine's `on_change` callback (every saved task step): a step whose `polls` grew got an
  answer from the API; one whose `unknown_polls` grew got one too ("no such task", not_found);
  one that only counted a failed attempt ended in an API error after the client's own retries;
* a structlog processor that sees the events the pipeline logs anyway: `api_retry` (one failed
  call the client retries, with its error class), `archiving_paused` (once a pause, with its
  `cause`: the key rejected, a base_url that is not the API, or storage that refused access),
  `task_archived` (files and bytes stored). The daemon logs at INFO or below, so these are seen.

Everything lives in one `CollectorRegistry` per `Metrics` (never the global one), so tests and
several daemons in one process do not share numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from archiver.config.listen import start_listener
from archiver.kinds.records import Kind
from archiver.tasks.expiry import DEFAULT_RETENTION_DAYS
from archiver.tasks.taskstate import UNKNOWN_KIND, Phase, TaskState

log = structlog.get_logger()

# /healthz turns 503 when tasks are pending and no API answer came for this long (covers the
# longest poll interval, 300 s, and a key-rejected pause, 300 s, with room) ...
API_STALE_S = 900.0
# ... or when the event loop has not ticked for this long (it ticks every second).
LOOP_STALE_S = 15.0

_RETRY_OUTCOMES = {
    "SlowDown": "slow_down",
    "Maintenance": "maintenance",
    "TransientApiError": "transient",
}
# archiving_paused's cause when the API answered: a rejected key, an account out of credits, or
# a base_url that is not it
_PAUSE_OUTCOMES = {"api_key": "auth_rejected", "credits": "no_credits", "api_url": "wrong_endpoint"}


# What a shared state holds, every daemon's tasks together: (tasks by phase, daemons alive),
# None when the state is this daemon's own (or not read yet).
ClusterCounts = tuple[Mapping[Phase, int], int] | None


class _Cluster(Collector):
    """The shared state's counts as the daemon last read them (engine/cluster.py)."""

    def __init__(self, read: Callable[[], ClusterCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        found = self._read()
        if found is None:
            return
        counts, daemons = found
        family = GaugeMetricFamily(
            "suno_archiver_cluster_tasks",
            "Tasks of the shared state by phase, all daemons' together",
            labels=["phase"],
        )
        for phase in Phase:
            family.add_metric([phase.value], counts.get(phase, 0))
        yield family
        yield GaugeMetricFamily(
            "suno_archiver_cluster_daemons", "Daemons alive on the shared state", value=daemons
        )


class _TaskPhases(Collector):
    """Tasks by phase, and by kind and phase, read at scrape time from the engine's running
    counts."""

    def __init__(
        self,
        counts: Callable[[], Mapping[Phase, int]],
        kind_counts: Callable[[], Mapping[tuple[str, Phase], int]],
    ) -> None:
        self._counts = counts
        self._kind_counts = kind_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("suno_archiver_tasks", "Listed tasks by phase", labels=["phase"])
        counts = self._counts()
        for phase in Phase:
            family.add_metric([phase.value], counts.get(phase, 0))
        yield family
        by_kind = self._kind_counts()
        family = GaugeMetricFamily(
            "suno_archiver_tasks_by_kind",
            "Listed tasks by kind and phase",
            labels=["kind", "phase"],
        )
        for kind in [*(k.value for k in Kind), UNKNOWN_KIND]:
            for phase in Phase:
                n = by_kind.get((kind, phase), 0)
                if kind != UNKNOWN_KIND or n:
                    family.add_metric([kind, phase.value], n)
        yield family


class Metrics:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._clock = clock
        self._retention_days = retention_days
        self.started_at = clock()
        self.last_api_success: float | None = None
        self.last_tick = clock()
        self._counts: Callable[[], Mapping[Phase, int]] = dict
        self._kind_counts: Callable[[], Mapping[tuple[str, Phase], int]] = dict
        self._in_flight: Callable[[], int] = lambda: 0
        self._at_risk: Callable[[float, float], int] = lambda _now, _retention_days: 0
        # Why archiving waits, for /healthz (the daemon's SpaceWatch.health): None = it does not.
        self._paused: Callable[[], dict[str, Any] | None] = lambda: None
        # polls, unknown polls, attempts, phase of each pending task: an ended one is forgotten
        self._seen: dict[str, tuple[int, int, int, Phase]] = {}

        r = self.registry = CollectorRegistry()
        r.register(_TaskPhases(lambda: self._counts(), lambda: self._kind_counts()))
        self._cluster: Callable[[], ClusterCounts] = lambda: None
        r.register(_Cluster(lambda: self._cluster()))
        Gauge(
            "suno_archiver_tasks_in_flight", "Tasks being polled or archived now", registry=r
        ).set_function(lambda: self._in_flight())
        Gauge(
            "suno_archiver_tasks_at_risk",
            "Listed tasks not archived whose files expire within 2 days",
            registry=r,
        ).set_function(self.tasks_at_risk)
        self.files = Counter(
            "suno_archiver_files_archived", "Files stored (audio, images)", registry=r
        )
        self.bytes = Counter("suno_archiver_bytes_archived", "Bytes stored", registry=r)
        self.ended = Counter(
            "suno_archiver_tasks_ended",
            "Tasks that reached an end phase in this process",
            ["phase"],
            registry=r,
        )
        self.api_calls = Counter(
            "suno_archiver_api_calls",
            "Record-info calls by outcome: ok, not_found, auth_rejected, no_credits, "
            "wrong_endpoint, slow_down, maintenance, transient (each retried call), error (a "
            "lookup that failed after the retries)",
            ["outcome"],
            registry=r,
        )
        self.api_retries = Counter(
            "suno_archiver_api_retries", "Record-info calls retried by the client", registry=r
        )
        self.storage_pauses = Counter(
            "suno_archiver_storage_pauses",
            "Times archiving paused because the storage refused access (a missing bucket, "
            "denied credentials)",
            registry=r,
        )
        Gauge(
            "suno_archiver_seconds_since_api_success",
            "Seconds since the last answer of the API (since the start when none yet)",
            registry=r,
        ).set_function(self.seconds_since_api_success)
        Gauge(
            "suno_archiver_storage_full",
            "1 while archiving is paused because the storage is full (or below min_free_bytes)",
            registry=r,
        ).set_function(lambda: float(self._cause() == "storage_full"))
        Gauge(
            "suno_archiver_state_unreachable",
            "1 while archiving is paused because the shared (PostgreSQL) state does not answer",
            registry=r,
        ).set_function(lambda: float(self._cause() == "state_unreachable"))
        Gauge(
            "suno_archiver_start_time_seconds", "When the daemon started (Unix time)", registry=r
        ).set(self.started_at)

    # --- feeding ----------------------------------------------------------------------------

    def bind(
        self,
        counts: Callable[[], Mapping[Phase, int]],
        kind_counts: Callable[[], Mapping[tuple[str, Phase], int]],
        in_flight: Callable[[], int],
        at_risk: Callable[[float, float], int] = lambda _now, _retention_days: 0,
    ) -> None:
        """Where the tasks by phase, by kind and phase, the in-flight count and the count of
        tasks at risk (given now and the retention in days) are read at scrape time."""
        self._counts = counts
        self._kind_counts = kind_counts
        self._in_flight = in_flight
        self._at_risk = at_risk

    def seed(self, tasks: Iterable[TaskState]) -> None:
        """Remember the pending tasks as the engine has them now (after it was given tasks),
        so that the next change of each is measured against it."""
        for task in tasks:
            self._seen.setdefault(
                task.task_id, (task.polls, task.unknown_polls, task.attempts, task.phase)
            )

    def task_changed(self, state: TaskState) -> None:
        """The engine's `on_change`: one saved step of one task."""
        current = (state.polls, state.unknown_polls, state.attempts, state.phase)
        polls, unknown, attempts, phase = self._seen.get(state.task_id, current)
        if state.phase is Phase.PENDING:
            self._seen[state.task_id] = current
        else:
            self._seen.pop(state.task_id, None)
        if state.polls > polls:
            self.api_calls.labels("ok").inc(state.polls - polls)
            self.last_api_success = self._clock()
        elif state.unknown_polls > unknown:
            self.api_calls.labels("not_found").inc(state.unknown_polls - unknown)
            self.last_api_success = self._clock()
        elif state.attempts > attempts and state.phase is Phase.PENDING:
            self.api_calls.labels("error").inc()
        if state.phase is not phase and state.phase is not Phase.PENDING:
            self.ended.labels(state.phase.value).inc()

    def log_processor(
        self, _logger: Any, _method: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        """A structlog processor: counts the events named in the module docstring."""
        name = event.get("event")
        if name == "api_retry":
            self.api_retries.inc()
            outcome = _RETRY_OUTCOMES.get(str(event.get("error_class")), "other")
            self.api_calls.labels(outcome).inc()
        elif name == "archiving_paused":
            cause = event.get("cause")
            if cause in _PAUSE_OUTCOMES:
                self.api_calls.labels(_PAUSE_OUTCOMES[cause]).inc()
            elif cause == "storage":
                self.storage_pauses.inc()
        elif name == "task_archived":
            self.files.inc(_number(event.get("files")))
            self.bytes.inc(_number(event.get("bytes")))
        return event

    def tick(self) -> None:
        self.last_tick = self._clock()

    # --- reading ----------------------------------------------------------------------------

    def tasks_at_risk(self) -> int:
        return self._at_risk(self._clock(), self._retention_days)

    def seconds_since_api_success(self) -> float:
        since = self.last_api_success if self.last_api_success is not None else self.started_at
        return max(0.0, self._clock() - since)

    def watch_cluster(self, read: Callable[[], ClusterCounts]) -> None:
        """Where the shared state's counts are read at scrape time (several daemons)."""
        self._cluster = read

    def watch_pauses(self, paused: Callable[[], dict[str, Any] | None]) -> None:
        """Where /healthz and the storage_full and state_unreachable gauges read whether
        archiving waits (for space, for the shared state)."""
        self._paused = paused

    def _cause(self) -> str | None:
        paused = self._paused()
        return None if paused is None else str(paused.get("cause"))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): archiving is not paused for a full storage, the loop ticks, and
        when something is pending, the API answered (or the daemon started) recently."""
        now = self._clock()
        counts = dict.fromkeys(Phase, 0) | dict(self._counts())
        loop_lag = now - self.last_tick
        api_age = self.seconds_since_api_success()
        pending = counts[Phase.PENDING]
        paused = self._paused()
        ok = paused is None and loop_lag < LOOP_STALE_S and (pending == 0 or api_age < API_STALE_S)
        body = {
            "status": "ok" if ok else "unhealthy",
            "tasks": {phase.value: n for phase, n in counts.items()},
            "in_flight": self._in_flight(),
            "seconds_since_api_success": round(api_age, 1),
            "seconds_since_loop_tick": round(loop_lag, 1),
            "uptime_s": round(now - self.started_at, 1),
        }
        if paused is not None:
            body["archiving_paused"] = paused
        return ok, body

    # --- serving ----------------------------------------------------------------------------

    async def serve(self, listen: str) -> web.AppRunner:
        """Start the listener on `listen` ("host:port"); raises UsageError if it cannot bind."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = await start_listener(app, listen, "[daemon] metrics_listen")
        log.info("metrics_listening", address=listen)
        return runner

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, body = self.health()
        return web.Response(
            text=json.dumps(body) + "\n", status=200 if ok else 503, content_type="application/json"
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
