"""The API client when the API misbehaves, over real loopback HTTP: each fault raises its error
class and is retried or not, an API that cannot be used holds every caller back, and the rate
limiter spaces calls."""

from __future__ import annotations

import asyncio
import time

import pytest
from apiclients import TASK, FakeClock, make_api
from structlog.testing import capture_logs

from archiver.api.client import RateLimiter
from archiver.config import ApiConfig, Config, StateConfig, StorageConfig
from archiver.engine.assemble import open_engine
from archiver.errors import (
    AuthError,
    Maintenance,
    NoCredits,
    SlowDown,
    TransientApiError,
    WrongEndpoint,
)
from archiver.kinds.records import Kind
from archiver.sandbox import fake_hex_id
from archiver.tasks.tasklist import TaskRef

# --- faults → error classes -------------------------------------------------------------------

# aiohttp itself retries a GET once when the connection drops: one client-visible reset is two.
RESETS = 2

FAULT_CLASSES = {
    "http500": TransientApiError,
    "http502": TransientApiError,
    "html": TransientApiError,
    "badjson": TransientApiError,
    "reset": TransientApiError,
    "http455": Maintenance,
    "body455": Maintenance,
    "http429": SlowDown,
    "body429": NoCredits,  # its msg says "insufficient credits" (sunoapi.org's meaning)
    "body429_limit": SlowDown,  # kie.ai's meaning
    "body402": NoCredits,
    "body433": SlowDown,
    "http430": SlowDown,
    "body430": SlowDown,
    "http405": SlowDown,
    "body405": SlowDown,
    "http401": AuthError,
    "body401": AuthError,
}


@pytest.mark.parametrize(("fault", "error"), FAULT_CLASSES.items())
async def test_each_fault_raises_its_error_class(sandbox, http, fault, error):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(RESETS if fault == "reset" else 1, fault, retry_after=None)
    with pytest.raises(error):
        await make_api(sandbox, http, attempts=1).record(Kind.MUSIC, TASK)


async def test_insufficient_credits_says_so_and_is_not_retried(sandbox, http):
    # A body 429 "insufficient credits" (sunoapi.org): calling again would be refused alike.
    sandbox.add_music(TASK)
    sandbox.api.fail_next(1, "body429")
    with pytest.raises(NoCredits, match=r"insufficient credits.*top up the account"):
        await make_api(sandbox, http, attempts=4).record(Kind.MUSIC, TASK)
    assert sandbox.api.calls[("music", TASK)] == 1


