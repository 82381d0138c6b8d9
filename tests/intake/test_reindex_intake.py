"""`reindex` and the tasks the HTTP intake was given: the daemon, the intake and the CLI as real
subprocesses over real sockets, the stand-in API in the test process.

Manifests do not say how a task was given (SPEC's manifest has no such field), so `reindex`
keeps the state's own mark: a task POSTed to `run` stays the daemon's across a reindex, and a
list that does not name it does not drop it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from daemons import metric
from intakes import AUTH, IntakeSite

from archiver.kinds.records import Kind
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase


async def wait_archived_count(daemon: IntakeSite, count: int, timeout: float = 10.0) -> None:
    """Until the daemon counts `count` of its tasks archived (/metrics)."""
    deadline = time.monotonic() + timeout
    while True:
        _, body = await daemon.get("/metrics")
        found = metric(body, 'suno_archiver_tasks{phase="archived"}')
        if found == count:
            return
        assert time.monotonic() < deadline, f"{found} archived, not {count}, after {timeout} s"
        await asyncio.sleep(0.1)


async def test_reindex_keeps_intake_tasks_through_list_reloads(
    site: IntakeSite,
    sandbox: Sandbox,
) -> None:
    listed, adopted, reopened, later = (
        fake_hex_id(f"reindex-intake:{name}") for name in ("listed", "adopted", "reopened", "later")
    )
    for task_id in (listed, adopted, reopened, later):
        sandbox.api.add_music(task_id)
    site.list_tasks(listed)
    daemon = await site.daemon()
    body = {"tasks": [adopted, reopened]}
    assert (await site.call("POST", "/tasks", body=body, headers=AUTH))[0] == 202
    await site.wait_archived(listed, adopted, reopened)
    assert await daemon.stop() == 0
    (site.archive / reopened / "manifest.json").unlink()  # reindex sets it back to pending

    code, report, err = await site.cli("reindex")

    assert code == 0, err
    assert report.startswith(f"2 manifests in {site.archive}")
    assert "1 tasks the state had as archived have no manifest" in report
    with StateStore.open(site.root / "archive.state.sqlite3") as state:
        assert state.http_task_ids() == sorted([adopted, reopened])
    # The daemon loads a list that names neither: both stay its tasks, the reopened one is
    # archived again (never polled, were it dropped), the adopted one still counted.
    await site.daemon()
    await site.wait_archived(reopened)
    await wait_archived_count(site, 3)
    site.list_tasks(listed, later)  # a reload while running keeps them too
    await site.wait_archived(later)
    await wait_archived_count(site, 4)
    status, info = await site.task(reopened)
    assert status == 200 and info["phase"] == "archived"


def test_adopting_and_reopening_keep_the_intake_mark(tmp_path: Path) -> None:
    posted, listed = fake_hex_id("mark:posted"), fake_hex_id("mark:listed")
    with StateStore.open(tmp_path / "state.sqlite3") as state:
        state.add([(posted, Kind.MUSIC)], now=1.0, via_http=True)
        state.add([(listed, Kind.MUSIC)], now=1.0)
        rows = [(t, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS") for t in (posted, listed)]
        assert state.adopt(rows, now=2.0) == 2
        assert state.reopen([posted, listed], [Phase.ARCHIVED], now=3.0) == 2
        assert state.http_task_ids() == [posted]
