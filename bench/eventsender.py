"""`python -m bench.eventsender STATE ARCHIVE URL SECRET`: the events sender alone, as the
daemon runs it, until the outbox of STATE is delivered to URL (bench/events.py measures its
peak memory through bench/launch.py)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from archiver.config.whsec import secret_key
from archiver.service.eventbody import EventBodies
from archiver.service.logs import configure_logging
from archiver.service.sender import EventSender
from archiver.state import outbox
from archiver.state.outboxes import outbox_of
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage


async def _deliver(state: Path, archive: Path, url: str, secret: str) -> None:
    with StateStore.open(state) as store:
        sender = EventSender(
            store,
            EventBodies(LocalStorage(archive), lambda path: f"https://files.example/{path}"),
            urls=(url,),
            key=secret_key(secret),
            timeout_s=10.0,
            give_up_after_s=3600.0,
        )
        await sender.flush(3600.0)
        left = len(list(outbox_of(store).listed(outbox.PENDING)))
        if left:
            raise SystemExit(f"{left} deliveries not made")


if __name__ == "__main__":
    configure_logging(level=logging.WARNING)  # not a line per event
    asyncio.run(_deliver(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]))