async def test_kie_s_rate_limit_429_is_logged_with_the_retry(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(1, "body429_limit")
    with capture_logs() as logs:
        record = await make_api(sandbox, http, attempts=2).record(Kind.MUSIC, TASK)
    assert record.status == "SUCCESS"
    (retry,) = [e for e in logs if e["event"] == "api_retry"]
    assert retry["error_class"] == "SlowDown" and "rate-limits" in retry["error"]


@pytest.mark.parametrize(
    "fault", ["http500", "http502", "http455", "body455", "html", "badjson", "reset", "body430"]
)
async def test_retries_then_succeeds(sandbox, http, fault):
    sandbox.add_music(TASK)
    per_failure = RESETS if fault == "reset" else 1
    sandbox.api.fail_next(2 * per_failure, fault)
    with capture_logs() as logs:
        record = await make_api(sandbox, http, attempts=4).record(Kind.MUSIC, TASK)
    assert record.status == "SUCCESS"
    assert sandbox.api.calls[("music", TASK)] == 2 * per_failure + 1
    retries = [e for e in logs if e["event"] == "api_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["task_id"] == TASK for e in retries)


async def test_gives_up_after_the_attempts_with_the_last_error(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(3, "http500")
    with pytest.raises(TransientApiError):
        await make_api(sandbox, http, attempts=3).record(Kind.MUSIC, TASK)
    assert sandbox.api.calls[("music", TASK)] == 3


@pytest.mark.parametrize(
    "fault", ["http429", "body429_limit", "body433", "http430", "body430", "http405", "body405"]
)
async def test_retry_after_is_honoured(sandbox, http, fault):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(1, fault, retry_after=0.3)
    started = time.monotonic()
    record = await make_api(sandbox, http).record(Kind.MUSIC, TASK)
    assert time.monotonic() - started >= 0.3
    assert record.status == "SUCCESS"
    assert sandbox.api.calls[("music", TASK)] == 2


async def test_slow_down_pauses_every_task(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.add_music(TASK[::-1])
    api = make_api(sandbox, http)
    sandbox.api.fail_next(1, "http429", retry_after=0.4)
    first = asyncio.create_task(api.record(Kind.MUSIC, TASK))
    await asyncio.sleep(0.1)  # the 429 has arrived and paused the limiter
    started = time.monotonic()
    await api.record(Kind.MUSIC, TASK[::-1])
    assert time.monotonic() - started >= 0.2
    await first


async def test_timeout_is_transient(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(1, "hang", delay_s=5)
    with pytest.raises(TransientApiError, match=r"within 0\.2 s"):
        await make_api(sandbox, http, attempts=1, timeout_s=0.2).record(Kind.MUSIC, TASK)


async def test_wrong_key_fails_at_once_and_never_shows_the_key(sandbox, http):
    sandbox.add_music(TASK)
    secret = "sk-very-secret-4242"
    api = make_api(sandbox, http, api_key=secret)
    with capture_logs() as logs, pytest.raises(AuthError) as caught:
        await api.record(Kind.MUSIC, TASK)
    assert sandbox.api.calls[("music", TASK)] == 1
    # the systemd unit passes the key as a file: the message names every way to give it
    for needle in ("401", "api.api_key,", "api.api_key_file", "SUNO_API_KEY"):
        assert needle in str(caught.value)
    assert secret not in str(caught.value) + repr(caught.value) + repr(api) + repr(logs)


async def test_key_never_in_retry_logs(sandbox, http):
    sandbox.add_music(TASK)
    sandbox.api.fail_next(3 * RESETS, "reset")
    api = make_api(sandbox, http, attempts=3)
    with capture_logs() as logs, pytest.raises(TransientApiError) as caught:
        await api.record(Kind.MUSIC, TASK)
    assert len(logs) == 2
    assert sandbox.api_key not in repr(logs) + str(caught.value)


async def test_missing_key_is_an_auth_error(sandbox, http):
    sandbox.add_music(TASK)
    with pytest.raises(AuthError):
        await make_api(sandbox, http, api_key="").record(Kind.MUSIC, TASK)


# --- an API that cannot be used until a person acts ------------------------------------------


async def test_a_wrong_base_path_is_a_wrong_endpoint_not_an_unknown_task(sandbox, http):
    sandbox.add_music(TASK)
    api = make_api(sandbox, http, base_path="/v2")
    with pytest.raises(WrongEndpoint) as caught:
        await api.lookup(TASK, None)  # not "neither endpoint knows it": the cover one not asked
    message = str(caught.value)
    assert "api.base_url" in message and "/v2/api/v1/generate/record-info" in message
    assert "404" in message


@pytest.mark.parametrize(("fault", "base_path"), [("http401", ""), (None, "/v2")])
async def test_an_unusable_api_holds_back_every_later_call(sandbox, http, fault, base_path):
    # Calls of other tasks already waiting for the limiter must not follow a 401: the engine
    # pauses 300 s, and so does the client.
    sandbox.add_music(TASK)
    if fault:
        sandbox.api.fail_next(1, fault)
    api = make_api(sandbox, http, base_path=base_path)
    with pytest.raises((AuthError, WrongEndpoint)):
        await api.record(Kind.MUSIC, TASK)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(api.record(Kind.MUSIC, TASK), 0.5)
    assert sandbox.api.total_calls == (1 if fault else 0)


@pytest.mark.parametrize(
    ("api_key", "base_path", "needle"),
    [("wrong-key", "", "401"), (None, "/v2", "api.base_url")],
    ids=["wrong key", "wrong base path"],
)
async def test_an_unusable_api_costs_the_daemon_one_call_not_one_per_waiting_task(
    sandbox, tmp_path, api_key, base_path, needle
):
    ids = [fake_hex_id(f"burst:{n}") for n in range(20)]
    for task_id in ids:
        sandbox.add_music(task_id)
    config = Config(
        api=ApiConfig(
            base_url=sandbox.base_url + base_path,
            api_key=api_key or sandbox.api_key,
            requests_per_second=10,
        ),
        storage=StorageConfig(path=tmp_path / "archive", min_free_bytes=0),
        state=StateConfig(path=tmp_path / "state.sqlite3"),
    )
    changed = asyncio.Event()
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with open_engine(
            config, fatal_errors=False, on_change=lambda _state: changed.set()
        ) as engine:
            engine.set_tasks(TaskRef(task_id, None) for task_id in ids)
            running = asyncio.create_task(engine.run(stop))
            await asyncio.wait_for(changed.wait(), 10)
            # 16 tasks start at once and queue for the limiter; unheld, the 15 behind the
            # first call at 10/s, all within 1.5 s (the audit saw 16 calls every 5 minutes).
            await asyncio.sleep(2.0)
            stop.set()
            await running
        states = list(engine.pending.values())
    paused = [e for e in logs if e["event"] == "archiving_paused"]
    assert len(paused) == 1 and needle in paused[0]["error"]
    assert len(states) == len(ids)  # all still pending: none "not found"
    if api_key:
        assert sandbox.api.total_calls == 1


# --- the rate limiter -------------------------------------------------------------------------


async def test_rate_limiter_caps_calls_per_second(sandbox, http):
    for i in range(11):
        sandbox.add_music(f"task{i}")
    api = make_api(sandbox, http, per_second=10)
    started = time.monotonic()
    await asyncio.gather(*(api.record(Kind.MUSIC, f"task{i}") for i in range(11)))
    assert time.monotonic() - started >= 0.9  # 11 calls at 10/s: the last starts at 1.0 s


async def test_rate_limiter_pause_holds_every_caller():
    limiter = RateLimiter(1000)
    await limiter.acquire()
    limiter.pause(0.3)
    started = time.monotonic()
    await asyncio.gather(limiter.acquire(), limiter.acquire())
    assert time.monotonic() - started >= 0.28


async def test_rate_limiter_spaces_calls_by_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)
    await limiter.acquire()
    assert limiter._next == clock.now + 0.5


def test_rate_limiter_refuses_a_zero_rate():
    with pytest.raises(ValueError):
        RateLimiter(0)
