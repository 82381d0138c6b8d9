"""`demo`: archive the stand-in API's sample tasks, so a user sees the whole job run at once."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from mutagen.id3 import ID3

from archiver.cli.backfill import BackfillReport, backfill
from archiver.config import ApiConfig, Config, StateConfig, StorageConfig, TasksConfig
from archiver.sandbox import Sandbox
from archiver.sandbox.scenarios import add_demo_tasks
from archiver.tasks.manifest import decode_manifest
from archiver.tasks.taskstate import Phase, TaskState

DEMO_TIME_SCALE = 0.05  # 60 s between polls of a PENDING task become 3 s


async def run_demo(
    dest: Path,
    *,
    on_start: Callable[[Mapping[Phase, int]], None] | None = None,
    on_change: Callable[[TaskState], None] | None = None,
) -> BackfillReport:
    """Serve the samples on 127.0.0.1, backfill them into `dest`, stop the server."""
    sandbox = Sandbox()
    await sandbox.start()
    try:
        with tempfile.TemporaryDirectory(prefix="suno-archiver-demo-") as work:
            ids_file = Path(work, "tasks.txt")
            ids_file.write_text("\n".join(add_demo_tasks(sandbox)) + "\n", encoding="utf-8")
            config = Config(
                api=ApiConfig(
                    base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_second=20
                ),
                tasks=TasksConfig(give_up_after_s=120),
                # The samples are a few hundred KB: the demo runs on a nearly full disk too.
                storage=StorageConfig(path=dest.resolve(), min_free_bytes=0),
                state=StateConfig(path=Path(work, "state.sqlite3")),
            )
            # The sample's pending task finishes in seconds, not minutes: the polling
            # schedule is compressed to match (DEMO_TIME_SCALE).
            return await backfill(
                config,
                ids_file,
                on_start=on_start,
                on_change=on_change,
                retry_base_s=1.0,
                poll_time_scale=DEMO_TIME_SCALE,
            )
    finally:
        await sandbox.stop()


def expected(report: BackfillReport) -> bool:
    """The samples include one failure by design; anything else not archived is a fault."""
    ended_otherwise = sum(
        n for p, n in report.counts.items() if p not in (Phase.ARCHIVED, Phase.FAILED)
    )
    return report.counts.get(Phase.ARCHIVED, 0) > 0 and not ended_otherwise


def describe_archive(dest: Path) -> str:
    """What the demo wrote: each task's outcome and files, with the tags of each MP3."""
    lines = []
    for manifest_path in sorted(dest.glob("*/manifest.json")):
        doc = decode_manifest(manifest_path.read_bytes())
        lines.append(f"{doc['task_id']}  {doc['kind']}  {doc['status']} → {doc['outcome']}")
        for track in doc.get("tracks", []):
            for role in ("audio", "image"):
                entry = track.get(role) or {}
                if "path" not in entry:
                    continue
                lines.append(f"    {entry['path']:<52} {entry['bytes']:>9,} bytes")
                if role == "audio":
                    tags = ID3(dest / entry["path"])
                    title = tags.get("TIT2")
                    lines.append(
                        f"      title {str(title)!r}, {len(tags)} ID3 frames"
                        + (", cover embedded" if tags.getall("APIC") else "")
                    )
        for entry in [*doc.get("images", []), *doc.get("files", [])]:
            if "path" in entry:
                role = f"  {entry['role']}" if "role" in entry else ""
                lines.append(f"    {entry['path']:<52} {entry['bytes']:>9,} bytes{role}")
        if doc.get("error"):
            lines.append(f"    error {doc['error']['code']}: {doc['error']['message']}")
    return "\n".join(lines)
