"""A loopback TCP proxy in front of PostgreSQL that counts round trips: the client's messages
that wait for the server's ReadyForQuery, a Sync (the end of an extended-protocol exchange, or
of a whole pipeline) or a simple Query. Pipelined statements sent before one Sync count once,
as they cost one wait; the archiver is measured as it is, untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class RoundTrips:
    """The proxy, serving in a thread of its own; `count` is the round trips so far."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.count = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        frontend = _Frontend()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if client:
                        self.count += frontend.waits_in(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[RoundTrips]:
        self._thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class _Frontend:
    """The client's side of the protocol, parsed as it streams by: the start-up packets (no
    type byte: SSL and GSS requests, then the startup message), then typed messages."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def waits_in(self, data: bytes) -> int:
        """How many Sync and Query messages `data` completes."""
        self._buffer += data
        waits = 0
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return waits
                length = int.from_bytes(self._buffer[:4], "big")
                code = int.from_bytes(self._buffer[4:8], "big")
                if len(self._buffer) < length:
                    return waits
                self._buffer = self._buffer[length:]
                self._started = code >> 16 == 3  # protocol 3.0: the startup message itself
                continue
            if len(self._buffer) < 5:
                return waits
            length = int.from_bytes(self._buffer[1:5], "big")
            if len(self._buffer) < 1 + length:
                return waits
            waits += self._buffer[:1] in (b"S", b"Q")
            self._buffer = self._buffer[1 + length :]
