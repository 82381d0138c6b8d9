"""The commands on a PostgreSQL state, as a user runs them (real subprocesses, a real server):
copy-state moves a SQLite state over row for row and refuses a non-empty target; status shows
it with the daemons alive; the password never shows; a server that does not answer is one line,
exit 2."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pgcluster import PASSWORD, PgCluster

from archiver.kinds.records import Kind
from archiver.state.outbox import GIVEN_UP, PENDING, NewEvent
from archiver.state.outboxes import outbox_of
from archiver.state.pgstore import PgStore
from archiver.state.protocol import Daemon
from archiver.state.store import StateStore
from archiver.tasks.events import ARCHIVED
from archiver.tasks.taskstate import Phase

URLS = ("https://a.example/hook", "https://b.example/hook")
REPO = Path(__file__).resolve().parent.parent.parent


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archiver.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _sqlite_state(path: Path) -> None:
    with StateStore.open(path) as store:
        store.add([(f"t{i:05d}", Kind.MUSIC) for i in range(1200)], now=1000.0)
        store.add([("http1", None)], now=1001.0, via_http=True)
        done = store.get_many(["t00001"])["t00001"]
        store.save(
            dataclasses.replace(
                done, phase=Phase.ARCHIVED, polls=4, attempts=1, completed_at=999.5, updated_at=2e3
            )
        )
        db = store.connection
        db.execute(
            "INSERT INTO view (task_id, seen_at, shard, sort_key, data, lyrics, m3u, hay, "
            "tracks) VALUES ('t00001', 2000.0, 1, 'k', '{}', '', '#m3u', 'hay', 2)"
        )
        db.execute("INSERT INTO view_shards (shard, changes, written) VALUES (1, 3, 2)")
        db.execute("INSERT INTO view_looked VALUES (1, 1999.0)")
        # task events: one pruned (its ID is never given again), one delivered to one URL and
        # pending to the other, one given up
        for n, task_id in enumerate(["t00002", "t00003", "t00004"]):
            task = store.get_many([task_id])[task_id]
            store.save(task, NewEvent(ARCHIVED, task_id, "music", "archived", None, 3e3 + n, URLS))
        sqlite_outbox = outbox_of(store)
        assert sqlite_outbox.prune(3e3 + 0.5) == 1
        first, _, third, fourth = sqlite_outbox.claim(4e3, 30.0, 10, URLS)
        sqlite_outbox.delivered(first, 4e3)
        sqlite_outbox.given_up(third, "HTTP 500", 4e3)
        sqlite_outbox.given_up(fourth, "HTTP 500", 4e3)


def _config(folder: Path, url: str) -> Path:
    path = folder / "pg.toml"
    path.write_text(
        f'[storage]\npath = "archive"\n[state]\nurl = "{url}"\nshared_local = true\n',
        encoding="utf-8",
    )
    return path


def test_copy_state_moves_every_row_and_refuses_a_non_empty_target(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    (tmp_path / "archive").mkdir()
    _sqlite_state(tmp_path / "archive.state.sqlite3")
    url = pg_cluster.url(pg_cluster.database(), password=False)
    env = {"PGPASSWORD": PASSWORD}
    done = cli("copy-state", "--to", url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "1,201 tasks, 1 index rows and 2 task events copied" in done.stdout
    with (
        StateStore.open(tmp_path / "archive.state.sqlite3") as source,
        PgStore.open(url, "t", password=PASSWORD) as target,
    ):
        ids = [f"t{i:05d}" for i in range(1200)] + ["http1"]
        assert target.get_many(ids) == source.get_many(ids)
        assert target.http_task_ids() == ["http1"]
        with target.transaction() as pg:
            assert pg.execute("SELECT since FROM view_looked").fetchone() == (1999.0,)
            assert pg.execute("SELECT shard, changes, written FROM view_shards").fetchall() == [
                (1, 3, 2)
            ]
        # the events with their feed IDs and webhook-ids, every delivery as it was
        mine, theirs = outbox_of(source), outbox_of(target)
        assert theirs.after(0, 10) == mine.after(0, 10) and len(mine.after(0, 10)) == 2
        for status in (PENDING, GIVEN_UP):
            assert list(theirs.listed(status)) == list(mine.listed(status))
        assert [d.url for d in theirs.listed(PENDING)] == [URLS[1]]
        # delivered ones stay delivered (never due again), and a new event's ID comes after
        # every ID the SQLite state gave, the pruned one's too
        assert [d.url for d in theirs.claim(5e3, 30.0, 10, URLS)] == [URLS[1]]
        target.save(target.get_many(["t00001"])["t00001"], NewEvent(
            ARCHIVED, "t00009", "music", "archived", None, 6e3, URLS))  # fmt: skip
        assert [e.id for e in theirs.after(0, 10)] == [2, 3, 4]
    again = cli("copy-state", "--to", url, cwd=tmp_path, env=env)
    assert again.returncode == 2
    assert "already holds a state" in again.stderr and again.stderr.count("\n") == 1


def test_status_on_postgresql_lists_the_daemons_and_never_the_password(
    tmp_path: Path, pg_url: str
) -> None:
    with PgStore.open(pg_url, "t") as store:
        store.add([("a", Kind.MUSIC), ("b", None)], now=1.0)
        store.claim(["a"], "d1", now=time.time(), lease_s=600)
        store.heartbeat(Daemon("d1", "host-one", 4242, time.time(), time.time(), 0))
    config = _config(tmp_path, pg_url)
    shown = cli("status", "--config", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert PASSWORD not in shown.stdout + shown.stderr
    assert "2 tasks in postgresql://archiver:***@127.0.0.1" in shown.stdout
    assert "host-one pid 4242" in shown.stdout and "1 leases" in shown.stdout
    doc = json.loads(cli("status", "--json", "--config", str(config), cwd=tmp_path).stdout)
    assert [(d["host"], d["leases"]) for d in doc["daemons"]] == [("host-one", 1)]


def test_a_database_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://u:{PASSWORD}@127.0.0.1:9/nowhere"  # port 9: nothing listens
    config = _config(tmp_path, url)
    (tmp_path / "ids.txt").write_text("a" * 32 + "\n")
    (tmp_path / "archive").mkdir()
    for args in (["status"], ["backfill", "ids.txt"], ["reindex"]):
        done = cli(*args, "--config", str(config), cwd=tmp_path, env={"SUNO_API_KEY": "k" * 32})
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert "127.0.0.1:9" in done.stderr and PASSWORD not in done.stderr


def test_the_index_command_writes_the_browse_files_from_a_postgresql_state(
    tmp_path: Path, pg_url: str
) -> None:
    (tmp_path / "archive").mkdir()
    done = cli("index", "--config", str(_config(tmp_path, pg_url)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "archive" / "index.html").exists()
    assert (tmp_path / "archive" / "browse" / "shards.js").exists()
