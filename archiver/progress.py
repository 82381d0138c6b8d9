"""A one-line progress display for a terminal. Off a terminal the log lines say it all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from archiver.state import Phase, TaskState
from archiver.status import counts_text, phase_counts


class Progress:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tasks: dict[str, TaskState] = {}
        self._total = 0

    def start(self, tasks: Mapping[str, TaskState]) -> None:
        self._tasks = dict(tasks)
        self._total = len(tasks)
        self._draw()

    def update(self, state: TaskState) -> None:
        self._tasks[state.task_id] = state
        self._draw()

    def close(self) -> None:
        if self._total:
            self._stream.write("\r\033[K")
            self._stream.flush()

    def _draw(self) -> None:
        counts = phase_counts(self._tasks.values())
        ended = self._total - counts[Phase.PENDING]
        width = 24
        filled = width * ended // self._total if self._total else width
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {ended}/{self._total}"
        line = f"{bar}  {counts_text(counts)}"
        self._stream.write(f"\r\033[K{line}")
        self._stream.flush()
