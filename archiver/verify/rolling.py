"""The daemon's rolling verify (`[daemon] verify_every_s`): the whole archive checked once per
period, a slice at a time, so the I/O is spread evenly instead of one long read every week.

Like restic's `check --read-data-subset n/t`, the task folders are split into SLICES fixed
slices by a hash of their ID, so a folder stays in its slice as the archive grows; one slice
is verified every period / SLICES, in a thread, while the engine archives. Each problem is
logged (`verify_problem`); the metrics say when the last full round ended and what it found.
The files at the archive root and the temp folder are left to `verify`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from archiver.config import Config, StorageConfig
from archiver.kinds.records import is_id
from archiver.state.opening import StateRef, read_state, state_exists
from archiver.verify.backends import open_view
from archiver.verify.check import WITH_MANIFEST, verify
from archiver.verify.findings import VerifyReport
from archiver.verify.view import ArchiveView

log = structlog.get_logger()

SLICES = 24


def slice_of(task_id: str) -> int:
    return zlib.crc32(task_id.encode()) % SLICES


class RollingVerify:
    def __init__(
        self,
        storage: StorageConfig,
        state: StateRef,
        *,
        every_s: float,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._view: ArchiveView | None = None
        self._state = state
        self._every_s = every_s
        self._clock = clock
        self._halt = threading.Event()
        self._round_problems = 0
        self.last_full = Gauge(
            "suno_archiver_verify_last_full_timestamp_seconds",
            "When the rolling verify last finished a round of the whole archive",
            registry=registry,
        )
        self.problems = Gauge(
            "suno_archiver_verify_problems",
            "Problems the last full round of the rolling verify found",
            registry=registry,
        )
        self.slices = Counter(
            "suno_archiver_verify_slices", "Slices of the archive verified", registry=registry
        )
        self.bytes_read = Counter(
            "suno_archiver_verify_read_bytes", "Bytes the rolling verify read", registry=registry
        )

    async def run(self) -> None:
        """Verify one slice every period / SLICES, until cancelled (the slice in progress then
        stops at its next folder)."""
        pause_s = self._every_s / SLICES
        index = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    report = await self._slice(index)
                except Exception as exc:  # storage away for a while: the next slice tries again
                    log.warning("verify_slice_failed", slice=index, error=str(exc))
                else:
                    if report is not None:
                        self._count(index, report)
                index = (index + 1) % SLICES
                await asyncio.sleep(max(0.0, pause_s - (time.monotonic() - started)))
        finally:
            self._halt.set()
            if self._view is not None:
                self._view.close()

    async def _slice(self, index: int) -> VerifyReport | None:
        """One slice in a thread (None: another daemon verifies it this round). Cancelled,
        it tells the walk to stop and waits for the thread to notice (a folder at most), so
        the view is never closed under it."""
        if not await asyncio.to_thread(self._ours, index):
            return None
        if self._view is None:
            self._view = await asyncio.to_thread(open_view, self._storage)
        walk = asyncio.ensure_future(asyncio.to_thread(self.check_slice, self._view, index))
        try:
            return await asyncio.shield(walk)
        except asyncio.CancelledError:
            self._halt.set()
            await asyncio.gather(walk, return_exceptions=True)
            raise

    def _ours(self, index: int) -> bool:
        """Whether this daemon verifies slice `index` this round: always with a state of its
        own; on a shared state, the first daemon to come to it (the slices are divided)."""
        if not state_exists(self._state):
            return True
        now = self._clock()
        with read_state(self._state) as state:
            return state.first_to_say(f"verify_slice:{index}:{int(now // self._every_s)}", now)

    def check_slice(self, view: ArchiveView, index: int) -> VerifyReport:
        """Verify the task folders of slice `index`, and the tasks of that slice the state
        says were archived (whether their folder is there or not)."""
        names = {
            f.name
            for f in view.folders(None)
            if f.name and is_id(f.name) and slice_of(f.name) == index
        }
        if state_exists(self._state):
            with read_state(self._state) as state:
                claimed = state.phases_in(WITH_MANIFEST)
            names |= {tid for tid in claimed if slice_of(tid) == index}
        return verify(view, self._state, only=sorted(names), asked=False, stop=self._halt)

    def _count(self, index: int, report: VerifyReport) -> None:
        for problem in report.problems:
            log.warning(
                "verify_problem",
                category=problem.category.value,
                path=problem.path,
                detail=problem.detail,
            )
        log.info(
            "verify_slice",
            slice=index,
            of=SLICES,
            manifests=report.manifests,
            files=report.files,
            problems=len(report.problems),
        )
        self.slices.inc()
        self.bytes_read.inc(report.bytes_read)
        self._round_problems += len(report.problems)
        if index == SLICES - 1:
            self.last_full.set(self._clock())
            self.problems.set(self._round_problems)
            self._round_problems = 0


def start_rolling_verify(config: Config, registry: CollectorRegistry) -> asyncio.Task[None] | None:
    """The rolling verify `config` asks for, running; None when it is off."""
    if not config.daemon.verify_every_s:
        return None
    rolling = RollingVerify(
        config.storage,
        config.state,
        every_s=config.daemon.verify_every_s,
        registry=registry,
    )
    return asyncio.create_task(rolling.run(), name="rolling-verify")
