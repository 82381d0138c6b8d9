"""Command line: arguments in, exit codes out (SPEC "Commands"). Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from archiver import __version__
from archiver.cli.backfill import BackfillReport, backfill, format_summary
from archiver.cli.progress import Progress
from archiver.cli.status import format_status, read_status, status_json
from archiver.config import Config, load_config
from archiver.errors import ApiUnusable, InternalError, UsageError
from archiver.service.logs import configure_logging

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suno-archiver",
        description="Archive finished Suno generations before their URLs expire.",
    )
    parser.add_argument("--version", action="version", version=f"suno-archiver {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log every step (debug level)")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, help="config file (default: ./archive.toml if it exists)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "backfill",
        parents=[common, config],
        help="archive the tasks listed in a file, then exit",
    ).add_argument("ids_file", type=Path, metavar="IDS_FILE", help="task list, one ID a line")
    commands.add_parser(
        "run",
        parents=[common, config],
        help="daemon: watch the task list and archive tasks as they finish, until SIGTERM",
    )
    commands.add_parser(
        "status", parents=[config], help="what the state knows: counts and problem tasks"
    ).add_argument("--json", action="store_true", help="one JSON document for scripts")
    verify = commands.add_parser(
        "verify", parents=[common, config], help="check the archive against its manifests"
    )
    verify.add_argument("--read-data", action="store_true", help="S3: download every file")
    verify.add_argument(
        "--repair", action="store_true", help="fetch missing and corrupt files again"
    )
    verify.add_argument("--json", action="store_true", help="one JSON document for scripts")
    verify.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="only these tasks")
    commands.add_parser(
        "reindex", parents=[common, config], help="rebuild the state from the archive's manifests"
    )
    commands.add_parser(
        "index",
        parents=[common, config],
        help="(re)write the archive's index.html and playlist.m3u8 from its manifests",
    )
    events = commands.add_parser(
        "events",
        parents=[common, config],
        help="task events not yet delivered (or given up); send some again",
    )
    events.add_argument("--failed", action="store_true", help="the deliveries given up")
    events.add_argument("--json", action="store_true", help="one JSON document for scripts")
    events.add_argument(
        "--redeliver",
        nargs="+",
        metavar="ID",
        help="send these events again (their ID or webhook-id), a new run of attempts",
    )
    commands.add_parser(
        "copy-state",
        parents=[common, config],
        help="copy the SQLite state into an empty PostgreSQL database (several daemons)",
    ).add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://user@host:5432/db (the password from ~/.pgpass or PGPASSWORD)",
    )
    commands.add_parser(
        "demo", parents=[common], help="archive sample tasks from a built-in stand-in API"
    ).add_argument(
        "--dir", type=Path, default=Path("demo-archive"), help="where (default: ./demo-archive)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    interactive = sys.stderr.isatty()
    try:
        config = _load(args)
        if args.command == "status":
            return _status(config, as_json=args.json)
        level = logging.DEBUG if args.verbose else logging.WARNING if interactive else logging.INFO
        if args.command == "run" and not args.verbose:
            level = logging.INFO  # a daemon's log is its only voice; metrics count its events
        display = (
            Progress(sys.stderr)
            if interactive and not args.verbose and args.command in ("backfill", "demo")
            else None
        )
        configure_logging(
            level=level,
            secrets=[config.api.api_key, *config.state.secrets] if config else [],
            print_line=display.print_above if display else None,
        )
        if args.command == "verify":
            return _verify(config, args, interactive=interactive and not args.verbose)
        if args.command == "reindex":
            return _reindex(config)
        if args.command == "backfill":
            return _backfill(config, args.ids_file, display)
        if args.command == "run":
            return _run(config)
        if args.command == "index":
            return _index(config)
        if args.command == "events":
            return _events(config, args)
        if args.command == "copy-state":
            return _copy_state(config, args.to, interactive=interactive)
        return _demo(args.dir, display)
    except UsageError as exc:
        print(f"suno-archiver: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InternalError as exc:  # a bug: one line here, the traceback in the log
        print(f"suno-archiver: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print("suno-archiver: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _load(args: argparse.Namespace) -> Config | None:
    if args.command == "demo":
        return None
    no_key = (
        "status",
        "reindex",
        "index",
        "copy-state",
    )  # they ask the API nothing (verify: to --repair)
    no_key += () if getattr(args, "repair", False) else ("verify",)
    no_key += () if getattr(args, "redeliver", None) else ("events",)  # sends nothing
    return load_config(
        args.config,
        os.environ,
        read_key=args.command not in no_key,
        read_intake=args.command == "run",  # the only command serving it
    )


def _backfill(config: Config, ids_file: Path, display: Progress | None) -> int:
    try:
        report = asyncio.run(
            backfill(
                config,
                ids_file,
                on_start=display.start if display else None,
                on_change=display.update if display else None,
            )
        )
    except ApiUnusable as exc:  # SPEC: a rejected key (or base_url) ends backfill as a usage error
        raise UsageError(str(exc)) from exc
    finally:
        if display:
            display.close()
    return _finish(report, config.storage.location)


def _run(config: Config) -> int:
    from archiver.cli.daemon import run_daemon  # loads the metrics and systemd pieces

    asyncio.run(run_daemon(config))
    return EXIT_OK  # SPEC: a clean stop on SIGTERM/SIGINT exits 0


def _index(config: Config) -> int:
    from archiver.browse.command import write_index  # loads Jinja2 and the storage

    print(asyncio.run(write_index(config)))
    return EXIT_OK


def _events(config: Config, args: argparse.Namespace) -> int:
    from archiver.cli.events import list_events, redeliver  # loads the storage and aiohttp

    if args.redeliver:
        if args.failed or args.json:
            raise UsageError("--redeliver sends events: it takes neither --failed nor --json")
        failed = asyncio.run(redeliver(config, args.redeliver))
        return EXIT_INCOMPLETE if failed else EXIT_OK
    list_events(config, failed=args.failed, as_json=args.json)


def _copy_state(config: Config, url: str, *, interactive: bool) -> int:
    from archiver.config.pgurl import is_pg_url, shown
    from archiver.state.copy import copy_state

    if not is_pg_url(url):
        raise UsageError("--to: expected a postgresql:// or postgres:// URL naming a database")
    if config.state.url:
        raise UsageError(
            f"{config.source}: [state] url: the state is PostgreSQL already; copy-state copies "
            "a SQLite state ([state] path)"
        )

    def progress(table: str, done: int, total: int) -> None:
        print(f"\rcopying {table}: {done:,} / {total:,}", end="", file=sys.stderr, flush=True)

    try:
        copied = copy_state(
            config.state.path, url, shown(url), on_progress=progress if interactive else None
        )
    finally:
        if interactive:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    print(
        f"{copied.rows['tasks']:,} tasks, {copied.rows['view']:,} index rows and "
        f"{copied.rows['events']:,} task events copied from {copied.source} to {copied.target}"
    )
    return EXIT_OK


def _status(config: Config, *, as_json: bool) -> int:
    report = read_status(
        config.state, retention_days=config.tasks.retention_days, alive_s=config.state.lease_s
    )
    if as_json:
        print(json.dumps(status_json(report), indent=2, ensure_ascii=False))
    else:
        print(format_status(report))
    return EXIT_OK


def _verify(config: Config, args: argparse.Namespace, *, interactive: bool) -> int:
    from archiver.cli.verifyprogress import VerifyProgress
    from archiver.kinds.records import is_id
    from archiver.verify import format_report, report_json, verify_archive
    from archiver.verify.repair import verify_and_repair

    bad = [task_id for task_id in args.task_ids if not is_id(task_id)]
    if bad:
        raise UsageError(f"not a task ID: {bad[0]!r}")
    display = VerifyProgress(sys.stderr) if interactive else None
    options = {
        "only": list(dict.fromkeys(args.task_ids)) or None,
        "read_data": args.read_data,
        "on_progress": display.update if display else None,
    }
    try:
        if args.repair:
            repaired = asyncio.run(verify_and_repair(config, **options))
            report, actions = repaired.final, repaired.actions
        else:
            report, actions = verify_archive(config, **options), ()
    except ApiUnusable as exc:  # as in backfill: a rejected key or base_url is for a person
        raise UsageError(str(exc)) from exc
    finally:
        if display:
            display.close()
    if args.json:
        doc = report_json(report)
        if args.repair:
            doc["repair"] = [
                {"action": a.what, "path": a.path, "detail": a.detail} for a in actions
            ]
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print("\n".join([*(a.line() for a in actions), format_report(report)]))
    return EXIT_OK if report.intact else EXIT_INCOMPLETE


def _reindex(config: Config) -> int:
    from archiver.verify.reindex import format_reindex, reindex

    report = reindex(config)
    print(format_reindex(report))
    return EXIT_INCOMPLETE if report.unreadable else EXIT_OK


def _finish(report: BackfillReport, archive: str) -> int:
    print(format_summary(report, archive))
    if report.stopped is not None:  # SPEC: storage that cannot take the archive is exit 2
        raise UsageError(
            f"{report.stopped}; nothing is lost: free some space, then run the same backfill "
            "again (what is archived stays archived)"
        )
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def _demo(dest: Path, display: Progress | None) -> int:
    from archiver.cli.demo import describe_archive, expected, run_demo  # loads the stand-in server

    try:
        report = asyncio.run(
            run_demo(
                dest,
                on_start=display.start if display else None,
                on_change=display.update if display else None,
            )
        )
    finally:
        if display:
            display.close()
    print(describe_archive(dest))
    print(format_summary(report, str(dest)))
    if expected(report):
        print("Demo complete: every sample archived as expected (one fails by design).")
        return EXIT_OK
    return EXIT_INCOMPLETE
