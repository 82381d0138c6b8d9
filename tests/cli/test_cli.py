"""The command line as a user runs it: a real `suno-archiver` process, real signals.

The stand-in API runs in the test process (so a test can inject faults and count calls); the
CLI runs as `python -m archiver.cli` in a child process with its own working folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from archive_checks import TEMP_DIR, verify_archive
from clirun import Cli, assert_one_line_error
from s3server import MotoServer

from archiver.sandbox import Sandbox, fake_hex_id
from archiver.sandbox.cdn import FileFaults

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def cli(sandbox: Sandbox, tmp_path: Path) -> Cli:
    return Cli(sandbox, tmp_path)


async def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def part_files(archive: Path) -> list[Path]:
    temp = archive / TEMP_DIR
    return [p for p in temp.iterdir() if p.suffix == ".part"] if temp.exists() else []


# --- exit codes ----------------------------------------------------------------------------


async def test_backfill_exits_0_when_everything_is_archived(cli: Cli) -> None:
    tasks = [fake_hex_id(f"cli:{n}") for n in range(2)]
    for task in tasks:
        cli.sb.add_music(task)

    result = await cli.run("backfill", str(cli.ids(*tasks)))

    assert result.code == 0, result.stderr
    assert "2 of 2 tasks archived" in result.stdout
    assert set(verify_archive(cli.archive)) == set(tasks)
    assert (cli.workdir / "archive.state.sqlite3").exists()  # SPEC: state beside the archive
    events = result.log_events()
    assert any(e["event"] == "task_archived" and e.get("task_id") == tasks[0] for e in events)

    again = await cli.run("backfill", str(cli.ids(*tasks)))
    assert again.code == 0 and "2 of 2 tasks archived" in again.stdout


async def test_backfill_exits_1_and_names_every_task_that_did_not_archive(cli: Cli) -> None:
    ok, failed = fake_hex_id("ok"), fake_hex_id("failed")
    cli.sb.add_music(ok)
    cli.sb.add_music(failed, fail_status="CREATE_TASK_FAILED")

    result = await cli.run("backfill", str(cli.ids(ok, failed, "missing_one", "bad/line")))

    assert result.code == 1, result.stderr
    summary = result.stdout
    assert "1 of 3 tasks archived" in summary
    assert f"failed     {failed}" in summary and "not found  missing_one" in summary
    assert "line 4" in summary and "bad/line" in summary


async def test_the_summary_names_the_bucket_it_archived_into(
    aws_env: None, cli: Cli, server: MotoServer
) -> None:  # aws_env first: `cli` copies the environment it sets
    task = fake_hex_id("summary-s3")
    cli.sb.add_music(task)
    boto3.session.Session().client("s3", endpoint_url=server.url).create_bucket(Bucket="summary")
    cli.write_config(
        f'[storage]\nbackend = "s3"\nbucket = "summary"\nprefix = "suno/"\n'
        f'endpoint_url = "{server.url}"\nregion = "us-east-1"\n'
    )

    result = await cli.run("backfill", str(cli.ids(task)))

    assert result.code == 0, result.stderr
    assert "1 of 1 tasks archived in s3://summary/suno\n" in result.stdout
    assert not cli.archive.exists()  # nothing went to the local default


async def test_status_after_backfill_lists_the_failures(cli: Cli) -> None:
    failed = fake_hex_id("status-failed")
    cli.sb.add_music(failed, fail_status="SENSITIVE_WORD_ERROR")
    await cli.run("backfill", str(cli.ids(failed)))
    # status reads only the state: a key file the user cannot read is no obstacle
    config = cli.workdir / "archive.toml"
    config.write_text(
        config.read_text().replace("[api]\n", '[api]\napi_key_file = "/nonexistent/key"\n')
    )

    result = await cli.run("status", "--json")

    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert failed in json.dumps(doc)


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("[api\n", ["archive.toml", "invalid TOML"]),
        ("[storage]\nbackend = 's4'\n", ["archive.toml", "[storage] backend"]),
        ("[storage]\nbucket_name = 'x'\n", ["archive.toml", "bucket_name", "unknown key"]),
        ("[tasks]\ngive_up_after_s = 'soon'\n", ["[tasks] give_up_after_s"]),
    ],
)
async def test_bad_config_is_one_line_and_exit_2(cli: Cli, toml: str, needles: list[str]) -> None:
    cli.write_config(toml)

    result = await cli.run("backfill", str(cli.ids("abc")))

    assert_one_line_error(result, *needles)


async def test_missing_key_says_what_to_set(cli: Cli) -> None:
    del cli.env["SUNO_API_KEY"]

    result = await cli.run("backfill", str(cli.ids("abc")))

    assert_one_line_error(result, "SUNO_API_KEY", "api_key")


async def test_rejected_key_exits_2_and_never_shows_the_key(cli: Cli) -> None:
    cli.env["SUNO_API_KEY"] = SECRET
    cli.sb.add_music(fake_hex_id("auth"))

    result = await cli.run("backfill", str(cli.ids(fake_hex_id("auth"))))

    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert "401" in result.stderr or "key" in result.stderr.lower()
    assert SECRET not in result.stderr + result.stdout


async def test_a_wrong_base_url_exits_2_naming_it(cli: Cli) -> None:
    # A router's 404 at a wrong path is not "task not found": every task would be, for good.
    cli.sb.add_music(fake_hex_id("base"))
    base = f'base_url = "{cli.sb.base_url}"'
    config = cli.workdir / "archive.toml"
    config.write_text(config.read_text().replace(base, base[:-1] + '/suno"'))

    result = await cli.run("backfill", str(cli.ids(fake_hex_id("base"))))

    assert_one_line_error(result, "api.base_url", "404", "/suno/api/v1/generate/record-info")


async def test_missing_task_list_is_exit_2(cli: Cli) -> None:
    result = await cli.run("backfill", "no-such-file.txt")

    assert_one_line_error(result, "no-such-file.txt", "not found")


async def test_version(cli: Cli) -> None:
    result = await cli.run("--version")
    assert result.code == 0 and result.stdout.startswith("suno-archiver ")


# --- interruptions -------------------------------------------------------------------------


async def test_sigkill_mid_download_leaves_nothing_and_a_rerun_archives_all(cli: Cli) -> None:
    task, other = fake_hex_id("kill"), fake_hex_id("kill-other")
    cli.sb.add_music(task, seconds=120)  # ~1.9 MB
    cli.sb.add_music(other)
    cli.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(stall_after_bytes=600_000))
    ids = cli.ids(task, other)

    proc = await cli.start("backfill", str(ids))
    await wait_until(lambda: cli.sb.cdn.hits[f"{task}-1.mp3"] > 0 and bool(part_files(cli.archive)))
    await asyncio.sleep(0.3)  # let the stalled download sit mid-file
    proc.kill()
    await proc.wait()

    assert not cli.archive.joinpath(task, "manifest.json").exists()
    finals = [p for p in cli.archive.rglob("*") if p.is_file() and TEMP_DIR not in p.parts]
    assert all(p.parent.name == other for p in finals), finals  # only a finished task's files

    result = await cli.run("backfill", str(ids))

    assert result.code == 0, result.stderr
    assert set(verify_archive(cli.archive)) == {task, other}  # and no .part left anywhere


async def test_sigint_mid_download_exits_130_and_removes_temp_files(cli: Cli) -> None:
    task = fake_hex_id("sigint")
    cli.sb.add_music(task, seconds=120)
    cli.sb.cdn.set_faults(f"{task}-1.mp3", FileFaults(stall_after_bytes=600_000))

    proc = await cli.start("backfill", str(cli.ids(task)))
    others = (f"{task}-2.mp3", f"{task}-1.jpg", f"{task}-2.jpg")
    await wait_until(lambda: all(cli.sb.cdn.hits[name] for name in others))
    await asyncio.sleep(0.3)  # the task's other files are complete, waiting for the stalled one
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)

    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode()
    assert part_files(cli.archive) == []
    assert not cli.archive.joinpath(task, "manifest.json").exists()


# --- demo ----------------------------------------------------------------------------------


async def test_demo_archives_and_tags_the_samples(cli: Cli) -> None:
    result = await cli.run("demo", timeout=120)

    assert result.code == 0, result.stderr
    assert "Demo complete" in result.stdout and "cover embedded" in result.stdout
    manifests = verify_archive(cli.workdir / "demo-archive")
    outcomes = sorted(doc["outcome"] for doc in manifests.values())
    assert outcomes.count("failed") == 1 and set(outcomes) == {"archived", "failed"}


async def on_a_terminal(cli: Cli, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pty: (exit code, stdout, everything the terminal got)."""
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver.cli", *args,
            cwd=cli.workdir, env=cli.env, stdout=asyncio.subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        screen = b""
        with contextlib.suppress(OSError):  # EIO once the child's end is closed
            while chunk := os.read(master, 65536):
                screen += chunk
    finally:
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), screen.decode()


