"""`python -m archiver.sandbox`: serve the stand-in API until SIGTERM/SIGINT.

Prints one JSON line `{"base_url", "api_key", "tasks"}` on stdout once it listens, so that a
parent process (daemon tests, benchmarks) can read where to point the archiver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from archiver.sandbox import Sandbox, is_loopback
from archiver.sandbox.scenarios import add_bench_tasks, add_demo_tasks


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m archiver.sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--scenario", choices=("demo", "bench"), default="demo")
    p.add_argument("--tasks", type=int, default=20, help="bench: number of music tasks")
    p.add_argument("--seconds", type=float, default=180.0, help="bench: length of each track")
    p.add_argument("--api-key", default="sandbox-key")
    p.add_argument(
        "--ready-after", type=float, default=None, help="seconds until unfinished tasks finish"
    )
    args = p.parse_args(argv)
    if not is_loopback(args.host):
        p.error(f"--host must be a loopback address, not {args.host!r}")
    return args


async def _serve(args: argparse.Namespace) -> None:
    sb = Sandbox(api_key=args.api_key)
    if args.scenario == "demo":
        tasks = add_demo_tasks(
            sb, pending_after_s=6.0 if args.ready_after is None else args.ready_after
        )
    else:
        tasks = add_bench_tasks(
            sb, args.tasks, seconds=args.seconds, ready_after_s=args.ready_after or 0.0
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sb.start(args.host, args.port)
    try:
        line = {"base_url": sb.base_url, "api_key": args.api_key, "tasks": tasks}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await sb.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
