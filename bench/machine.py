"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def curl_version() -> str | None:
    """`curl 7.88.1`, or None when curl is not installed."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    out = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False).stdout
    words = out.split()
    return " ".join(words[:2]) if len(words) >= 2 else "curl"


def describe(workdir: Path) -> str:
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = f"{os.cpu_count()} CPUs" + (f" ({len(usable)} usable)" if usable else "")
    lines = [
        f"- CPU: {_cpu_model()}, {cpus}",
        f"- memory: {_memory()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- curl: {curl_version() or 'not installed'}",
        f"- work folder: {workdir}",
    ]
    return "### Machine\n\n" + "\n".join(lines) + "\n"
