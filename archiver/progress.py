"""A one-line progress display for a terminal. Off a terminal the log lines say it all."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TextIO

from archiver.state import Phase, TaskState
from archiver.status import counts_text, phase_counts


class Progress:
    """The terminal's last line: a bar and the counts by phase, redrawn in place with \\r.

    Anything else written to the same terminal must go through `print_above` (the log writer
    does, see `configure_logging`): it clears the bar, prints the line, and draws the bar again
    below it, so that a log line never lands on the end of the bar.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tasks: dict[str, TaskState] = {}
        self._total = 0
        self._line = ""  # the bar as last drawn; "" while none is shown
        self._lock = threading.Lock()  # log lines may come from worker threads

    def start(self, tasks: Mapping[str, TaskState]) -> None:
        self._tasks = dict(tasks)
        self._total = len(tasks)
        self._draw()

    def update(self, state: TaskState) -> None:
        self._tasks[state.task_id] = state
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
        counts = phase_counts(self._tasks.values())
        ended = self._total - counts[Phase.PENDING]
        width = 24
        filled = width * ended // self._total
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {ended}/{self._total}"
        with self._lock:
            self._line = f"{bar}  {counts_text(counts)}"
            self._stream.write(f"\r\033[K{self._line}")
            self._stream.flush()
