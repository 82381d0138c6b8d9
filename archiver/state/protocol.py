"""The state as an interface: the questions everything above `archiver.state` asks it.

Two stores answer them: SQLite (`store.StateStore`, one process, the embedded default) and
PostgreSQL (`pgstore.PgStore`, any number of daemons on one database). Nothing above the state
writes SQL; tests/state/test_store_contract.py runs the same tests against both.

Claims: on PostgreSQL a task is worked by one daemon at a time, under a lease it renews while
it works (`claim`, `renew`, and `save(..., owner=...)` which refuses a lapsed lease in the same
transaction as the step's row); on SQLite the one-process lock already makes every task ours,
so a claim always succeeds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from archiver.kinds.records import Kind
from archiver.tasks.tasklist import TaskRef
from archiver.tasks.taskstate import Phase, TaskState

if TYPE_CHECKING:  # given.py builds on the SQLite store, which imports this module
    from archiver.state.given import Merged
    from archiver.state.outbox import NewEvent


class LeaseLost(Exception):
    """The task's lease lapsed and another daemon may hold it: this daemon's step is not
    saved (what it stored is at worst stored again by the other)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id}: lease lapsed, another daemon took it over")
        self.task_id = task_id


@dataclass(frozen=True, slots=True)
class Daemon:
    """A daemon sharing the state, as its heartbeat row says."""

    daemon_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    leases: int  # tasks it holds a lease on now
    last_answer_at: float | None = None  # its last answer from the API


class Given(Protocol):
    """The tasks given to one engine (its list and what was added since): `state.given`."""

    def stage(self, refs: Iterable[TaskRef], *, first: bool = False) -> None: ...
    def stage_bare(self, data: bytes, first_line: int) -> bool: ...
    def merge(
        self, *, whole: bool, now: float, retry: Collection[Phase] = (), http: bool = False
    ) -> Merged: ...
    def count_born(self, low: float, high: float, phases: Collection[Phase]) -> int: ...
    def not_archived(self) -> list[TaskState]: ...
    @property
    def lost(self) -> bool:
        """True when the set was emptied under the engine (its connection to a shared state
        was replaced): the daemon gives it again whole (list and intake)."""
        ...


class Store(Protocol):
    """What the archiver knows about its tasks, wherever it is kept."""

    @property
    def where(self) -> str:
        """The state as a message names it: a file path, or the URL without its password."""
        ...

    @property
    def shared(self) -> bool:
        """True when other daemons may share this state (claims and leases matter)."""
        ...

    def close(self) -> None: ...
    def given(self) -> Given: ...
    def transaction(self, *, durable: bool = ...) -> AbstractContextManager[Any]: ...

    # tasks
    def add(
        self, refs: Iterable[tuple[str, Kind | None]], now: float, *, via_http: bool = False
    ) -> int: ...
    def http_task_ids(self) -> list[str]: ...
    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskState]: ...
    def save(
        self, state: TaskState, event: NewEvent | None = None, *, owner: str | None = None
    ) -> None: ...
    def reopen(self, task_ids: Iterable[str], phases: Collection[Phase], now: float) -> int: ...
    def counts(self) -> dict[Phase, int]: ...
    def kind_counts(self) -> dict[str, int]: ...
    def problems(self) -> list[TaskState]: ...
    def born_between(
        self, low: float, high: float, phases: Collection[Phase]
    ) -> list[TaskState]: ...
    def phases_in(self, phases: Collection[Phase]) -> dict[str, Phase]: ...
    def adopt(
        self,
        rows: Iterable[tuple[str, Kind, Phase, str | None]],
        now: float,
        event: NewEvent | None = None,
    ) -> int: ...
    def due_now(self, task_id: str, now: float) -> None: ...
    def pending_since(self, since: float) -> list[TaskState]: ...

    # several daemons
    def claim(
        self, task_ids: Iterable[str], owner: str, now: float, lease_s: float
    ) -> set[str]: ...
    def confirm(self, task_id: str, owner: str, now: float, lease_s: float) -> bool: ...
    def renew(self, owner: str, now: float, lease_s: float) -> int: ...
    def release(self, task_ids: Iterable[str], owner: str) -> None: ...
    def heartbeat(self, daemon: Daemon) -> float | None: ...
    def daemons(self, now: float, alive_s: float) -> list[Daemon]: ...
    def leave(self, daemon_id: str) -> None: ...
    def first_to_say(self, key: str, now: float) -> bool: ...
    def try_lock(self, name: str) -> AbstractContextManager[bool]: ...
