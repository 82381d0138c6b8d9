"""Browse: the page, its shards and the playlists at `index_tracks` tracks (100,000 by default;
`--tracks 1000000` for the million the targets are set at).

The archive is made of manifests only (music tasks of two tracks, with a raw record and
distinct lyrics of about 1 KB, as Suno's custom mode has them); the index reads nothing else.
On a real local storage and a real state:

- baseline: every manifest opened and parsed by plain Python (the floor of a full rebuild);
- full rebuild: `suno-archiver index` as a child process (its wall time and peak RSS);
- incremental update (what `run` does per archived task): the changed task found in the state,
  its one manifest read, its row stored; then the rewrite that follows (its own shard);
- 100 new tasks, then the rewrite (`run`, at most once a minute): the bytes written locally,
  and the bytes uploaded to moto's S3 server (the bucket holds only what that rewrite put);
  the baseline is what a rewrite of everything would write (the old single page's cost);
- headless chromium: the page opened until its first 50 rows show, and a search for an
  audio ID of the oldest task until its track shows (every shard's words read).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from archiver.browse.indexer import SHARD_TASKS, Indexer, Written
from archiver.browse.render import INDEX_KEY, PLAYLIST_FOLDER, PLAYLIST_KEY, SHARD_FOLDER
from archiver.browse.store import ViewStore
from archiver.browse.view import view_row
from archiver.config import StorageConfig
from archiver.kinds.records import Kind
from archiver.state.store import StateStore
from archiver.storage import open_storage
from archiver.tasks.manifest import encode_manifest
from archiver.tasks.taskstate import Phase
from bench.options import Options
from bench.procs import MotoS3, archiver_command, run_child, s3_env
from bench.report import Table, mb, verdict

FULL_TARGET_S = 60.0  # at 1,000,000 tracks
FULL_RSS_TARGET = 150 * 1024 * 1024
INCREMENTAL_TARGET_S = 0.050
APPENDED = 100  # new tasks before the measured rewrite
REWRITE_TARGET_BYTES = 2 * 1024 * 1024
FIRST_ROWS_TARGET_S = 1.5  # at 1,000,000 tracks (1 s at 100,000)
SEARCH_TARGET_S = 5.0
_VERSE = "Neon lights are calling me, down the highway I can see, "


def _manifest(n: int) -> dict[str, Any]:
    task_id = f"{n:032x}"
    created = 1_735_689_600_000 + n * 60_000
    tracks, raw_tracks = [], []
    for i in (1, 2):
        audio_id = _audio_id(n, i)
        lyrics = f"[Verse {n}]\n" + (_VERSE * 8) + f"\n[Chorus]\n{n} " + (_VERSE * 8)
        title = f"Neon Highway {n}"
        tracks.append(
            {
                "audio_id": audio_id,
                "title": title,
                "tags": "synthwave, driving, 80s",
                "duration": 180.0 + i + n % 60,
                "model_name": "chirp-v4",
                "prompt": lyrics,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created / 1000)),
                "audio": {
                    "path": f"{task_id}/{audio_id}.mp3",
                    "bytes": 2_900_000,
                    "sha256": "0" * 64,
                    "content_type": "audio/mpeg",
                    "source_url": f"https://cdn.example.com/{audio_id}.mp3",
                    "source_sha256": "1" * 64,
                    "source_bytes": 2_899_000,
                },
                "image": {
                    "path": f"{task_id}/{audio_id}.jpeg",
                    "bytes": 180_000,
                    "sha256": "2" * 64,
                    "content_type": "image/jpeg",
                    "source_url": f"https://cdn.example.com/{audio_id}.jpeg",
                },
            }
        )
        raw_tracks.append({"id": audio_id, "title": title, "prompt": lyrics, "createTime": created})
    return {
        "schema_version": 1,
        "task_id": task_id,
        "kind": "music",
        "status": "SUCCESS",
        "outcome": "archived",
        "error": None,
        "tracks": tracks,
        "raw": {"taskId": task_id, "status": "SUCCESS", "response": {"sunoData": raw_tracks}},
        "archived_at": "2026-01-01T00:00:00Z",
        "archiver": {"name": "suno-archiver", "version": "bench"},
    }


def _audio_id(n: int, i: int) -> str:
    return f"{n:024x}{i:08x}"


def _write_manifests(root: Path, numbers: range) -> list[str]:
    ids = []
    for n in numbers:
        doc = _manifest(n)
        folder = root / doc["task_id"]
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_bytes(encode_manifest(doc))
        ids.append(doc["task_id"])
    return ids


def _adopt(state_path: Path, ids: list[str], now: float) -> None:
    with StateStore.open(state_path) as state:
        state.adopt(((t, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS") for t in ids), now=now)


def _baseline(root: Path, ids: list[str]) -> float:
    t0 = time.perf_counter()
    for task_id in ids:
        json.loads((root / task_id / "manifest.json").read_bytes())
    return time.perf_counter() - t0


def _full_index(work: Path, root: Path, state_path: Path) -> tuple[float, int, str]:
    """`suno-archiver index` in a child: (wall s, peak RSS bytes, its line)."""
    config = work / "index.toml"
    config.write_text(
        f"[storage]\npath = {json.dumps(str(root))}\nmin_free_bytes = 0\n"
        f"[state]\npath = {json.dumps(str(state_path))}\n"
    )
    log = work / "index.log"
    run = run_child([*archiver_command(), "index", "--config", str(config)], log=log, cwd=work)
    if run.returncode != 0:
        raise RuntimeError(f"suno-archiver index exited {run.returncode}: {log.read_text()[-500:]}")
    return run.wall_s, run.max_rss, log.read_text().strip().splitlines()[-1]


def _copy_state(source: Path, target: Path) -> None:
    """A consistent copy of a state (SQLite's backup: the WAL included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


async def _local_steps(root: Path, state_path: Path, ids: list[str]) -> dict[str, Any]:
    """One task archived again, then APPENDED new tasks, each followed by its rewrite."""
    out: dict[str, Any] = {}
    storage = await open_storage(StorageConfig(path=root, min_free_bytes=0))
    try:
        with StateStore.open(state_path) as state:
            indexer = Indexer(state, storage)
            await indexer.refresh()  # this process's first write (the page): not measured
            changed = ids[len(ids) // 2]
            state.adopt([(changed, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS")], now=time.time())
            t0 = time.perf_counter()
            read = await indexer.update_rows()
            out["incremental"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out["changed"] = await indexer.write(read=read)
            out["changed_s"] = time.perf_counter() - t0

            new = _write_manifests(root, range(len(ids), len(ids) + APPENDED))
            state.adopt(((t, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS") for t in new), now=time.time())
            out["new_ids"] = new
            t0 = time.perf_counter()
            read = await indexer.update_rows()
            out["appended"] = await indexer.write(read=read)
            out["appended_s"] = time.perf_counter() - t0
    finally:
        await storage.close()
    return out


async def _s3_rewrite(work: Path, root: Path, state_path: Path, new_ids: list[str]) -> int:
    """The same APPENDED tasks' rewrite into an empty bucket, from a copy of the state as it
    was before them: the bytes moto's server holds after it (every key is put once; the
    page too, as a daemon's first write after its start puts it)."""
    folder = work / "s3"
    folder.mkdir(exist_ok=True)
    os.environ.update(s3_env())
    with MotoS3("browse-bench", folder / "moto.log") as s3:
        config = StorageConfig(
            backend="s3",
            bucket=s3.bucket,
            endpoint_url=s3.url,
            region="us-east-1",
            cache_dir=folder / "cache",
        )
        storage = await open_storage(config)
        try:
            with StateStore.open(state_path) as state:
                rows = [
                    (view_row(json.loads((root / t / "manifest.json").read_bytes())), time.time())
                    for t in new_ids
                ]
                ViewStore(state).put(rows, shard_tasks=SHARD_TASKS)
                await Indexer(state, storage).write(read=len(rows))
        finally:
            await storage.close()
        client = s3.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
        return sum(o["Size"] for page in pages for o in page.get("Contents", []))


def _browser() -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def _until(browser: Any, script: str, timeout_s: float = 120.0) -> float:
    """Seconds until `script` returns true (polled every 10 ms)."""
    t0 = time.perf_counter()
    while not browser.execute_script(script):
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(script)
        time.sleep(0.01)
    return time.perf_counter() - t0


def _in_chromium(page: Path, audio_id: str, task_id: str) -> dict[str, float] | str:
    """Seconds until the first 50 rows show; until a search for `audio_id` shows its track,
    and until the search has read every shard. Or why not measured."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium or chromedriver not installed"
    os.environ.setdefault("SE_OFFLINE", "true")
    browser = _browser()
    try:
        t0 = time.perf_counter()
        browser.get(page.as_uri())
        _until(browser, "return document.querySelectorAll('#list > li.item').length >= 50")
        first = time.perf_counter() - t0
        browser.execute_script(
            "const q = document.getElementById('q'); q.value = arguments[0];"
            "q.dispatchEvent(new Event('input'));",
            audio_id,
        )
        t0 = time.perf_counter()
        _until(browser, f"return !!document.querySelector('li[data-task=\"{task_id}\"]')")
        found = time.perf_counter() - t0
        _until(browser, "return document.getElementById('list').ariaBusy === 'false'")
        done = time.perf_counter() - t0
    finally:
        browser.quit()
    return {"first": first, "found": found, "done": done}


def _tree_bytes(root: Path) -> int:
    total = sum(p.stat().st_size for p in (root / INDEX_KEY, root / PLAYLIST_KEY))
    for folder in (SHARD_FOLDER, PLAYLIST_FOLDER):
        total += sum(p.stat().st_size for p in (root / folder).rglob("*") if p.is_file())
    return total


def measure(opts: Options, work: Path) -> Table:
    tracks = opts.index_tracks
    table = Table(
        f"Browse: index.html, its shards and the playlists at {tracks:,} tracks",
        ["step", "measured", "baseline", "target"],
    )
    root, state_path = work / "archive", work / "state.sqlite3"
    t0 = time.perf_counter()
    ids = _write_manifests(root, range(tracks // 2))
    _adopt(state_path, ids, now=1.0)
    made = time.perf_counter() - t0
    base = _baseline(root, ids)
    full_s, full_rss, said = _full_index(work, root, state_path)
    full_met = full_s <= FULL_TARGET_S and full_rss <= FULL_RSS_TARGET
    table.add(
        "full rebuild (`suno-archiver index`, a child process)",
        f"{full_s:.1f} s, {mb(full_rss)} MB peak RSS",
        f"{base:.1f} s to parse the {len(ids):,} manifests (json.loads)",
        f"<= {FULL_TARGET_S:g} s, <= 150 MB at 1,000,000 tracks: {verdict(full_met)}",
    )
    everything = _tree_bytes(root)
    s3_state = work / "state-s3.sqlite3"
    _copy_state(state_path, s3_state)
    steps = asyncio.run(_local_steps(root, state_path, ids))
    incremental = steps["incremental"]
    table.add(
        "incremental update: one task's row (`run`, per archived task)",
        f"{incremental * 1000:.1f} ms",
        "-",
        f"<= {INCREMENTAL_TARGET_S * 1000:g} ms: {verdict(incremental <= INCREMENTAL_TARGET_S)}",
    )
    changed: Written = steps["changed"]
    table.add(
        "rewrite after that task (archived again: its own shard)",
        f"{steps['changed_s']:.2f} s, {mb(changed.bytes)} MB in {changed.shards} shard",
        f"{mb(everything)} MB: every file written again",
        "-",
    )
    appended: Written = steps["appended"]
    uploaded = asyncio.run(_s3_rewrite(work, root, s3_state, steps["new_ids"]))
    both = appended.bytes + uploaded
    table.add(
        f"rewrite after {APPENDED} new tasks: written locally + uploaded to S3",
        f"{mb(appended.bytes)} + {mb(uploaded)} MB ({appended.shards} shards), "
        f"{steps['appended_s']:.2f} s locally",
        f"{mb(everything)} + {mb(everything)} MB",
        f"<= 2 MB in all: {verdict(both <= REWRITE_TARGET_BYTES)}",
    )
    if opts.open_page:
        oldest = ids[0]
        opened = _in_chromium(root / INDEX_KEY, _audio_id(0, 2), oldest)
    else:
        opened = "not asked (--quick)"
    if isinstance(opened, str):
        table.notes.append(f"the page in chromium not measured: {opened}")
    else:
        target = 1.0 if tracks <= 100_000 else FIRST_ROWS_TARGET_S
        table.add(
            "open index.html in headless chromium: the first 50 rows shown",
            f"{opened['first']:.2f} s",
            "-",
            f"<= {target:g} s: {verdict(opened['first'] <= target)}",
        )
        table.add(
            "search for an audio ID of the oldest task: its track shown",
            f"{opened['found']:.2f} s (every shard searched: {opened['done']:.2f} s)",
            "-",
            f"<= {SEARCH_TARGET_S:g} s: {verdict(opened['found'] <= SEARCH_TARGET_S)}",
        )
    shards = sum(1 for _ in (root / SHARD_FOLDER / "t").iterdir())
    words = sum(p.stat().st_size for p in (root / SHARD_FOLDER / "s").iterdir())
    table.notes.append(
        f"{shards:,} shards; index.html {(root / INDEX_KEY).stat().st_size:,} bytes, "
        f"{SHARD_FOLDER}/ and {PLAYLIST_FOLDER}/ and playlist.m3u8 {mb(everything)} MB "
        f"(the words a search reads: {mb(words)} MB); {len(ids):,} manifests of "
        f"{mb((root / ids[0] / 'manifest.json').stat().st_size * len(ids))} MB, "
        f"made in {made:.0f} s (not measured)"
    )
    table.notes.append(f"`index` said: {said}")
    return table
