"""A one-line progress display for a terminal. Off a terminal the log lines say it all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TextIO

from archiver.state import Phase, TaskState


class Progress:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._phases: dict[str, Phase] = {}
        self._total = 0

    def start(self, tasks: Mapping[str, TaskState]) -> None:
        self._phases = {task_id: state.phase for task_id, state in tasks.items()}
        self._total = len(tasks)
        self._draw()

    def update(self, state: TaskState) -> None:
        self._phases[state.task_id] = state.phase
        self._draw()

    def close(self) -> None:
        if self._total:
            self._stream.write("\r\033[K")
            self._stream.flush()

    def _draw(self) -> None:
        counts = Counter(self._phases.values())
        ended = sum(n for phase, n in counts.items() if phase is not Phase.PENDING)
        width = 24
        filled = width * ended // self._total if self._total else width
        parts = [f"{n} {phase.value.replace('_', ' ')}" for phase, n in sorted(counts.items())]
        line = f"[{'#' * filled}{'.' * (width - filled)}] {ended}/{self._total}  " + ", ".join(
            parts
        )
        self._stream.write(f"\r\033[K{line}")
        self._stream.flush()
