"""`python -S bench/launch.py RESULT COMMAND...`: run COMMAND, then write its exit code, wall
time, CPU time and peak RSS to RESULT (JSON).

Why a launcher: Linux counts, in a process's ru_maxrss, the peak of the address space it had
before `exec` — for a child of the benchmark, the benchmark's own (tens of MB of imports and
test data). A child forked from this small process (`-S`: no site, a few MB) reports its own
peak. SIGINT is passed on to the child, as Ctrl-C would be.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main(result: str, argv: list[str]) -> int:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - replaced by exec
        try:
            # A job started in the background (`python -m bench &`) inherits SIGINT ignored,
            # and exec keeps it so: the child would never stop at the SIGINT it is sent.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    signal.signal(signal.SIGINT, lambda _sig, _frame: os.kill(pid, signal.SIGINT))
    _, status, usage = os.wait4(pid, 0)
    end = time.monotonic()
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w") as out:
        doc = {
            "start": start,
            "end": end,
            "returncode": code,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        }
        json.dump(doc, out)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
