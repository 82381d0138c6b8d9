"""`python -m bench --quick` still runs: every measurement prints its table and exits 0.

The quick sizes take well under a minute; the full benchmark is run by hand (docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADERS = (
    "### Machine",
    "### Throughput:",
    "### Memory:",
    "### Polling cost:",
    "### Scale:",
    "### The daemon at scale:",
    "### Intake:",
    "### Browse:",
    "### Events:",
)


def test_quick_benchmark_prints_every_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,  # the scale case starts a daemon and appends to its list
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for header in HEADERS:
        assert header in result.stdout, header
    assert "**FAILED:**" not in result.stdout