def terminal_rows(screen: str) -> list[str]:
    """The rows a terminal shows for `screen`: colours dropped, \r back to the row's start,
    ESC[K clears the rest of the row, \n starts a new row."""
    rows: list[str] = []
    row: list[str] = []
    col = 0
    for token in re.findall(r"\x1b\[K|\x1b\[[0-9;]*m|.|\n", re.sub(r"\r\n", "\n", screen)):
        if token == "\n":
            rows.append("".join(row))
            row, col = [], 0
        elif token == "\r":
            col = 0
        elif token == "\x1b[K":
            del row[col:]
        elif not token.startswith("\x1b"):
            row[col : col + 1] = [token]
            col += 1
    return [*rows, "".join(row)]


async def test_a_terminal_gets_a_progress_bar_and_readable_lines(cli: Cli) -> None:
    task = fake_hex_id("tty")
    cli.sb.add_music(task)

    code, out, text = await on_a_terminal(cli, "backfill", str(cli.ids(task, "bad/line")))

    assert code == 1  # the bad line makes the run incomplete
    assert "[########################] 1/1" in text
    assert "task_line_skipped" in text and not text.lstrip().startswith("{")
    assert "1 of 1 tasks archived" in out


async def test_a_log_line_never_lands_on_the_progress_bar(cli: Cli) -> None:
    found = fake_hex_id("tty-found")
    cli.sb.add_music(found)

    # The bar is drawn before the first poll; `missing` logs task_not_found while it shows
    # (after its not-found window, here 0.5 s).
    code, _, text = await on_a_terminal(cli, "backfill", str(cli.ids(found, "missing")))

    assert code == 1
    rows = terminal_rows(text)
    logged = [row for row in rows if "task_not_found" in row]
    assert len(logged) == 1, rows
    assert re.match(r"\d{4}-\d\d-\d\dT", logged[0]), rows  # its own row, from its start
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert re.search(r"task_not_found[^\n]*\r?\n\[[#.]{24}\] \d/2", plain), plain  # bar again
    assert rows[-1] == ""  # and the bar is cleared at the end
