"""`host:port` addresses to listen on, and the rule that ours are loopback only: the metrics
listener and the stand-in API serve this machine, never the network (the HTTP intake may
listen anywhere: it checks a token)."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from archiver.errors import UsageError


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9464' / '[::1]:9464' / 'localhost:9464' → (host, port); ValueError if not."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ValueError(f"not host:port: {value!r}")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"an IPv6 host needs brackets ([::1]:9464): {value!r}")
    if not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise ValueError(f"not host:port: {value!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def start_listener(app: web.Application, listen: str, setting: str) -> web.AppRunner:
    """Serve `app` on `listen` (no access log: a path may carry a secret); a UsageError
    naming `setting` ("[daemon] metrics_listen") when it cannot bind."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(f"{setting}: cannot listen on {listen}: {exc.strerror or exc}") from None
    return runner
