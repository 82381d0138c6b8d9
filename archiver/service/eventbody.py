"""What an event says (SPEC "Task events"): the body an event's row becomes when it is sent or
served, and the `files` that `GET /tasks/<id>` shares with it.

The row holds what the task's save knew (type, task, phase, error); the manifest's files are
read from storage when the body is made, with URLs made then too: a presigned URL is fresh on
every attempt, and an event sent late names the files where they are now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from archiver.fetch.archiving import read_manifest
from archiver.kinds.timestamps import utc_iso_of
from archiver.state.outbox import Event
from archiver.storage import Storage
from archiver.tasks.manifest import OUTCOMES, listed_files, manifest_key

FileUrl = Callable[[str], str | None]  # an archive path → where it is served (None: nowhere)


class EventBodies:
    def __init__(self, storage: Storage, url_of: FileUrl) -> None:
        self._storage = storage
        self._url_of = url_of

    async def body(self, event: Event) -> bytes:
        """The POST body of `event`, as sent (compact UTF-8 JSON). Raises StorageError when
        its manifest cannot be read."""
        return json.dumps(
            await self.item(event), ensure_ascii=False, separators=(",", ":")
        ).encode()

    async def item(self, event: Event) -> dict[str, Any]:
        """{"type", "timestamp", "data"}: the body as a document."""
        manifest = None
        if event.outcome in OUTCOMES:  # archived, partial or failed: a manifest says more
            manifest = await read_manifest(self._storage, event.task_id)
        return {
            "type": event.type,
            "timestamp": utc_iso_of(event.created_at),
            "data": self.data(event.task_id, event.kind, event.outcome, event.error, manifest),
        }

    async def task_files(self, task_id: str) -> list[dict[str, Any]]:
        """The files of a task's manifest with their URLs ([] without one): GET /tasks/<id>."""
        doc = await read_manifest(self._storage, task_id)
        return self._files(doc) if doc is not None else []

    def data(
        self,
        task_id: str,
        kind: str | None,
        outcome: str,
        error: str | None,
        manifest: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The event's `data`: the task, its outcome and error, its manifest and files."""
        api_error = manifest.get("error") if manifest is not None else None
        return {
            "task_id": task_id,
            "kind": kind,
            "outcome": outcome,
            "error": api_error or ({"code": None, "message": error} if error else None),
            "manifest": self._with_url({"path": manifest_key(task_id)})
            if manifest is not None
            else None,
            "files": self._files(manifest) if manifest is not None else [],
        }

    def _files(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        files = []
        for entry, role, audio_id in listed_files(manifest):
            item: dict[str, Any] = {"path": entry["path"], "role": role}
            if audio_id is not None:
                item["audio_id"] = audio_id
            item.update(
                bytes=entry["bytes"], sha256=entry["sha256"], content_type=entry.get("content_type")
            )
            files.append(self._with_url(item))
        return files

    def _with_url(self, item: dict[str, Any]) -> dict[str, Any]:
        url = self._url_of(item["path"])
        if url is not None:
            item["url"] = url
        return item
