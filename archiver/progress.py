"""A one-line progress display for a terminal. Off a terminal the log lines say it all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from archiver.state import Phase, TaskState
from archiver.status import counts_text, phase_counts

REDRAW_S = 0.1  # a terminal line redrawn more often only flickers


class Progress:
    """The terminal's last line: a bar and the counts by phase, redrawn in place with \\r.

    Anything else written to the same terminal must go through `print_above` (the log writer
    does, see `configure_logging`): it clears the bar, prints the line, and draws the bar again
    below it, so that a log line never lands on the end of the bar.
    """

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._phases: dict[str, Phase] = {}
        self._counts = phase_counts(())
        self._total = 0
        self._drawn_at = -REDRAW_S
        self._line = ""  # the bar as last drawn; "" while none is shown
        self._lock = threading.Lock()  # log lines may come from worker threads

    def start(self, tasks: Mapping[str, TaskState]) -> None:
        self._phases = {task_id: state.phase for task_id, state in tasks.items()}
        self._counts = phase_counts(tasks.values())
        self._total = len(tasks)
        self._draw()

    def update(self, state: TaskState) -> None:
        """Count the task's new phase: in constant time, as a 100,000-task backfill has as
        many updates; the bar is redrawn at most every REDRAW_S, and when the last task ends."""
        before = self._phases.get(state.task_id)
        if before is None:
            return  # not a listed task
        self._counts[before] -= 1
        self._counts[state.phase] += 1
        self._phases[state.task_id] = state.phase
        if self._clock() - self._drawn_at >= REDRAW_S or not self._counts[Phase.PENDING]:
            self._draw()

    def print_above(self, line: str) -> None:
        with self._lock:
            self._stream.write(f"\r\033[K{line}\n{self._line}")
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._line:
                self._stream.write("\r\033[K")
                self._stream.flush()
                self._line = ""

    def _draw(self) -> None:
        if not self._total:
            return
        self._drawn_at = self._clock()
        ended = self._total - self._counts[Phase.PENDING]
        width = 24
        filled = width * ended // self._total
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {ended}/{self._total}"
        with self._lock:
            self._line = f"{bar}  {counts_text(self._counts)}"
            self._stream.write(f"\r\033[K{self._line}")
            self._stream.flush()
