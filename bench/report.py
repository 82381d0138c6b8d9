"""Tables as Markdown, so that a run's output pastes straight into docs/benchmarks.md."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

MB = 1_000_000


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # broken checks: `python -m bench` exits 1

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes or self.failures:
            lines.append("")
        lines.extend(f"- {note}" for note in self.notes)
        lines.extend(f"- **FAILED:** {failure}" for failure in self.failures)
        return "\n".join(lines) + "\n"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:,.1f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: int) -> float:
    """Linear-interpolated percentile (the same as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
