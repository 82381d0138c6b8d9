"""The daemon's event work beside the engine: the sender (with `[events] urls`) and the
event watch (at-risk events, pruning: whenever events are kept, urls or the intake's feed)."""

from __future__ import annotations

import asyncio

from archiver.config import Config
from archiver.service.eventwatch import EventWatch
from archiver.service.notify import Alerter
from archiver.service.sender import EventSender, sender_for
from archiver.state.protocol import Store
from archiver.storage import Storage
from archiver.tasks.events import AT_RISK
from archiver.tasks.taskstate import TaskState


class EventTasks:
    """Started by `start`; `task_changed` is for the engine's `on_change` listeners; `stop`
    cancels them (what is not delivered stays in the outbox for the next start)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._sender: EventSender | None = None
        self._watch: EventWatch | None = None

    def start(
        self,
        config: Config,
        state: Store,
        storage: Storage,
        alerter: Alerter,
        *,
        retry_scale: float = 1.0,
    ) -> None:
        events = config.events
        self._sender = sender_for(config, state, storage, alerter=alerter, retry_scale=retry_scale)
        if self._sender is not None:
            self._tasks.append(asyncio.create_task(self._sender.run(), name="events"))
        if events.urls or config.intake.listen:  # events are kept (archiver.engine.assemble)
            self._watch = EventWatch(
                state,
                retention_days=config.tasks.retention_days,
                keep_days=events.keep_days,
                at_risk=AT_RISK in events.types,
                urls=events.urls,
                on_new=self._sender.wake if self._sender else lambda: None,
            )
            self._tasks.append(asyncio.create_task(self._watch.run(), name="events-watch"))

    def task_changed(self, state: TaskState) -> None:
        if self._sender is not None:
            self._sender.task_changed(state)
        if self._watch is not None:
            self._watch.task_changed(state)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
