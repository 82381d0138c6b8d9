"""`python -m bench.server`: the stand-in API and file host in a process of its own.

The benchmarks run the archiver as a subprocess against this one, so the server's CPU is not
the archiver's. It prints one JSON line `{"base_url", "api_key", "tasks": {group: [ids]}}` once
it listens, then answers each `stats` line on stdin with `{"api_calls", "cdn_hits"}` (counted
here, on the server side), and exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from archiver.sandbox import Sandbox, fake_hex_id
from archiver.sandbox.scenarios import add_bench_tasks

BYTES_PER_SECOND = 16_000  # the sandbox's sample MP3s are 128 kbit/s


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    p.add_argument("--songs", type=int, default=0, help="tasks of two tracks (throughput)")
    p.add_argument("--seconds", type=float, default=180.0, help="length of those tracks")
    p.add_argument(
        "--single",
        type=int,
        action="append",
        default=[],
        metavar="BYTES",
        help="a task of one track of about this size (repeatable)",
    )
    p.add_argument("--tiny", type=int, default=0, help="tasks of two tiny tracks (scale)")
    p.add_argument(
        "--rate", type=int, default=0, help="bytes per second of each file sent (0: no cap)"
    )
    return p.parse_args(argv)


def _add_tasks(sb: Sandbox, args: argparse.Namespace) -> dict[str, list[str]]:
    tasks = {"songs": add_bench_tasks(sb, args.songs, seconds=args.seconds), "single": []}
    for size in args.single:
        task_id = fake_hex_id(f"single:{size}")
        sb.add_music(task_id, tracks=1, seconds=size / BYTES_PER_SECOND)
        tasks["single"].append(task_id)
    tasks["tiny"] = [fake_hex_id(f"tiny:{i}") for i in range(args.tiny)]
    for task_id in tasks["tiny"]:
        sb.add_music(task_id, seconds=0.2)
    return tasks


def _say(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    async with Sandbox() as sb:
        sb.cdn.rate_bytes_per_s = args.rate or None
        tasks = _add_tasks(sb, args)
        _say({"base_url": sb.base_url, "api_key": sb.api_key, "tasks": tasks})
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "stats":
                _say({"api_calls": sb.api.total_calls, "cdn_hits": sum(sb.cdn.hits.values())})


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
