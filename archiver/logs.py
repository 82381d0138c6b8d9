"""structlog set-up: JSON lines for machines, readable lines for people, secrets never shown."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
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


def configure_logging(
    *, json: bool | None = None, level: int = logging.INFO, secrets: Sequence[str] = ()
) -> None:
    """Log to stderr: JSON lines when it is not a terminal (journald, files, pipes).

    Every value is scrubbed of `secrets` (the API key) as a last line of defence; code
    should never log the key in the first place.
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
