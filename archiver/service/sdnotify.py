"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per message.

`Notifier.from_env()` reads `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and the
watchdog variables. Without `NOTIFY_SOCKET` (not started by systemd) every call is a no-op, so
the daemon never has to ask whether it runs under systemd. A failed send is logged once and
never raised: losing a status line must not stop the archiving.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger()


def _address(value: str) -> str | bytes | None:
    """`NOTIFY_SOCKET` → a socket address; "@name" is the abstract socket "\\0name"."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd also knows vsock:…; we do not, so we stay silent


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `WATCHDOG_USEC`), or None when systemd asked
    for none, or asked another process (`WATCHDOG_PID` set and not ours)."""
    watchdog_pid = env.get("WATCHDOG_PID", "").strip()
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """Sends `KEY=value` lines to systemd; every method is safe to call when not under it."""

    def __init__(self, address: str | bytes | None, *, watchdog_s: float | None = None) -> None:
        self._address = address
        self.watchdog_s = watchdog_s
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        raw = env.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("notify_socket_unsupported", notify_socket=raw)
        watchdog_s = watchdog_interval(env, os.getpid()) if address is not None else None
        return cls(address, watchdog_s=watchdog_s)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one message; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full queue
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:  # once: a missing socket would otherwise log every ping
                log.warning("sd_notify_failed", error=str(exc))
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
