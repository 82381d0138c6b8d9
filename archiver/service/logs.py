"""structlog set-up: JSON lines for machines, readable lines for people, secrets never shown."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import structlog

REDACTED = "***"


def _redactor(secrets: Sequence[str]) -> structlog.types.Processor:
    secrets = [s for s in secrets if s]

    def redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in event.items():
            if isinstance(value, str) and any(s in value for s in secrets):
                for secret in secrets:
                    value = value.replace(secret, REDACTED)
                event[key] = value
        return event

    return redact


class _LineLogger:
    """structlog's last link when the terminal has a progress line: every rendered event goes
    to `print_line`, which writes it above that line."""

    def __init__(self, print_line: Callable[[str], None]) -> None:
        self._print_line = print_line

    def msg(self, message: str) -> None:
        self._print_line(message)

    debug = info = warning = warn = error = err = critical = exception = fatal = log = msg


def configure_logging(
    *,
    json: bool | None = None,
    level: int = logging.INFO,
    secrets: Sequence[str] = (),
    print_line: Callable[[str], None] | None = None,
) -> None:
    """Log to stderr: JSON lines when it is not a terminal (journald, files, pipes).

    Every value is scrubbed of `secrets` (the API key) as a last line of defence; code
    should never log the key in the first place. `print_line`, when given, writes each line
    instead (a progress display's `print_above`).
    """
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=(
            structlog.PrintLoggerFactory(file=sys.stderr)
            if print_line is None
            else lambda *_args: _LineLogger(print_line)
        ),
        cache_logger_on_first_use=False,
    )
