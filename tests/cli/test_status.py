"""`status`: the state read-only, while the daemon holds its lock, as text and as JSON."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.cli.backfill import BackfillReport, format_summary
from archiver.cli.daemon import status_line
from archiver.cli.progress import Progress
from archiver.cli.status import format_status, read_status, status_json
from archiver.errors import UsageError
from archiver.kinds.records import Kind
from archiver.state.store import StateStore
from archiver.tasks.taskstate import Phase

REPO = Path(__file__).resolve().parents[2]


def _fill(store: StateStore) -> None:
    ids = ["done1", "done2", "wait1", "bad1", "gone1", "late1", "half1"]
    store.add(((i, Kind.MUSIC) for i in ids), 1_767_225_600.0)
    ended = {
        "done1": (Phase.ARCHIVED, None),
        "done2": (Phase.ARCHIVED, None),
        "bad1": (Phase.FAILED, "the API says the task failed: 400 Lyrics contained copyrighted"),
        "gone1": (Phase.NOT_FOUND, "neither the music nor the cover endpoint knows task gone1"),
        "late1": (Phase.TIMED_OUT, "not finished after 86400 s (last status PENDING)"),
        "half1": (Phase.PARTIAL, "half1/t2.mp3: 404 expired"),
    }
    for task_id, (phase, error) in ended.items():
        state = store.get_many([task_id])[task_id]
        store.save(dataclasses.replace(state, phase=phase, last_error=error))


def test_status_reads_the_state_while_another_process_holds_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore.open(path) as store:  # the daemon's lock is held throughout
        _fill(store)
        report = read_status(path)
    assert report.counts[Phase.ARCHIVED] == 2
    assert report.counts[Phase.PENDING] == 1
    assert {t.task_id: t.phase for t in report.problems} == {
        "bad1": Phase.FAILED,
        "gone1": Phase.NOT_FOUND,
        "late1": Phase.TIMED_OUT,
        "half1": Phase.PARTIAL,
    }
    text = format_status(report)
    assert "7 tasks in" in text
    assert "2 archived, 1 pending, 1 partial, 1 failed, 1 not found, 1 timed out" in text
    assert "half1/t2.mp3: 404 expired" in text
    assert "timed out  late1" in text


def test_every_count_by_phase_says_the_same_words_in_the_same_order(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore.open(path) as store:
        _fill(store)
        counts = store.counts()
        tasks = list(
            store.get_many(["done1", "done2", "wait1", "bad1", "gone1", "late1", "half1"]).values()
        )
    said = "2 archived, 1 pending, 1 partial, 1 failed, 1 not found, 1 timed out"
    assert f"\n  {said}\n" in format_status(read_status(path))  # `status`
    assert status_line(counts) == said  # systemd's STATUS=
    screen = io.StringIO()
    Progress(screen).start(counts)  # the progress line
    assert screen.getvalue().endswith(f"] 6/7  {said}")
    summary = format_summary(
        BackfillReport(counts, tuple(t for t in tasks if t.phase is not Phase.ARCHIVED), ()),
        "archive",
    )  # backfill's
    assert "pending    wait1" in summary and "not found  gone1" in summary


def test_status_never_writes_the_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore.open(path) as store:
        _fill(store)
    before = path.read_bytes()
    read_status(path)
    assert path.read_bytes() == before


def test_status_json_names_every_problem_with_its_last_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore.open(path) as store:
        _fill(store)
    doc = status_json(read_status(path))
    assert doc["total"] == 7
    assert doc["counts"] == {
        "pending": 1, "archived": 2, "partial": 1, "failed": 1, "not_found": 1, "timed_out": 1,
    }  # fmt: skip
    by_id = {p["task_id"]: p for p in doc["problems"]}
    assert by_id["gone1"]["phase"] == "not_found"
    assert by_id["bad1"]["last_error"].startswith("the API says the task failed")
    assert by_id["late1"]["kind"] == "music"
    json.dumps(doc)


def test_a_missing_state_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no state database"):
        read_status(tmp_path / "nope.sqlite3")


def _cli(*args: str, cwd: Path, wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SUNO_API_KEY", None)
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "archiver.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_cli_status_json_and_exit_codes(tmp_path: Path) -> None:
    config = tmp_path / "archive.toml"
    config.write_text('[storage]\npath = "music"\n', encoding="utf-8")
    missing = _cli("status", "--config", str(config), cwd=tmp_path)
    assert missing.returncode == 2
    assert "no state database" in missing.stderr
    assert "Traceback" not in missing.stderr

    with StateStore.open(tmp_path / "music.state.sqlite3") as store:
        _fill(store)
        result = _cli("status", "--config", str(config), "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["counts"]["archived"] == 2
        assert len(doc["problems"]) == 4
        text = _cli("status", cwd=tmp_path)  # ./archive.toml is the default config
        assert text.returncode == 0, text.stderr
        assert "1 failed" in text.stdout


# root without the two capabilities that let it enter any folder: what a non-root user is to a
# folder it does not own. (Another uid cannot be used: the venv's interpreter may live under
# /root, which only root can enter.)
_NOT_ROOT_FOR_FILES = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_a_state_behind_a_closed_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # As the shipped unit has it: the state in /var/lib/private (0700, the service's dynamic
    # user), `status` run by someone else. Path.is_file() raised PermissionError there.
    private = tmp_path / "private"
    with StateStore.open(private / "state.sqlite3") as store:
        _fill(store)
    config = tmp_path / "archive.toml"
    config.write_text(f'[state]\npath = "{private / "state.sqlite3"}"\n', encoding="utf-8")
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run status as a non-root user")
        probe = subprocess.run([*_NOT_ROOT_FOR_FILES, "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"running as root, setpriv cannot drop capabilities: {probe.stderr!r}")
        wrapper = _NOT_ROOT_FOR_FILES
        os.chown(private, 65534, 65534)  # nobody's folder
        private.chmod(0o700)
    else:
        private.chmod(0o000)
    try:
        result = _cli("status", "--config", str(config), cwd=tmp_path, wrapper=wrapper)
    finally:
        private.chmod(0o700)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(private / "state.sqlite3") in lines[0]
    assert "Permission denied" in lines[0]
