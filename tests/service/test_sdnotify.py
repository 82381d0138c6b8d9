"""sd_notify over a real AF_UNIX datagram socket, as systemd would receive it."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.service.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def _messages(sock: socket.socket) -> list[str]:
    return [sock.recv(4096).decode()]


def test_ready_sends_ready_and_status_in_one_datagram(listener) -> None:
    sock, path = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("3 archived, 1 pending")
    assert _messages(sock) == ["READY=1\nSTATUS=3 archived, 1 pending"]
    assert notifier.watchdog()
    assert _messages(sock) == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert _messages(sock) == ["STOPPING=1\nSTATUS=stopping"]
    notifier.close()


def test_a_status_cannot_inject_another_variable(listener) -> None:
    sock, path = listener
    Notifier.from_env({"NOTIFY_SOCKET": path}).status("evil\nREADY=1")
    assert _messages(sock) == ["STATUS=evil READY=1"]


def test_abstract_socket_named_with_at_sign() -> None:
    name = f"suno-archiver-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    assert not notifier.ready("x")
    assert not notifier.watchdog()


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path, capsys) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert capsys.readouterr().out.count("sd_notify_failed") <= 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_pings_every_half_of_watchdog_usec_when_meant_for_us(env, expected) -> None:
    assert watchdog_interval(env, os.getpid()) == expected


def test_watchdog_is_off_without_a_socket_to_ping() -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": "2000000"}).watchdog_s is None
