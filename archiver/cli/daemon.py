"""`run`: the engine fed from a watched task-list file, until SIGTERM or SIGINT.

The same engine as `backfill` (`open_engine`), fed differently: the list is read at start,
then what changes in it as soon as it changes (`TaskListWatcher`: an append costs the appended
lines), whole again on SIGHUP, and `engine.run` never finishes on its own. A missing or
unreadable list is logged and waited for; the daemon keeps the tasks it had. So is storage
that cannot be opened at start (a missing bucket, denied access): logged, retried slowly,
never an exit. A full storage pauses archiving until space returns (spacewatch). Around it
sit the systemd protocol (READY, STATUS, WATCHDOG, STOPPING) and the optional metrics
listener.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager, suppress

import structlog

from archiver import __version__
from archiver.browse.indexer import Indexer, keep_current, refresh_logged
from archiver.cli.daemonstart import Readiness, heartbeat, open_engine_when_storage_opens
from archiver.config import Config
from archiver.engine.cluster import Membership
from archiver.engine.loop import Engine
from archiver.errors import UsageError
from archiver.intake import Intake
from archiver.service.eventbody import EventBodies
from archiver.service.eventtasks import EventTasks
from archiver.service.listwatch import TaskListWatcher
from archiver.service.metrics import Metrics
from archiver.service.notify import Alerter, DaemonAlerts
from archiver.service.sdnotify import Notifier
from archiver.service.spacewatch import SpaceWatch
from archiver.storage.urls import file_urls
from archiver.tasks.taskstate import RETRYABLE, Phase, TaskState, counts_text
from archiver.verify.rolling import start_rolling_verify

log = structlog.get_logger()


def status_line(counts: Mapping[Phase, int] | None) -> str:
    """'12 archived, 3 pending, 1 failed' (phases with no task left out)."""
    if counts is None:
        return "waiting for the task list"
    return counts_text(counts) or "no tasks listed"


@contextmanager
def _counting_log_events(*processors: structlog.types.Processor) -> Iterator[None]:
    """Put the metrics' and the alerts' processors in front of the configured structlog
    chain, for this run."""
    config = structlog.get_config()
    previous = list(config["processors"])
    structlog.configure(processors=[*processors, *previous])
    try:
        yield
    finally:
        structlog.configure(processors=previous)


async def run_daemon(
    config: Config,
    *,
    notifier: Notifier | None = None,
    metrics: Metrics | None = None,
    retry_base_s: float = 30.0,
    poll_time_scale: float = 1.0,
    event_retry_scale: float = 1.0,
) -> None:
    """Archive the tasks of `config.tasks.list` until SIGTERM/SIGINT, then stop cleanly.

    `retry_base_s` (the engine's and the storage wait's first retry delay),
    `poll_time_scale` (< 1 compresses the polling schedule) and `event_retry_scale` (< 1
    compresses the events sender's retry schedule) are for tests.

    Raises UsageError for what a person must fix before it can start (no key, no task-list
    setting, the state in use by another archiver, a metrics address that cannot be bound);
    storage that cannot be opened is not among them: it is waited for (see
    `_open_engine_when_storage_opens`).
    """
    if config.tasks.list is None:
        raise UsageError("run needs a task list: set [tasks] list in a config file (--config)")
    notifier = notifier or Notifier.from_env()
    metrics = metrics or Metrics(retention_days=config.tasks.retention_days)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reread = asyncio.Event()

    def on_stop(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("daemon_stopping", signal=sig.name, grace_s=config.daemon.grace_period_s)
            notifier.stopping(f"stopping ({sig.name})")
            stop.set()

    def on_hup() -> None:
        log.info("task_list_reread_requested", signal="SIGHUP")
        reread.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    alerter = Alerter(
        config.notify.urls,
        secrets=[config.api.api_key],
        user_agent=f"{config.api.user_agent}/{__version__}",
    )
    alerts = DaemonAlerts(alerter, silence_after_s=config.notify.silence_after_s)
    try:
        async with alerter:
            with _counting_log_events(metrics.log_processor, alerts.log_processor):
                await _serve(
                    config,
                    notifier,
                    metrics,
                    alerts,
                    stop,
                    reread,
                    retry_base_s,
                    poll_time_scale,
                    event_retry_scale,
                )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()
    log.info("daemon_stopped")


async def _serve(
    config: Config,
    notifier: Notifier,
    metrics: Metrics,
    alerts: DaemonAlerts,
    stop: asyncio.Event,
    reread: asyncio.Event,
    retry_base_s: float,
    poll_time_scale: float,
    event_retry_scale: float,
) -> None:
    readiness = Readiness(notifier)
    status_stale = asyncio.Event()  # a task changed since STATUS= was last sent
    # Who hears of every task change besides the metrics (more once the engine is open).
    listeners: list[Callable[[TaskState], None]] = [alerts.task_changed]

    def changed(state: TaskState) -> None:
        metrics.task_changed(state)
        for listener in listeners:
            listener(state)
        status_stale.set()

    beat = asyncio.create_task(heartbeat(notifier, metrics, readiness), name="heartbeat")
    try:
        async with AsyncExitStack() as stack:
            engine = await open_engine_when_storage_opens(
                stack, config, changed, retry_base_s, poll_time_scale, stop, reread, readiness
            )
            if engine is not None and not stop.is_set():
                await _archive(
                    config,
                    engine,
                    readiness,
                    metrics,
                    alerts,
                    stop,
                    reread,
                    status_stale,
                    listeners,
                    event_retry_scale,
                )
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)


async def _archive(
    config: Config,
    engine: Engine,
    readiness: Readiness,
    metrics: Metrics,
    alerts: DaemonAlerts,
    stop: asyncio.Event,
    reread: asyncio.Event,
    status_stale: asyncio.Event,
    listeners: list[Callable[[TaskState], None]],
    event_retry_scale: float,
) -> None:
    """Serve with an open engine until `stop`: the task-list watcher, the metrics listener,
    STATUS= updates, the free-space watch, the task events (`listeners` get every task
    change)."""
    assert config.tasks.list is not None
    watcher = TaskListWatcher(config.tasks.list, engine, metrics)
    metrics.bind(
        lambda: engine.counts,
        lambda: engine.kind_counts,
        lambda: engine.in_flight,
        engine.at_risk,
    )
    space = SpaceWatch(engine, min_free_bytes=config.storage.min_free_bytes)
    member = (
        Membership(
            engine.state,
            engine,
            engine.owner,
            lease_s=config.state.lease_s,
            last_answer=lambda: metrics.last_api_success,
        )
        if engine.state.shared
        else None
    )
    if member is not None:
        alerts.share(engine.state.first_to_say)
        metrics.watch_cluster(lambda: member.counts)
    metrics.watch_pauses(lambda: space.health() or (member.health() if member else None))
    listeners.append(space.task_changed)

    def status() -> str:
        line = status_line(engine.counts if watcher.loaded else None)
        return f"archiving paused: {space.paused}; {line}" if space.paused else line

    noticing = asyncio.create_task(watcher.notice_changes(), name="task-list-notify")
    if not await watcher.check():
        # No list yet: the tasks the HTTP intake was given are archived meanwhile. (A state
        # that cannot be written was just reported by the watcher, which tries again.)
        with suppress(UsageError):
            engine.set_tasks(retry=RETRYABLE, keep_http=True)
    listen = config.daemon.metrics_listen
    runner = await metrics.serve(listen) if listen else None
    bodies = EventBodies(engine.storage, file_urls(config.storage, engine.storage))
    intake = None
    if config.intake.listen:
        intake_app = Intake(config.intake, engine, metrics, config.storage.location, bodies)
        try:
            intake = await intake_app.serve(config.intake.listen)
        except UsageError:
            if runner is not None:
                await runner.cleanup()
            raise
    work = asyncio.create_task(
        engine.run(stop, grace_s=config.daemon.grace_period_s), name="engine"
    )
    events = EventTasks()
    events.start(
        config, engine.state, engine.storage, alerts.alerter, retry_scale=event_retry_scale
    )
    listeners.append(events.task_changed)
    membership = asyncio.create_task(member.run(stop), name="cluster") if member else None

    async def watch() -> None:
        while True:
            force = await watcher.wait(reread)
            paused = space.paused
            space.check(now=force)
            last_answer, quiet_s = metrics.last_api_success, metrics.seconds_since_api_success()
            if member is not None and member.cluster_answer is not None:
                # several daemons: silence is when none of them had an answer
                last_answer = max(last_answer or 0.0, member.cluster_answer)
                quiet_s = min(quiet_s, max(0.0, time.time() - member.cluster_answer))
            alerts.tick(
                last_answer_at=last_answer,
                quiet_s=quiet_s,
                pending=lambda: len(engine.pending),
            )
            # PostgreSQL came back on a new connection: the list is given again, whole
            lost = engine.given_lost
            if await watcher.check(force=force or lost) or space.paused is not paused:
                status_stale.set()
            if lost and not watcher.loaded:  # no list read yet: the intake's tasks, as at start
                with suppress(UsageError):
                    engine.set_tasks(keep_http=True)
            if status_stale.is_set() and not stop.is_set():
                status_stale.clear()
                readiness.notifier.status(status())

    watching = asyncio.create_task(watch(), name="task-list-watch")
    verifying = start_rolling_verify(config, metrics.registry)
    indexer = Indexer(engine.state, engine.storage) if config.index.enabled else None
    indexing = (
        asyncio.create_task(keep_current(indexer, config.index.min_interval_s, stop), name="index")
        if indexer
        else None
    )
    if not stop.is_set():  # SIGTERM while starting: STOPPING=1 is sent, READY=1 must not follow
        log.info(
            "daemon_ready",
            task_list=str(config.tasks.list),
            archive=config.storage.location,
            state=config.state.where,
            tasks=sum(engine.counts.values()),
            metrics=config.daemon.metrics_listen or None,
            intake=config.intake.listen or None,
        )
        status_stale.clear()
        readiness.announce(status())
    try:
        await work  # returns once `stop` is set and in-flight tasks are done or cancelled
    finally:
        watcher.stop()
        side_tasks = [t for t in (watching, verifying, indexing, membership) if t is not None]
        for task in side_tasks:
            task.cancel()
        await asyncio.gather(*side_tasks, noticing, return_exceptions=True)
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        await events.stop()
        if indexer is not None:
            await refresh_logged(indexer)  # what was archived since the last write
        if member is not None:
            member.leave()
        for listener in (intake, runner):
            if listener is not None:
                await listener.cleanup()
