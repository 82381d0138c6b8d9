"""The terminal's progress line: counts kept as tasks change, redrawn at most every REDRAW_S."""

from __future__ import annotations

import io

from archiver.cli.progress import REDRAW_S, Progress
from archiver.tasks.taskstate import Phase, TaskState


def test_the_bar_follows_the_counts_and_is_redrawn_at_most_every_redraw_s() -> None:
    """The counts are the engine's, changed in place; the bar shows them when it redraws."""
    now = [0.0]
    screen = io.StringIO()
    counts = dict.fromkeys(Phase, 0) | {Phase.PENDING: 1000}
    progress = Progress(screen, clock=lambda: now[0])
    progress.start(counts)
    drawn = screen.getvalue().count("\r")
    task = TaskState("t", None, Phase.ARCHIVED, 0.0, 0.0, 0, 0, None, None, 0.0)

    for n in range(1000):
        counts[Phase.PENDING] -= 1
        counts[Phase.ARCHIVED if n % 10 else Phase.FAILED] += 1
        progress.update(task)  # no time passes ...

    lines = screen.getvalue().split("\r")
    assert len(lines) - 1 - drawn == 1  # ... so only the end (nothing pending) was drawn
    assert lines[-1].endswith("] 1000/1000  900 archived, 100 failed")
    now[0] += REDRAW_S
    counts[Phase.ARCHIVED] -= 1
    counts[Phase.TIMED_OUT] += 1
    progress.update(task)
    assert screen.getvalue().endswith("899 archived, 100 failed, 1 timed out")
