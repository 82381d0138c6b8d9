"""Several daemons on one PostgreSQL state: leases, their lapse and takeover, a stale holder's
write refused, heartbeats, the once-per-cluster alert mark, the advisory lock (real server)."""

from __future__ import annotations

import dataclasses
import threading

import psycopg
import pytest

from archiver.state.pgstore import PgStore
from archiver.state.protocol import Daemon, LeaseLost
from archiver.tasks.taskstate import Phase


@pytest.fixture
def two(pg_url: str):
    a = PgStore.open(pg_url, "a")
    b = PgStore.open(pg_url, "b")
    yield a, b
    a.close()
    b.close()


def test_a_due_task_is_claimed_by_one_daemon_only(two: tuple[PgStore, PgStore]) -> None:
    a, b = two
    a.add([("t1", None), ("t2", None)], now=10.0)
    assert a.claim(["t1"], "A", now=11.0, lease_s=60) == {"t1"}
    assert b.claim(["t1", "t2"], "B", now=12.0, lease_s=60) == {"t2"}
    assert a.claim(["t1"], "A", now=13.0, lease_s=60) == {"t1"}  # renewing one's own


def test_racing_claims_on_many_tasks_split_them_without_overlap(pg_url: str) -> None:
    setup = PgStore.open(pg_url, "s")
    ids = [f"t{i:04d}" for i in range(400)]
    setup.add([(t, None) for t in ids], now=1.0)
    setup.close()
    won: dict[str, set[str]] = {}

    def race(name: str) -> None:
        store = PgStore.open(pg_url, name)
        got: set[str] = set()
        for i in range(0, len(ids), 20):
            got |= store.claim(ids[i : i + 20], name, now=2.0, lease_s=60)
        won[name] = got
        store.close()

    threads = [threading.Thread(target=race, args=(n,)) for n in ("A", "B", "C")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(w) for w in won.values()) == len(ids)
    assert set().union(*won.values()) == set(ids)


def test_a_lapsed_lease_is_taken_over_and_the_stale_holder_cannot_save(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    a.add([("t1", None)], now=10.0)
    assert a.claim(["t1"], "A", now=11.0, lease_s=5) == {"t1"}
    assert b.claim(["t1"], "B", now=15.0, lease_s=5) == set()  # not lapsed yet
    assert b.claim(["t1"], "B", now=16.5, lease_s=5) == {"t1"}  # lapsed at 16
    stale = dataclasses.replace(a.get_many(["t1"])["t1"], phase=Phase.ARCHIVED, updated_at=17.0)
    with pytest.raises(LeaseLost):
        a.save(stale, owner="A")
    assert b.get_many(["t1"])["t1"].phase is Phase.PENDING
    b.save(dataclasses.replace(stale, updated_at=18.0), owner="B")
    assert a.get_many(["t1"])["t1"].phase is Phase.ARCHIVED


def test_renewal_keeps_a_lease_and_leaving_lets_all_go(two: tuple[PgStore, PgStore]) -> None:
    a, b = two
    a.add([("t1", None), ("t2", None)], now=10.0)
    a.claim(["t1", "t2"], "A", now=10.0, lease_s=5)
    assert a.renew("A", now=14.0, lease_s=5) == 2
    assert b.claim(["t1"], "B", now=16.0, lease_s=5) == set()
    a.heartbeat(Daemon("A", "host-a", 11, 1.0, 16.0, 0))
    b.heartbeat(Daemon("B", "host-b", 22, 1.0, 16.0, 0))
    alive = a.daemons(now=16.0, alive_s=10)
    assert [(d.daemon_id, d.host, d.pid, d.leases) for d in alive] == [
        ("A", "host-a", 11, 2),
        ("B", "host-b", 22, 0),
    ]
    assert [d.daemon_id for d in a.daemons(now=40.0, alive_s=10)] == []
    a.leave("A")
    assert b.claim(["t1", "t2"], "B", now=16.0, lease_s=5) == {"t1", "t2"}
    assert [d.daemon_id for d in b.daemons(now=16.0, alive_s=10)] == ["B"]


def test_an_event_is_said_by_one_daemon_and_the_index_lock_is_one_holders(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    assert a.first_to_say("silence:1", now=1.0)
    assert not b.first_to_say("silence:1", now=1.0)
    with a.try_lock("index") as got_a, b.try_lock("index") as got_b:
        assert (got_a, got_b) == (True, False)
    with b.try_lock("index") as got_b:
        assert got_b


def test_a_failed_pipelined_transaction_leaves_nothing_and_the_store_usable(pg_url: str) -> None:
    with PgStore.open(pg_url, "t") as store:
        store.add([("t1", None)], now=1.0)
        with pytest.raises(psycopg.Error), store.transaction(pipelined=True) as db:
            db.execute("UPDATE tasks SET polls = 5")
            db.execute("SELECT no_such_column FROM tasks")
        assert store.get_many(["t1"])["t1"].polls == 0
        assert store.add([("t2", None)], now=2.0) == 1


def test_a_lease_is_confirmed_before_a_manifest_only_while_it_is_ours(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    a.add([("t1", None), ("t2", None)], now=10.0)
    assert a.claim(["t1", "t2"], "A", now=10.0, lease_s=5) == {"t1", "t2"}
    assert a.confirm("t1", "A", now=11.0, lease_s=5)  # set a moment ago: ours
    assert b.claim(["t1"], "B", now=16.0, lease_s=5) == {"t1"}  # A was frozen: lapsed
    assert a.renew("A", now=16.1, lease_s=5) == 1  # t2 only: t1 is B's now
    assert not a.confirm("t1", "A", now=16.2, lease_s=5)  # a renewal that missed it
    assert a.confirm("t2", "A", now=16.2, lease_s=5)
    assert b.confirm("t1", "B", now=16.3, lease_s=5)
