"""Expiry awareness, vendor codes and partial retries, over loopback HTTP against the stand-in
API: which due task goes first, the tasks at risk in `status --json` and /metrics, what each
vendor code means, and a partial task retried fetches only what its manifest lacks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from structlog.testing import capture_logs

from archiver.api.answers import classify_answer, vendor_of
from archiver.cli.backfill import backfill
from archiver.config import ApiConfig, Config, StateConfig, StorageConfig, TasksConfig
from archiver.engine.assemble import open_engine
from archiver.errors import AuthError, NoCredits, SlowDown
from archiver.kinds.records import Kind
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.sandbox.cdn import FileFaults
from archiver.service.metrics import Metrics
from archiver.state.store import StateStore
from archiver.tasks.expiry import DAY_S
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, sandbox: Sandbox) -> Config:
    return Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=50),
        tasks=TasksConfig(give_up_after_s=120.0, not_found_after_s=1.0),
        storage=StorageConfig(path=tmp_path / "archive"),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )


def _asked(sandbox: Sandbox) -> list[str]:
    """Task IDs in the order the stand-in API was first asked about them."""
    return list(dict.fromkeys(task_id for _endpoint, task_id in sandbox.api.calls))


async def _archive_all(config: Config, refs: list[TaskRef]) -> None:
    async with open_engine(config, fatal_errors=True, retry_base_s=0.05) as engine:
        engine.set_tasks(refs)
        await engine.run(asyncio.Event(), until_done=True)


# --- which due task goes first -----------------------------------------------------------------


async def test_tasks_never_polled_go_in_task_list_order_not_id_order(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    listed = [f"task_{c}" for c in "qwertyuiopasdfghjklzxcvbnm"]  # more than run at once
    for task_id in listed:
        sandbox.add_music(task_id)

    await _archive_all(_config(tmp_path, sandbox), [TaskRef(t, Kind.MUSIC) for t in listed])

    assert _asked(sandbox) == listed


async def test_due_tasks_closest_to_expiry_go_first(tmp_path: Path, sandbox: Sandbox) -> None:
    """All due at once: the dated ones by expiry (completed, else created), then the rest."""
    now = time.time()
    born = {"fresh": now - 60, "old": now - 12 * DAY_S, "middle": now - 5 * DAY_S}
    listed = ["fresh", "new_b", "old", "new_a", "middle"]
    for task_id in listed:
        sandbox.add_music(task_id)
    config = _config(tmp_path, sandbox)
    with StateStore.open(config.state.path) as store:
        store.add(((t, Kind.MUSIC) for t in listed), now - 120)
        for task_id, at in born.items():
            state = store.get_many([task_id])[task_id]
            completed = at + 100 if task_id == "middle" else None
            store.save(dataclasses.replace(state, polls=1, created_at=at, completed_at=completed))

    await _archive_all(config, [TaskRef(t, Kind.MUSIC) for t in listed])

    assert _asked(sandbox) == ["old", "middle", "fresh", "new_b", "new_a"]


# --- tasks at risk -----------------------------------------------------------------------------


def _fill_risks(path: Path, now: float) -> None:
    days_ago = {  # how long ago each was completed (else created), and its phase
        "soon": (13.0, Phase.PENDING),  # 1 day left
        "half": (12.5, Phase.PARTIAL),  # 1.5 days left
        "late": (12.8, Phase.TIMED_OUT),
        "safe": (13.5, Phase.ARCHIVED),  # archived: not at risk
        "failed": (13.5, Phase.FAILED),  # nothing to save
        "young": (3.0, Phase.PENDING),  # 11 days left
        "gone": (15.0, Phase.PENDING),  # expired a day ago: lost, not at risk
    }
    with StateStore.open(path) as store:
        store.add(((t, Kind.MUSIC) for t in [*days_ago, "undated"]), now)
        for task_id, (ago, phase) in days_ago.items():
            state = store.get_many([task_id])[task_id]
            at = now - ago * DAY_S
            changes = {"completed_at": at} if task_id == "half" else {"created_at": at}
            store.save(dataclasses.replace(state, phase=phase, **changes))


def test_status_json_lists_the_tasks_at_risk_with_the_time_left(tmp_path: Path) -> None:
    now = time.time()
    _fill_risks(tmp_path / "state.sqlite3", now)
    (tmp_path / "archive.toml").write_text(
        '[state]\npath = "state.sqlite3"\n[tasks]\nretention_days = 14\n', encoding="utf-8"
    )

    out = subprocess.run(
        [sys.executable, "-m", "archiver.cli", "status", "--json"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip

    at_risk = json.loads(out)["at_risk"]
    assert [t["task_id"] for t in at_risk] == ["soon", "late", "half"]  # soonest first
    assert [t["phase"] for t in at_risk] == ["pending", "timed_out", "partial"]
    assert abs(at_risk[0]["seconds_left"] - DAY_S) < 120
    assert at_risk[0]["expires_at"].endswith("Z")


async def test_metrics_count_the_listed_tasks_at_risk(tmp_path: Path, sandbox: Sandbox) -> None:
    now = time.time()
    config = _config(tmp_path, sandbox)
    _fill_risks(config.state.path, now)
    with StateStore.open(config.state.path) as store:
        store.add([("unlisted", Kind.MUSIC)], now)
        unlisted = store.get_many(["unlisted"])["unlisted"]
        store.save(dataclasses.replace(unlisted, created_at=now - 13 * DAY_S))
    metrics = Metrics(clock=lambda: now, retention_days=14)
    async with open_engine(config, fatal_errors=False) as engine:
        listed = ["soon", "half", "late", "safe", "failed", "young", "gone", "undated"]
        engine.set_tasks(TaskRef(t, Kind.MUSIC) for t in listed)
        metrics.bind(lambda: engine.counts, lambda: engine.kind_counts, lambda: 0, engine.at_risk)

        assert metrics.registry.get_sample_value("suno_archiver_tasks_at_risk") == 3


# --- vendor codes ------------------------------------------------------------------------------

KIE, SUNOAPI, OTHER = "https://api.kie.ai", "https://api.sunoapi.org", "http://127.0.0.1:9"


def _body(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": None}).encode()


@pytest.mark.parametrize(
    ("base_url", "http", "code", "msg", "error", "says"),
    [
        (SUNOAPI, 200, 429, "insufficient credits", NoCredits, "top up the account"),
        (KIE, 200, 429, "Rate limited", SlowDown, "rate-limits"),
        (KIE, 200, 402, "Insufficient credits", NoCredits, "top up the account"),
        (KIE, 200, 433, "Sub-key Usage Exceeds Limit", SlowDown, "sub-key"),
        (SUNOAPI, 200, 430, "Your call frequency is too high", SlowDown, "call less often"),
        (SUNOAPI, 200, 405, "Rate limited", SlowDown, "call less often"),
        (SUNOAPI, 429, 429, "Too Many Requests", SlowDown, "rate-limits"),  # an HTTP 429
        (OTHER, 200, 429, "insufficient credits", NoCredits, "top up"),  # the msg decides
        (OTHER, 200, 429, "Too many requests", SlowDown, "rate-limits"),
        (KIE, 200, 401, "You do not have access permissions", AuthError, "rejected the key"),
    ],
)
def test_each_vendor_code_has_its_class_and_says_what_it_means(
    base_url: str, http: int, code: int, msg: str, error: type, says: str
) -> None:
    with pytest.raises(error, match=says) as caught:
        classify_answer(
            Kind.MUSIC, "t1", http, _body(code, msg), path="/x", retry_after="7",
            vendor=vendor_of(base_url),
        )  # fmt: skip
    if error is not AuthError:
        assert caught.value.retry_after == 7.0 and msg in str(caught.value)


async def test_no_credits_pauses_the_daemon_once_and_says_to_top_up(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    ids = [f"song_{n}" for n in range(5)]
    for task_id in ids:
        sandbox.add_music(task_id)
    sandbox.api.fail_next(1, "body402", retry_after=3600)
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with open_engine(_config(tmp_path, sandbox), fatal_errors=False) as engine:
            engine.set_tasks(TaskRef(t, Kind.MUSIC) for t in ids)
            run = asyncio.create_task(engine.run(stop))
            while not any(e["event"] == "archiving_paused" for e in logs):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # time for any other call to go out (none may)
            stop.set()
            await run

    [paused] = [e for e in logs if e["event"] == "archiving_paused"]
    assert paused["cause"] == "credits" and "top up the account" in paused["error"]
    assert paused["retry_in_s"] == 3600  # the API's Retry-After
    assert sandbox.api.total_calls == 1


# --- a partial task retried ----------------------------------------------------------------------


async def test_a_partial_task_retried_fetches_only_what_its_manifest_lacks(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Track 1's audio URL had expired: the task ended partial with its image stored. Tried
    again, the image is not downloaded again; the MP3 (now there) embeds the stored one."""
    task = fake_hex_id("partial-retry")
    sandbox.add_music(task)
    sandbox.cdn.set_faults(f"{task}-1.mp3", FileFaults(status=404))
    ids = tmp_path / "ids.txt"
    ids.write_text(task + "\n", encoding="utf-8")
    config = _config(tmp_path, sandbox)
    first = await backfill(config, ids, retry_base_s=0.05, poll_time_scale=0.01)
    assert [t.phase for t in first.not_archived] == [Phase.PARTIAL]
    image_hits = sandbox.cdn.hits[f"{task}-1.jpg"]

    sandbox.cdn.set_faults(f"{task}-1.mp3", FileFaults())
    again = await backfill(config, ids, retry_base_s=0.05, poll_time_scale=0.01)

    assert again.counts[Phase.ARCHIVED] == 1 and not again.not_archived
    assert sandbox.cdn.hits[f"{task}-1.jpg"] == image_hits  # taken from storage instead
    doc = json.loads((tmp_path / "archive" / task / "manifest.json").read_text(encoding="utf-8"))
    track = doc["tracks"][0]
    stored_image = (tmp_path / "archive" / track["image"]["path"]).read_bytes()
    cover = ID3(tmp_path / "archive" / track["audio"]["path"]).getall("APIC")[0]
    assert cover.data == stored_image
