"""The store contract: the same questions asked of the SQLite and the PostgreSQL state, with the
same answers (a real SQLite file; a real PostgreSQL server the session started)."""

from __future__ import annotations

import dataclasses

import pytest

from archiver.kinds.records import Kind
from archiver.state.protocol import Store
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase, TaskState

pytestmark = pytest.mark.usefixtures("any_store")


def one(store: Store, task_id: str) -> TaskState:
    return store.get_many([task_id])[task_id]


def test_added_tasks_are_pending_due_now_and_counted_once(any_store: Store) -> None:
    assert any_store.add([("t1", Kind.MUSIC), ("t2", None)], now=100.0) == 2
    assert any_store.add([("t1", None), ("t3", None)], now=200.0) == 1
    state = one(any_store, "t1")
    assert (state.phase, state.kind, state.next_poll_at, state.first_seen_at) == (
        Phase.PENDING,
        Kind.MUSIC,
        100.0,
        100.0,
    )
    assert any_store.counts()[Phase.PENDING] == 3
    assert any_store.kind_counts() == {"music": 1, "unknown": 2}


def test_a_null_kind_is_filled_and_http_marks_stay(any_store: Store) -> None:
    any_store.add([("t1", None)], now=1.0)
    any_store.add([("t1", Kind.COVER)], now=2.0, via_http=True)
    any_store.add([("t1", Kind.MUSIC)], now=3.0)
    assert one(any_store, "t1").kind is Kind.COVER
    assert any_store.http_task_ids() == ["t1"]


def test_saved_state_reads_back_identical_and_keeps_the_http_mark(any_store: Store) -> None:
    any_store.add([("t1", None)], now=1.0, via_http=True)
    state = dataclasses.replace(
        one(any_store, "t1"),
        kind=Kind.MUSIC,
        phase=Phase.ARCHIVED,
        polls=3,
        attempts=1,
        last_status="SUCCESS",
        last_error="boom",
        updated_at=5.5,
        archive_attempts=2,
        created_at=1.25,
        completed_at=2.5,
        unknown_polls=1,
    )
    any_store.save(state)
    assert one(any_store, "t1") == state
    assert any_store.http_task_ids() == ["t1"]
    new = dataclasses.replace(state, task_id="t9")
    any_store.save(new)
    assert one(any_store, "t9") == new


def test_reopen_problems_born_and_phases(any_store: Store) -> None:
    any_store.add([(f"t{i}", Kind.MUSIC) for i in range(4)], now=1.0)
    for i, phase in enumerate([Phase.FAILED, Phase.TIMED_OUT, Phase.ARCHIVED]):
        s = one(any_store, f"t{i}")
        any_store.save(
            dataclasses.replace(s, phase=phase, attempts=2, updated_at=10.0 - i, created_at=i)
        )
    assert [s.task_id for s in any_store.problems()] == ["t1", "t0"]
    assert [s.task_id for s in any_store.born_between(-1, 1, Phase)] == ["t0", "t1"]
    assert any_store.phases_in([Phase.ARCHIVED, Phase.FAILED]) == {
        "t0": Phase.FAILED,
        "t2": Phase.ARCHIVED,
    }
    assert any_store.reopen(["t0", "t1", "t2", "nope"], [Phase.FAILED, Phase.TIMED_OUT], 50) == 2
    reopened = one(any_store, "t1")
    assert (reopened.phase, reopened.attempts, reopened.next_poll_at) == (Phase.PENDING, 0, 50)
    assert any_store.get_many(["t0"])["t0"].updated_at == 50.0


def test_adopt_writes_what_manifests_say(any_store: Store) -> None:
    any_store.add([("t1", None)], now=1.0, via_http=True)
    rows = [("t1", Kind.MUSIC, Phase.ARCHIVED, "SUCCESS"), ("t2", Kind.COVER, Phase.FAILED, None)]
    assert any_store.adopt(rows, now=9.0) == 2
    assert one(any_store, "t1").phase is Phase.ARCHIVED
    assert one(any_store, "t2").kind is Kind.COVER
    assert any_store.http_task_ids() == ["t1"]


def test_given_tasks_merge_new_conflicting_and_retried(any_store: Store) -> None:
    given = any_store.given()
    given.stage([TaskRef("a", Kind.MUSIC, 1), TaskRef("b", None, 2), TaskRef("a", Kind.COVER, 3)])
    merged = given.merge(whole=True, now=10.0)
    assert [s.task_id for s in merged.pending] == ["a", "b"]
    assert [(c.task_id, c.kind, c.given_as) for c in merged.conflicts] == [
        ("a", Kind.COVER, Kind.MUSIC)
    ]
    assert merged.counts == {("music", Phase.PENDING): 1, ("unknown", Phase.PENDING): 1}
    b = one(any_store, "b")
    any_store.save(dataclasses.replace(b, phase=Phase.TIMED_OUT))
    assert given.stage_bare(b"b\nc\n", 4)
    merged = given.merge(whole=False, now=20.0, retry=[Phase.TIMED_OUT], http=True)
    assert (merged.new, sorted(s.task_id for s in merged.pending)) == (1, ["b", "c"])
    assert any_store.http_task_ids() == ["b", "c"]
    assert [s.task_id for s in given.not_archived()] == ["a", "b", "c"]
    assert given.count_born(-1, 1, Phase) == 0
    assert not given.stage_bare(b"music:x\n", 6)


def test_a_whole_list_keeps_the_intake_tasks_when_asked(any_store: Store) -> None:
    given = any_store.given()
    given.stage([TaskRef("a", None, 1)])
    given.merge(whole=False, now=1.0, http=True)
    given.stage([TaskRef("z", None, 1)])
    merged = given.merge(whole=True, now=2.0, http=True)
    assert sorted(s.task_id for s in merged.pending) == ["a", "z"]


def test_changed_tasks_are_found_since_a_time(any_store: Store) -> None:
    any_store.add([("a", None), ("b", None)], now=5.0)
    any_store.save(dataclasses.replace(one(any_store, "a"), phase=Phase.ARCHIVED, updated_at=9.0))
    assert [s.task_id for s in any_store.pending_since(0)] == ["b"]
    assert [s.task_id for s in any_store.pending_since(6.0)] == ["a"]


def test_claims_are_ours_and_a_claimed_save_lets_the_lease_go(any_store: Store) -> None:
    any_store.add([("a", None), ("b", None)], now=5.0)
    assert any_store.claim(["a", "b"], "me", now=6.0, lease_s=60) == {"a", "b"}
    a = one(any_store, "a")
    any_store.save(dataclasses.replace(a, polls=1, updated_at=7.0), owner="me")
    assert one(any_store, "a").polls == 1
    with any_store.try_lock("index") as got:
        assert got


def test_a_bare_chunk_can_be_the_first_thing_given(any_store: Store) -> None:
    given = any_store.given()
    assert given.stage_bare(b"x1\nx2\n", 1)
    merged = given.merge(whole=False, now=1.0)
    assert (merged.new, [s.task_id for s in merged.pending]) == (2, ["x1", "x2"])
    given.stage([], first=True)  # nothing left to drop: costs nothing, breaks nothing
    assert given.merge(whole=False, now=2.0).new == 0
