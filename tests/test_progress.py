"""The terminal's progress line: counts kept as tasks change, redrawn at most every REDRAW_S."""

from __future__ import annotations

import dataclasses
import io

from archiver.progress import REDRAW_S, Progress
from archiver.state import Phase, TaskState


def _task(task_id: str, phase: Phase = Phase.PENDING) -> TaskState:
    return TaskState(task_id, None, phase, 0.0, 0.0, 0, 0, None, None, 0.0)


def test_counts_follow_every_change_and_the_bar_is_redrawn_at_most_every_redraw_s() -> None:
    now = [0.0]
    screen = io.StringIO()
    tasks = {f"t{n}": _task(f"t{n}") for n in range(1000)}
    progress = Progress(screen, clock=lambda: now[0])
    progress.start(tasks)
    drawn = screen.getvalue().count("\r")

    for n, task in enumerate(tasks.values()):
        phase = Phase.ARCHIVED if n % 10 else Phase.FAILED
        progress.update(dataclasses.replace(task, phase=phase))  # no time passes ...
    progress.update(dataclasses.replace(tasks["t1"], phase=Phase.PARTIAL))  # t1 again

    lines = screen.getvalue().split("\r")
    assert len(lines) - 1 - drawn == 2  # ... so only the end (nothing pending) was drawn
    assert lines[-1].endswith("] 1000/1000  899 archived, 1 partial, 100 failed")
    now[0] += REDRAW_S
    progress.update(dataclasses.replace(tasks["t2"], phase=Phase.TIMED_OUT))
    assert screen.getvalue().endswith("898 archived, 1 partial, 100 failed, 1 timed out")
