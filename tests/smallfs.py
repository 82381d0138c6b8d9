"""A real small filesystem for storage-full tests: a tmpfs mounted on a test's folder.

Mounting needs root (or CAP_SYS_ADMIN); where it is refused the test is skipped with the
reason, and the tests that inject the fault at the write call still cover the behaviour.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BALLAST = "ballast.bin"


@contextmanager
def mounted_tmpfs(folder: Path, size_bytes: int) -> Iterator[Path]:
    """`folder` as a tmpfs of `size_bytes`, unmounted afterwards (skips when it cannot)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, *, leave: int = 0) -> Path:
    """Write a ballast file until `folder`'s filesystem has at most `leave` bytes free."""
    path = folder / BALLAST
    with path.open("ab", buffering=0) as f:
        while (free := free_bytes(folder)) > leave:
            try:
                f.write(b"\0" * min(1 << 20, free - leave))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return path
