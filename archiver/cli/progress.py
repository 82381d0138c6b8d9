"""A one-line progress display for a terminal. Off a terminal the log lines say it all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from archiver.tasks.taskstate import Phase, TaskState, counts_text

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
        self._counts: Mapping[Phase, int] = {}
        self._drawn_at = -REDRAW_S
        self._line = ""  # the bar as last drawn; "" while none is shown
        self._lock = threading.Lock()  # log lines may come from worker threads

    def start(self, counts: Mapping[Phase, int]) -> None:
        """Show `counts`: the engine's tasks by phase, which it keeps up to date."""
        self._counts = counts
        self._draw()

    def update(self, _state: TaskState) -> None:
        """A task changed: redraw at most every REDRAW_S (a 100,000-task backfill has as many
        updates), and when the last task ends."""
        if self._clock() - self._drawn_at >= REDRAW_S or not self._counts.get(Phase.PENDING):
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
        total = sum(self._counts.values())
        if not total:
            return
        self._drawn_at = self._clock()
        ended = total - self._counts.get(Phase.PENDING, 0)
        width = 24
        filled = width * ended // total
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {ended}/{total}"
        with self._lock:
            self._line = f"{bar}  {counts_text(self._counts)}"
            self._stream.write(f"\r\033[K{self._line}")
            self._stream.flush()
