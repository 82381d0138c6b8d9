"""index.html and playlist.m3u8 kept current: by `backfill`, by `run` (debounced, and at
shutdown), and rebuilt by `suno-archiver index`; and the album/artist frames players group by."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

from backfills import FAST_POLLS, Site
from browsefiles import page_tasks
from clirun import Cli
from daemons import Site as DaemonSite
from mutagen.id3 import ID3

from archiver.browse.indexer import Indexer
from archiver.cli.backfill import backfill
from archiver.config import IndexConfig, TaggingConfig
from archiver.sandbox import Sandbox, fake_hex_id
from archiver.state.store import StateStore
from archiver.storage import open_storage


def playlist(archive: Path) -> list[tuple[int, str, Path]]:
    lines = (archive / "playlist.m3u8").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    entries = []
    for info, path in zip(lines[1::2], lines[2::2], strict=True):
        seconds, title = re.fullmatch(r"#EXTINF:(-?\d+),(.*)", info).groups()  # type: ignore[union-attr]
        entries.append((int(seconds), title, archive / path))
    return entries


async def test_backfill_writes_both_and_every_playlist_line_is_an_archived_mp3(site: Site) -> None:
    short, long = fake_hex_id("m3u:short"), fake_hex_id("m3u:long")
    site.sb.add_music(short, title="Short One", seconds=2.0)
    site.sb.add_music(long, title="Long One", seconds=5.0)
    await site.backfill(short, long)

    entries = playlist(site.archive)
    durations = {}
    for task in (short, long):
        for track in site.manifest(task)["tracks"]:
            durations[site.archive / track["audio"]["path"]] = (track["duration"], track["title"])
    assert len(entries) == 4
    for seconds, title, path in entries:
        assert path.is_file()
        assert (seconds, title) == (round(durations[path][0]), durations[path][1])
    assert {t["i"] for t in page_tasks(site.archive)} == {short, long}


async def test_a_later_backfill_reads_only_the_new_manifest(site: Site) -> None:
    first, second = fake_hex_id("inc:1"), fake_hex_id("inc:2")
    site.sb.add_music(first)
    site.sb.add_music(second)
    await site.backfill(first)
    (site.archive / first / "manifest.json").rename(site.archive / "kept-aside.json")

    await site.backfill(first, second)  # `first` is not read again: its row is in the state

    assert {t["i"] for t in page_tasks(site.archive)} == {first, second}
    assert len(playlist(site.archive)) == 4


async def test_refresh_writes_only_when_something_changed_or_a_file_is_gone(site: Site) -> None:
    task = fake_hex_id("refresh")
    site.sb.add_music(task)
    await site.backfill(task)
    before = (site.archive / "index.html").read_bytes()

    tasks = page_tasks(site.archive)
    with StateStore.open(site.state) as state:
        storage = await open_storage(site.config().storage)
        try:
            assert await Indexer(state, storage).refresh() is None  # all current
            shutil.rmtree(site.archive / "browse")  # deleted: nothing lost
            written = await Indexer(state, storage).refresh()
        finally:
            await storage.close()
    assert written is not None and (written.tasks, written.tracks, written.read) == (1, 2, 0)
    assert written.shards == 1 and (site.archive / "index.html").read_bytes() == before
    assert page_tasks(site.archive) == tasks


async def test_index_disabled_writes_neither(site: Site) -> None:
    task = fake_hex_id("no-index")
    site.sb.add_music(task)
    site.ids_file.write_text(f"{task}\n", encoding="utf-8")
    config = replace(site.config(), index=IndexConfig(enabled=False))

    report = await backfill(config, site.ids_file, retry_base_s=0.05, poll_time_scale=FAST_POLLS)

    assert report.complete

    for name in ("index.html", "playlist.m3u8", "browse", "playlists"):
        assert not (site.archive / name).exists()


async def test_the_index_command_rebuilds_both_from_the_manifests(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cli = Cli(sandbox, tmp_path)
    task = fake_hex_id("cli-index")
    sandbox.add_music(task, title="Rebuilt")
    assert (await cli.run("backfill", str(cli.ids(task)))).code == 0
    (cli.archive / "index.html").unlink()
    (cli.archive / "playlist.m3u8").write_text("stale", encoding="utf-8")
    shutil.rmtree(cli.archive / "browse")
    cli.env.pop("SUNO_API_KEY")  # `index` asks the API nothing

    result = await cli.run("index")

    assert result.code == 0, result.stderr
    assert "index.html: 2 tracks in 1 tasks (1 manifests read), in 1 shards" in result.stdout
    assert [t["i"] for t in page_tasks(cli.archive)] == [task]
    assert [title for _, title, _ in playlist(cli.archive)] == ["Rebuilt", "Rebuilt"]
    part = (cli.archive / "playlists" / "00000.m3u8").read_text(encoding="utf-8").splitlines()
    assert (
        part[2:]
        == [  # the shard's playlist: its paths from the playlists folder
            line if line.startswith("#") else f"../{line}"
            for line in (cli.archive / "playlist.m3u8").read_text(encoding="utf-8").splitlines()[1:]
        ]
    )


async def test_the_index_command_names_a_state_in_use(sandbox: Sandbox, tmp_path: Path) -> None:
    cli = Cli(sandbox, tmp_path)
    with StateStore.open(tmp_path / "archive.state.sqlite3"):
        result = await cli.run("index")
    assert result.code == 2
    assert result.stderr.startswith("suno-archiver: error: ") and "another suno-archiver" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


async def test_run_writes_at_most_once_a_minute_and_at_shutdown(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    site = DaemonSite(tmp_path, sandbox)
    site.configure()
    songs = [fake_hex_id(f"daemon-index:{n}") for n in range(3)]
    for song in songs:
        sandbox.add_music(song)
    site.list_tasks(songs[0])
    daemon = await site.daemon()
    try:
        await site.wait_archived(songs[0])
        await daemon.wait_for("index_written")  # the first refresh, at start
        site.list_tasks(*songs)
        await site.wait_archived(*songs)
        assert await daemon.stop() == 0
    finally:
        await daemon.kill()

    written = daemon.named("index_written")
    assert len(written) <= 2  # at start, then at shutdown: not once per task
    assert written[-1]["tasks"] == 3 and written[-1]["tracks"] == 6
    assert {t["i"] for t in page_tasks(site.archive)} == set(songs)


async def test_album_and_artist_frames_come_from_the_templates(site: Site) -> None:
    default, custom = fake_hex_id("talb:default"), fake_hex_id("talb:custom")
    site.sb.add_music(default, title="Neon Highway")
    await site.backfill(default)
    site.tagging = TaggingConfig(album="{model} {year}: {task_title}", artist="{tags}")
    site.sb.add_music(custom, title="Night Drive", tags="synthwave")
    await site.backfill(custom)

    for task, album, artist in (
        (default, "Neon Highway", "Suno"),
        (custom, "chirp-v4 {year}: Night Drive", "synthwave"),
    ):
        for track in site.manifest(task)["tracks"]:
            album = album.format(year=track["created_at"][:4])  # the year of its createTime
            tags = ID3(site.archive / track["audio"]["path"])
            assert (str(tags["TALB"]), str(tags["TPE1"])) == (album, artist)
            assert str(tags["TIT2"]) == track["title"]  # the SPEC's frames as they were
