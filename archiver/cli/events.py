"""`suno-archiver events`: the task events not yet delivered (or, with --failed, given up),
and `--redeliver ID…` to send events again (a new run of attempts, the same webhook-id).

Listing reads the state without its lock, beside a running daemon. Redelivering writes the
outbox: when a daemon holds the state (SQLite), or is alive on it (PostgreSQL), it marks the
events due and the daemon sends them within a second (its sender looks every POLL_S);
otherwise it sends them itself, now.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from archiver.config import Config
from archiver.errors import UsageError
from archiver.kinds.timestamps import utc_iso_of
from archiver.service.sender import sender_for
from archiver.state import outbox
from archiver.state.opening import open_state, read_state
from archiver.state.outboxes import outbox_of
from archiver.state.protocol import Store
from archiver.state.readonly import shared_state
from archiver.state.store import StateStore
from archiver.storage import open_storage

SEND_NOW_S = 60.0  # `--redeliver` without a daemon: what is not sent by then is left due


def list_events(config: Config, *, failed: bool, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Print the deliveries still due (or given up); return how many."""
    status = outbox.GIVEN_UP if failed else outbox.PENDING
    with read_state(config.state) as store:
        rows = outbox_of(store).listed(status)
        return _print_json(rows, out) if as_json else _print_text(rows, out, failed=failed)


def _print_text(rows: Iterator[outbox.Delivery], out: TextIO, *, failed: bool) -> int:
    count = 0
    for d in rows:
        count += 1
        e = d.event
        when = "given up" if failed else f"next attempt {utc_iso_of(d.next_at)}"
        error = f": {d.last_error}" if d.last_error else ""
        out.write(
            f"{e.id}  {e.msg_id}  {e.type}  {e.task_id}  {d.url}  "
            f"{d.attempts} attempts, {when}{error}\n"
        )
    what = "given up" if failed else "still to make"
    out.write(f"{count} event deliveries {what}\n")
    return count


def _print_json(rows: Iterator[outbox.Delivery], out: TextIO) -> int:
    """One JSON document, written a row at a time (a long outbox is never in memory)."""
    count = 0
    out.write('{"deliveries": [')
    for d in rows:
        out.write(("," if count else "") + "\n  " + json.dumps(_row_json(d), ensure_ascii=False))
        count += 1
    out.write(f'\n], "count": {count}}}\n')
    return count


def _row_json(d: outbox.Delivery) -> dict[str, Any]:
    e = d.event
    return {
        "id": e.id,
        "webhook_id": e.msg_id,
        "type": e.type,
        "task_id": e.task_id,
        "created_at": utc_iso_of(e.created_at),
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": utc_iso_of(d.next_at) if d.status == outbox.PENDING else None,
        "last_error": d.last_error,
    }


@contextmanager
def _writable(config: Config) -> Iterator[tuple[Store, bool]]:
    """The state to write and whether we send (False: a running daemon does)."""
    if config.state.url:  # shared: whether a daemon is alive on it (its heartbeat is recent)
        shared = open_state(config.state)
        try:
            yield shared, not shared.daemons(time.time(), config.state.lease_s)
        finally:
            shared.close()
        return
    try:
        store = StateStore.open(config.state.path)
    except UsageError:
        with shared_state(config.state.path) as shared:
            yield shared, False
        return
    with store:
        yield store, True


async def redeliver(config: Config, ids: list[str], *, out: TextIO = sys.stdout) -> int:
    """Make the events `ids` due again; send them now unless a daemon will. Returns the
    number of deliveries that failed now (0 when the daemon sends them)."""
    urls = config.events.urls
    if not urls:
        raise UsageError("no [events] urls are configured: there is nowhere to send events")
    with _writable(config) as (store, ours):
        missing = outbox_of(store).redeliver(ids, time.time(), urls)
        if missing:
            raise UsageError("no such event: " + ", ".join(missing))
        if not ours:
            out.write(f"{len(ids)} events due again: the running daemon sends them\n")
            return 0
        return await _send_now(config, store, ids, out)


async def _send_now(config: Config, store: Store, ids: list[str], out: TextIO) -> int:
    storage = await open_storage(config.storage)
    try:
        sender = sender_for(config, store, storage)
        assert sender is not None  # redeliver checked that there are urls
        await sender.flush(SEND_NOW_S)
    finally:
        await storage.close()
    wanted = set(ids)
    failed = 0
    for status in (outbox.PENDING, outbox.GIVEN_UP):
        for d in outbox_of(store).listed(status):
            if str(d.event.id) in wanted or d.event.msg_id in wanted:
                failed += 1
                out.write(f"{d.event.id}  {d.url}  not delivered: {d.last_error}\n")
    out.write(f"{len(ids)} events sent again, {failed} deliveries failed (retried later)\n")
    return failed
