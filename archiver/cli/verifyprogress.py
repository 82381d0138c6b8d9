"""The terminal's progress line while `verify` walks: folders done, bytes read, problems."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from archiver.cli.progress import REDRAW_S
from archiver.verify.findings import Tally

_MIB = 1024 * 1024


class VerifyProgress:
    """Redrawn in place with \\r at most every REDRAW_S; the total grows as the listing does."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._drawn_at = -REDRAW_S
        self._shown = False
        self._lock = threading.Lock()  # called from the checking threads

    def update(self, done: int, listed: int, tally: Tally) -> None:
        with self._lock:
            if self._clock() - self._drawn_at < REDRAW_S:
                return
            self._drawn_at = self._clock()
            width = 24
            filled = width * done // max(listed, 1)
            self._stream.write(
                f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {done}/{listed} folders  "
                f"{tally.files} files  {tally.bytes_read / _MIB:.0f} MiB read  "
                f"{len(tally.problems)} problems"
            )
            self._stream.flush()
            self._shown = True

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self._stream.write("\r\033[K")
                self._stream.flush()
                self._shown = False
