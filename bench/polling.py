"""Polling cost on a simulated clock: our schedule against fixed 5 s and 30 s polling.

The real pieces, with the clock simulated: the stand-in API (in this process, its clock set by
the simulation) answers the real client (`SunoApi.lookup`), and `lifecycle.decide` reads every
answer as the engine does. Only the waiting is skipped: every poll due at the same simulated
moment is sent together, then the clock jumps to the next one.

Each task finishes at a time drawn uniformly from 60-240 s after it is first polled; the
sandbox shows TEXT_SUCCESS from 1/4 and FIRST_SUCCESS from 3/4 of that time, so FIRST_SUCCESS
comes 15-60 s before SUCCESS. The delay is from finishing to the poll that sees it finished
(the download that follows is the throughput table's business).
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from archiver.api.client import RateLimiter, SunoApi
from archiver.kinds.records import Kind
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.tasks.lifecycle import ArchiveNow, PollAgain, decide
from bench.options import Options
from bench.report import Table, median, percentile, verdict

FINISH_S = (60.0, 240.0)
GIVE_UP_S = 86_400.0
CALL_RATIO_TARGET = 1 / 3
MEDIAN_DELAY_TARGET_S = 15.0


@dataclass
class _Task:
    task_id: str
    finish_s: float
    kind: Kind | None = None
    last_status: str | None = None
    calls: int = 0
    delay_s: float | None = None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


Schedule = Callable[[PollAgain], float]  # seconds until the next poll


async def _simulate(api: SunoApi, clock: _Clock, tasks: list[_Task], next_delay: Schedule) -> None:
    due: dict[float, list[_Task]] = {0.0: list(tasks)}
    times = [0.0]
    while times:
        at = heapq.heappop(times)
        clock.now = at
        batch = due.pop(at)
        answers = await asyncio.gather(*(api.lookup(t.task_id, t.kind) for t in batch))
        for task, (kind, record) in zip(batch, answers, strict=True):
            task.calls += 1
            task.kind = kind
            decision = decide(
                record, age_s=at, give_up_after_s=GIVE_UP_S, last_status=task.last_status
            )
            task.last_status = record.status
            if isinstance(decision, ArchiveNow):
                task.delay_s = at - task.finish_s
                continue
            if not isinstance(decision, PollAgain):
                raise RuntimeError(f"{task.task_id}: unexpected {decision!r}")
            then = round(at + next_delay(decision), 6)  # equal times meet in one batch
            if then not in due:
                due[then] = []
                heapq.heappush(times, then)
            due[then].append(task)


SCHEDULES: dict[str, Schedule] = {
    "fixed 5 s": lambda _decision: 5.0,
    "fixed 30 s (vendors' advice)": lambda _decision: 30.0,
    "ours (archiver.lifecycle)": lambda decision: decision.delay_s,
}


async def _run_all(opts: Options) -> dict[str, tuple[list[_Task], int]]:
    rng = random.Random(opts.seed)
    finishes = [rng.uniform(*FINISH_S) for _ in range(opts.poll_tasks)]
    clock = _Clock()
    sb = Sandbox(clock=clock)
    plans: dict[str, list[_Task]] = {}
    for name in SCHEDULES:
        plans[name] = [
            _Task(fake_hex_id(f"poll:{name}:{i}"), finish) for i, finish in enumerate(finishes)
        ]
        for task in plans[name]:
            sb.add_music(task.task_id, ready_after_s=task.finish_s, seconds=0.2)
    results: dict[str, tuple[list[_Task], int]] = {}
    async with sb, aiohttp.ClientSession() as http:
        api = SunoApi(http, base_url=sb.base_url, api_key=sb.api_key, limiter=RateLimiter(1e9))
        for name, next_delay in SCHEDULES.items():
            before = sb.api.total_calls
            await _simulate(api, clock, plans[name], next_delay)
            results[name] = (plans[name], sb.api.total_calls - before)
    return results


def measure(opts: Options) -> Table:
    table = Table(
        f"Polling cost: {opts.poll_tasks} tasks finishing 60-240 s after first sight "
        "(simulated clock)",
        ["schedule", "API calls / task", "vs fixed 5 s", "delay median s", "delay p95 s",
         "delay max s"],
    )  # fmt: skip
    results = asyncio.run(_run_all(opts))
    baseline = results["fixed 5 s"][1]
    for name, (tasks, served) in results.items():
        counted = sum(t.calls for t in tasks)
        if served != counted:
            table.failures.append(f"{name}: the sandbox answered {served} calls, not {counted}")
        delays = [t.delay_s for t in tasks if t.delay_s is not None]
        ratio = served / baseline
        ratio_cell = f"{ratio:.3f}"
        delay_cell = f"{median(delays):.1f}"
        if name.startswith("ours"):
            ratio_cell += f" (target <= 1/3: {verdict(ratio <= CALL_RATIO_TARGET)})"
            delay_cell += (
                f" (target <= {MEDIAN_DELAY_TARGET_S:g}: "
                f"{verdict(median(delays) <= MEDIAN_DELAY_TARGET_S)})"
            )
        table.add(
            name,
            f"{served / len(tasks):.1f}",
            ratio_cell,
            delay_cell,
            f"{percentile(delays, 95):.1f}",
            f"{max(delays):.1f}",
        )
    table.notes += [
        "calls counted by the stand-in API; FIRST_SUCCESS shows 15-60 s before SUCCESS "
        f"(1/4 of the finish time); finish times uniform, seed {opts.seed}",
        "delay: from finishing to the poll that sees it finished (the download follows: "
        "see the throughput table)",
    ]
    return table
