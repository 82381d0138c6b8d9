"""What a callback or a posted task list does to the engine: the intake's side of "one call
adds tasks to the state and wakes the engine" (`Engine.add_tasks`), plus the rule that the
same callback twice costs one poll at most."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from archiver.engine.loop import Engine
from archiver.intake.callbacks import Callback
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import RETRYABLE, Phase

# Callbacks remembered to spot repeats (kie calls twice, retries after 1, 5 and 15 minutes);
# the oldest are forgotten past this many, which costs at most one poll each.
SEEN_MAX = 100_000


class IntakeFeed:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._seen: OrderedDict[tuple[str, str, int | None], None] = OrderedDict()

    def add(self, refs: Iterable[TaskRef]) -> int:
        """Tasks posted to the intake: saved as the intake's, due at once when new (or ended
        without everything archived); return how many the state did not know."""
        return self._engine.add_tasks(refs, via_http=True, retry=RETRYABLE).new

    def callback(self, cb: Callback) -> tuple[str, int]:
        """("accepted" or "duplicate", tasks new to the state) for a callback with a task ID.

        Accepted: the task is added (new: due at once) or, when pending, polled at once.
        Duplicate: the same callback came before, or the task has ended for good (archived,
        failed): no poll at all."""
        assert cb.task_id is not None
        key = (cb.task_id, cb.stage, cb.code)
        if key in self._seen:
            self._seen.move_to_end(key)
            return "duplicate", 0
        state = self._engine.task(cb.task_id)
        if state is not None and state.phase in (Phase.ARCHIVED, Phase.FAILED):
            return "duplicate", 0
        added = self.add([TaskRef(cb.task_id, cb.kind)])
        self._engine.poll_now(cb.task_id)
        self._seen[key] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return "accepted", added
