"""Browse: index.html and playlist.m3u8 at `index_tracks` tracks (100,000 by default).

The archive is made of manifests only (music tasks of two tracks, with a raw record and
distinct lyrics of about 1 KB, as Suno's custom mode has them); the index reads nothing else.
In process, on a real local storage and a real state:

- baseline: every manifest opened and parsed by plain Python (the floor of a full rebuild);
- full rebuild (`suno-archiver index`): every manifest read, the view stored, both files written;
- incremental update (what `run` does per archived task): the changed task found in the state,
  its one manifest read, its row stored;
- the rewrite that follows (at most once a minute in `run`): both files from the stored rows;
- opening the page in headless chromium (when it is installed): until the first page shows.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from archiver.browse.indexer import Indexer
from archiver.config import StorageConfig
from archiver.kinds.records import Kind
from archiver.state.store import StateStore
from archiver.storage import open_storage
from archiver.tasks.manifest import encode_manifest
from archiver.tasks.taskstate import Phase
from bench.options import Options
from bench.report import Table, mb, verdict

FULL_TARGET_S = 5.0
INCREMENTAL_TARGET_S = 0.050
_VERSE = "Neon lights are calling me, down the highway I can see, "


def _manifest(n: int) -> dict[str, Any]:
    task_id = f"{n:032x}"
    created = 1_735_689_600_000 + n * 60_000
    tracks, raw_tracks = [], []
    for i in (1, 2):
        audio_id = f"{n:024x}{i:08x}"
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


def _make_archive(root: Path, state_path: Path, tasks: int) -> list[str]:
    ids = []
    for n in range(tasks):
        doc = _manifest(n)
        folder = root / doc["task_id"]
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_bytes(encode_manifest(doc))
        ids.append(doc["task_id"])
    with StateStore.open(state_path) as state:
        state.adopt(((t, Kind.MUSIC, Phase.ARCHIVED, "SUCCESS") for t in ids), now=1.0)
    return ids


def _baseline(root: Path, ids: list[str]) -> float:
    t0 = time.perf_counter()
    for task_id in ids:
        json.loads((root / task_id / "manifest.json").read_bytes())
    return time.perf_counter() - t0


async def _index_runs(root: Path, state_path: Path, ids: list[str]) -> dict[str, float]:
    times: dict[str, float] = {}
    storage = await open_storage(StorageConfig(path=root))
    try:
        with StateStore.open(state_path) as state:
            indexer = Indexer(state, storage)
            t0 = time.perf_counter()
            await indexer.rebuild()
            times["full"] = time.perf_counter() - t0

            # One task archived again (as `run` sees it): its row, then the rewrite.
            changed = state.get_many([ids[len(ids) // 2]])[ids[len(ids) // 2]]
            state.save(replace(changed, updated_at=time.time()))
            t0 = time.perf_counter()
            read = await indexer.update_rows()
            times["incremental"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await indexer.write(read=read)
            times["rewrite"] = time.perf_counter() - t0
    finally:
        await storage.close()
    return times


def _open_in_chromium(page: Path) -> tuple[float, int] | str:
    """Seconds until the first page of tracks shows, and how many; or why not measured."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        return "selenium not installed"
    if not (chromium and driver):
        return "chromium or chromedriver not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    browser = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=driver), options=options
    )
    try:
        t0 = time.perf_counter()
        browser.get(page.as_uri())  # returns after the load event: the first page is shown
        seconds = time.perf_counter() - t0
        return seconds, len(browser.find_elements("css selector", "li.item"))
    finally:
        browser.quit()


def measure(opts: Options, work: Path) -> Table:
    table = Table(
        f"Browse: index.html and playlist.m3u8 at {opts.index_tracks:,} tracks",
        ["step", "time", "x baseline", "target"],
    )
    root, state_path = work / "archive", work / "state.sqlite3"
    ids = _make_archive(root, state_path, opts.index_tracks // 2)
    base = _baseline(root, ids)
    times = asyncio.run(_index_runs(root, state_path, ids))
    table.add(f"baseline: parse {len(ids):,} manifests (json.loads)", f"{base:.2f} s", "1.0", "-")
    table.add(
        "full rebuild (`suno-archiver index`)",
        f"{times['full']:.2f} s",
        f"{times['full'] / base:.1f}",
        f"<= {FULL_TARGET_S:g} s: {verdict(times['full'] <= FULL_TARGET_S)}",
    )
    incremental = times["incremental"]
    table.add(
        "incremental update: one task's row (`run`, per archived task)",
        f"{incremental * 1000:.1f} ms",
        f"{incremental / base:.3f}",
        f"<= {INCREMENTAL_TARGET_S * 1000:g} ms: {verdict(incremental <= INCREMENTAL_TARGET_S)}",
    )
    table.add(
        "rewrite of both files from the stored rows (`run`: <= once a minute)",
        f"{times['rewrite']:.2f} s",
        f"{times['rewrite'] / base:.1f}",
        "-",
    )
    opened = _open_in_chromium(root / "index.html") if opts.open_page else "not asked (--quick)"
    if isinstance(opened, str):
        table.notes.append(f"opening the page in chromium not measured: {opened}")
    else:
        seconds, shown = opened
        table.add(
            f"open index.html in headless chromium ({shown} shown)", f"{seconds:.2f} s", "-", "-"
        )
    page, playlist = (root / "index.html").stat().st_size, (root / "playlist.m3u8").stat().st_size
    table.notes.append(
        f"index.html {mb(page)} MB (lyrics included: parsed only when asked for), "
        f"playlist.m3u8 {mb(playlist)} MB; {len(ids):,} manifests of "
        f"{mb((root / ids[0] / 'manifest.json').stat().st_size * len(ids))} MB"
    )
    return table
