"""The events outbox on both stores (a real SQLite file; a real PostgreSQL server the session
started): an event is written with the save of the phase it reports, claimed under a lease,
retried, given up, redelivered, served in ID order, pruned; on PostgreSQL two daemons' claims
never overlap and a save whose lease lapsed writes no event."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from archiver.state import outbox
from archiver.state.outbox import Outbox
from archiver.state.outboxes import outbox_of
from archiver.state.pgstore import PgStore
from archiver.state.protocol import LeaseLost, Store
from archiver.state.store import StateStore
from archiver.tasks.events import ARCHIVED, AT_RISK
from archiver.tasks.taskstate import Phase, TaskState

URLS = ("https://a.example/hook", "https://b.example/hook")


def _task(task_id: str, phase: Phase = Phase.PENDING, **kw: object) -> TaskState:
    fields: dict[str, object] = {
        "task_id": task_id,
        "kind": None,
        "phase": phase,
        "first_seen_at": 100.0,
        "next_poll_at": 100.0,
        "polls": 1,
        "attempts": 0,
        "last_status": None,
        "last_error": None,
        "updated_at": 100.0,
    }
    return TaskState(**{**fields, **kw})  # type: ignore[arg-type]


def _event(task_id: str, at: float = 200.0, urls: tuple[str, ...] = URLS) -> outbox.NewEvent:
    return outbox.NewEvent(ARCHIVED, task_id, "music", "archived", None, at, urls)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


@pytest.fixture
def box(any_store: Store) -> Outbox:
    return outbox_of(any_store)


def test_an_event_is_saved_with_the_phase_it_reports(store: Store, box: Outbox) -> None:
    store.save(_task("t1", Phase.ARCHIVED), _event("t1"))
    assert store.get_many(["t1"])["t1"].phase is Phase.ARCHIVED
    [first] = box.after(0, 10)
    assert (first.type, first.task_id, first.outcome) == (ARCHIVED, "t1", "archived")
    assert first.msg_id.startswith("msg_") and len(first.msg_id) == 36


def test_a_save_that_fails_leaves_neither_the_phase_nor_the_event(tmp_path: Any) -> None:
    store = StateStore.open(tmp_path / "state.sqlite3")
    store.save(_task("t1", Phase.ARCHIVED), _event("t1"))
    store.connection.execute(
        "CREATE TRIGGER no_t2 BEFORE INSERT ON events "
        "WHEN NEW.task_id = 't2' BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    with pytest.raises(Exception, match="boom"):
        store.save(_task("t2", Phase.ARCHIVED), _event("t2"))
    assert store.get_many(["t2"]) == {}
    assert [e.task_id for e in outbox_of(store).after(0, 10)] == ["t1"]
    store.close()


def test_claims_are_leased_oldest_first_and_answers_recorded(store: Store, box: Outbox) -> None:
    for n in range(3):
        store.save(_task(f"t{n}", Phase.ARCHIVED), _event(f"t{n}", at=200.0 + n))
    due = box.claim(300.0, 30.0, 4, URLS)
    assert [(d.event.task_id, d.url) for d in due] == [
        ("t0", URLS[0]), ("t0", URLS[1]), ("t1", URLS[0]), ("t1", URLS[1]),
    ]  # fmt: skip
    # Leased: another claim within the lease gets only the rest.
    assert [d.event.task_id for d in box.claim(301.0, 30.0, 10, URLS)] == ["t2", "t2"]
    box.delivered(due[0], 302.0)
    box.retry_at(due[1], "HTTP 500", 400.0)
    # The lease lapsed: what was not answered is due again; the retry waits for its time.
    again = box.claim(340.0, 30.0, 10, URLS)
    assert [(d.event.task_id, d.url) for d in again] == [
        ("t1", URLS[0]), ("t1", URLS[1]), ("t2", URLS[0]), ("t2", URLS[1]),
    ]  # fmt: skip
    assert box.next_due(URLS) == 370.0  # when the leases of t1 and t2 lapse
    for d in again:
        box.delivered(d, 345.0)
    assert box.next_due(URLS) == 400.0
    [retried] = box.claim(400.0, 30.0, 10, URLS)
    assert (retried.event.task_id, retried.attempts, retried.last_error) == ("t0", 1, "HTTP 500")
    box.given_up(retried, "HTTP 500", 401.0)
    [failed] = box.listed(outbox.GIVEN_UP)
    assert (failed.event.task_id, failed.url, failed.attempts) == ("t0", URLS[1], 2)


def test_redelivery_is_a_new_run_of_attempts_under_the_same_webhook_id(
    store: Store, box: Outbox
) -> None:
    store.save(_task("t1", Phase.ARCHIVED), _event("t1", urls=URLS[:1]))
    [d] = box.claim(300.0, 30.0, 10, URLS)
    box.given_up(d, "HTTP 500", 301.0)
    missing = box.redeliver([str(d.event.id), "msg_nope", "77"], 500.0, URLS)
    assert missing == ["msg_nope", "77"]
    # Sent again to the URL it was for, and to the URL configured since.
    again = box.claim(500.0, 30.0, 10, URLS)
    assert {x.url for x in again} == set(URLS)
    assert {(x.event.msg_id, x.attempts, x.since) for x in again} == {(d.event.msg_id, 0, 500.0)}
    assert box.redeliver([d.event.msg_id], 600.0, URLS) == []


def test_urls_no_longer_configured_are_given_up(store: Store, box: Outbox) -> None:
    store.save(_task("t1", Phase.ARCHIVED), _event("t1"))
    assert box.drop_unlisted(URLS[:1], 300.0) == 1
    assert [d.url for d in box.listed(outbox.PENDING)] == [URLS[0]]


def test_the_feed_is_in_id_order_and_old_events_are_pruned(store: Store, box: Outbox) -> None:
    for n in range(5):
        store.save(_task(f"t{n}", Phase.ARCHIVED), _event(f"t{n}", at=100.0 * n))
    ids = [e.id for e in box.after(0, 10)]
    assert ids == sorted(ids) and len(ids) == 5
    assert [e.task_id for e in box.after(ids[1], 2)] == ["t2", "t3"]
    assert box.prune(250.0) == 3
    assert [e.task_id for e in box.after(0, 10)] == ["t3", "t4"]
    assert len(list(box.listed(outbox.PENDING))) == 4  # their deliveries went too


def test_a_task_at_risk_gets_one_event_ever(store: Store, box: Outbox) -> None:
    store.save(_task("risky", created_at=1000.0))
    store.save(_task("safe", Phase.ARCHIVED, created_at=1000.0))
    store.save(_task("young", created_at=5000.0))
    assert box.insert_at_risk(500.0, 2000.0, 3000.0, URLS) == 1
    assert box.insert_at_risk(500.0, 2000.0, 3100.0, URLS) == 0
    [event] = box.after(0, 10)
    assert (event.type, event.task_id, event.outcome) == (AT_RISK, "risky", "pending")
    assert len(list(box.listed(outbox.PENDING))) == 2


def test_a_save_whose_lease_lapsed_writes_no_event(pg_url: str) -> None:
    with PgStore.open(pg_url, "t") as store:
        store.add([("t1", None)], now=100.0)
        assert store.claim(["t1"], "d1", now=100.0, lease_s=10.0) == {"t1"}
        assert store.claim(["t1"], "d2", now=200.0, lease_s=10.0) == {"t1"}  # d1's lapsed
        with pytest.raises(LeaseLost):
            store.save(_task("t1", Phase.ARCHIVED), _event("t1"), owner="d1")
        assert outbox_of(store).after(0, 10) == []
        store.save(_task("t1", Phase.ARCHIVED), _event("t1"), owner="d2")
        assert [e.task_id for e in outbox_of(store).after(0, 10)] == ["t1"]


def test_two_daemons_claims_never_overlap(pg_url: str) -> None:
    """Two stores on one database, as two daemons: each delivery goes to one of them."""
    with PgStore.open(pg_url, "a") as one, PgStore.open(pg_url, "b") as two:
        for n in range(30):
            one.save(_task(f"t{n}", Phase.ARCHIVED), _event(f"t{n}", at=200.0 + n))
        with one.transaction():  # a's claim is not committed yet: b skips its rows
            mine = outbox_of(one).claim(300.0, 30.0, 25, URLS)
            theirs = outbox_of(two).claim(300.0, 30.0, 100, URLS)
        assert len(mine) == 25 and len(theirs) == 35
        assert not {(d.event.id, d.url) for d in mine} & {(d.event.id, d.url) for d in theirs}
        assert outbox_of(two).claim(301.0, 30.0, 100, URLS) == []  # all leased now


def test_a_state_made_before_events_gains_the_outbox_when_opened(pg_url: str) -> None:
    """A PostgreSQL state of schema version 1 (issue 20's, without events) is upgraded."""
    with PgStore.open(pg_url, "t") as store, store.transaction() as db:
        db.execute("DROP TABLE events, deliveries")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with PgStore.open(pg_url, "t") as store:
        store.save(_task("t1", Phase.ARCHIVED), _event("t1"))
        assert [e.task_id for e in outbox_of(store).after(0, 10)] == ["t1"]
        with store.transaction() as db:
            assert db.execute("SELECT value FROM meta").fetchone() == ("2",)


def test_events_commit_in_id_order_so_the_feed_never_passes_one_over(pg_url: str) -> None:
    """While one daemon's event is not committed, another's waits for it: a feed reader that
    saw ID n never later finds an event below n."""
    with (
        PgStore.open(pg_url, "a") as one,
        PgStore.open(pg_url, "b") as two,
        PgStore.open(pg_url, "reader") as reader,
    ):
        with one.transaction():
            one.save(_task("first", Phase.ARCHIVED), _event("first"))
            later = threading.Thread(
                target=two.save, args=(_task("second", Phase.ARCHIVED), _event("second"))
            )
            later.start()
            later.join(0.5)
            assert later.is_alive()  # waits for the first to commit
            assert outbox_of(reader).after(0, 10) == []
        later.join(10)
        assert [e.task_id for e in outbox_of(reader).after(0, 10)] == ["first", "second"]
