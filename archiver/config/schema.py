"""The config file's schema: every section and key, its TOML type, what a valid value is
(said in the error) and its check; and the reading of a parsed document against it, where every
error names the file and the key (unknown ones with a hint at what was meant).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from archiver.config.listen import is_loopback, parse_listen
from archiver.config.pgurl import is_pg_url
from archiver.errors import ConfigError
from archiver.tags.names import FIELDS, template_problem


@dataclass(frozen=True)
class _Key:
    type: type  # str, float (int accepted), int, bool
    expect: str  # "a number > 0": the error says "expected <expect>, got <value>"
    ok: Callable[[Any], bool] = lambda _v: True
    secret: bool = False  # never echo the value


def _is_url(value: str, *, allow_empty: bool) -> bool:
    if value == "":
        return allow_empty
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() or ord(c) < 32 for c in value)
    )


def _is_listen(value: str) -> bool:
    if value == "":
        return True
    try:
        host, _port = parse_listen(value)
    except ValueError:
        return False
    return is_loopback(host)


def _is_any_listen(value: str) -> bool:
    try:
        parse_listen(value)
    except ValueError:
        return value == ""
    return True


def printable(value: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in value)


def _path_ok(value: str) -> bool:
    return "\x00" not in value


def _nonempty_path(value: str) -> bool:
    return value.strip() != "" and "\x00" not in value


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda v: lo <= v <= hi


_PATH = _Key(str, "a path (a string)", _path_ok)
_TIMEOUT = _Key(float, "a number of seconds > 0", _positive)
_TEMPLATE = _Key(
    str,
    "text with fields among " + ", ".join(f"{{{f}}}" for f in FIELDS),
    lambda v: printable(v) and template_problem(v) is None,
)

SCHEMA: dict[str, dict[str, _Key]] = {
    "api": {
        "base_url": _Key(
            str, "an http:// or https:// URL", lambda v: _is_url(v, allow_empty=False)
        ),
        "api_key": _Key(str, "a string", secret=True),
        "api_key_file": _PATH,
        "requests_per_second": _Key(float, "a number > 0", _positive),
        "timeout_s": _TIMEOUT,
        "user_agent": _Key(
            str, "a non-empty string without control characters", lambda v: v and printable(v)
        ),
    },
    "tasks": {
        "list": _Key(str, "a non-empty path", _nonempty_path),
        "give_up_after_s": _Key(float, "a number of seconds > 0", _positive),
        "not_found_after_s": _Key(float, "a number of seconds > 0", _positive),
        "retention_days": _Key(float, "a number of days > 0", _positive),
    },
    "storage": {
        "backend": _Key(str, '"local" or "s3"', lambda v: v in ("local", "s3")),
        "path": _Key(str, "a non-empty path", _nonempty_path),
        "bucket": _Key(
            str,
            "an S3 bucket name: letters, digits, '.', '_' or '-' (at most 255)",
            lambda v: _bucket_ok(v),
        ),
        "prefix": _Key(
            str,
            "a key prefix without control characters or empty, '.' or '..' segments",
            lambda v: _prefix_ok(v),
        ),
        "endpoint_url": _Key(
            str, 'an http:// or https:// URL, or ""', lambda v: _is_url(v, allow_empty=True)
        ),
        "region": _Key(str, 'a region name such as "eu-west-1"', lambda v: _region_ok(v)),
        "public_base_url": _Key(
            str, 'an http:// or https:// URL, or ""', lambda v: _is_url(v, allow_empty=True)
        ),
        "presign_ttl_s": _Key(int, "an integer from 0 to 604800 (7 days)", _between(0, 604800)),
        "cache_dir": _PATH,
        "checksum_when_required": _Key(bool, "true or false"),
        "max_concurrent_uploads": _Key(int, "an integer from 1 to 64", _between(1, 64)),
        "min_free_bytes": _Key(int, "an integer >= 0 (bytes)", lambda v: v >= 0),
    },
    "state": {
        "path": _PATH,
        "url": _Key(
            str,
            'a postgresql:// or postgres:// URL naming a database, or ""',
            lambda v: v == "" or is_pg_url(v),
            secret=True,  # it may carry the password
        ),
        "password_file": _PATH,
        "lease_s": _Key(float, "a number of seconds from 5 to 3600", lambda v: 5 <= v <= 3600),
        "shared_local": _Key(bool, "true or false"),
    },
    "download": {
        "concurrency": _Key(int, "an integer from 1 to 64", _between(1, 64)),
        "max_file_bytes": _Key(int, "an integer > 0 (bytes)", lambda v: v > 0),
        "attempts": _Key(int, "an integer from 1 to 20", _between(1, 20)),
        "timeout_s": _TIMEOUT,
    },
    "tagging": {
        "enabled": _Key(bool, "true or false"),
        "id3_version": _Key(int, "3 or 4", lambda v: v in (3, 4)),
        "embed_cover": _Key(bool, "true or false"),
        "aligned_lyrics": _Key(bool, "true or false"),
        "album": _TEMPLATE,
        "artist": _TEMPLATE,
    },
    "index": {
        "enabled": _Key(bool, "true or false"),
        "min_interval_s": _Key(
            float, "a number of seconds >= 1", lambda v: v >= 1 and v < math.inf
        ),
    },
    "daemon": {
        "grace_period_s": _Key(
            float, "a number of seconds >= 0", lambda v: math.isfinite(v) and v >= 0
        ),
        "metrics_listen": _Key(
            str, 'a loopback host:port (e.g. "127.0.0.1:9464") or ""', _is_listen
        ),
        "verify_every_s": _Key(
            float, "a number of seconds >= 0 (0 = off)", lambda v: math.isfinite(v) and v >= 0
        ),
    },
    "intake": {
        "listen": _Key(str, 'a host:port (e.g. "127.0.0.1:8787") or ""', _is_any_listen),
        "token_file": _PATH,
        "kie_webhook_key_file": _PATH,
    },
    "notify": {
        "urls": _Key(
            tuple,
            "a list of https:// URLs (http:// only to a loopback address)",
            lambda v: all(_is_alert_url(u) for u in v),
        ),
        "silence_after_s": _Key(float, "a number of seconds > 0", _positive),
    },
    "events": {
        "urls": _Key(
            tuple,
            "a list of https:// URLs (http:// only to a loopback address)",
            lambda v: all(_is_alert_url(u) for u in v),
        ),
        "secret_file": _PATH,
        "types": _Key(tuple, "a list of event types"),
        "give_up_after_s": _Key(float, "a number of seconds > 0", _positive),
        "keep_days": _Key(float, "a number of days > 0", _positive),
        "timeout_s": _TIMEOUT,
    },
}


def _is_alert_url(value: str) -> bool:
    """Alerts and events carry what went on: over TLS, or to this machine."""
    if not _is_url(value, allow_empty=False):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" or is_loopback(parts.hostname or "")


# The names botocore lets through (botocore.handlers.VALID_BUCKET), not today's stricter rules
# for new AWS buckets: legacy us-east-1 buckets and other stores may have capitals or '_'.
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")
# botocore's own check (botocore.utils.validate_region_name): a host label, not all digits.
_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{,63}(?<!-)")


def _bucket_ok(v: str) -> bool:
    # "" passes here: whether a bucket is required depends on the backend (see _build).
    return v == "" or bool(_BUCKET.fullmatch(v))


def _prefix_ok(v: str) -> bool:
    segments = v.strip("/").split("/")
    return printable(v) and (segments == [""] or all(s not in ("", ".", "..") for s in segments))


def _region_ok(v: str) -> bool:
    return bool(_REGION.fullmatch(v))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_name(name: str) -> str:
    """A key or section name as TOML writes it: quoted when not bare, so a newline in a
    quoted key cannot break the one-line error."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _show(value: Any) -> str:
    """A TOML-ish rendering of a bad value for an error message (short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '…"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


class Loader:
    """One config file's reading: its values checked against SCHEMA, its relative paths
    resolved, and the one-line error that names the file and the key."""

    def __init__(self, label: str, base: Path) -> None:
        self.label = label  # the config file as the user named it, or "(defaults)"
        self.base = base  # the folder relative paths resolve against

    def fail(self, where: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.label}: {where}: {message}")

    # -- shape -----------------------------------------------------------------------------

    def sections(self, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Check sections and keys and value types; return {section: {key: typed value}}."""
        out: dict[str, dict[str, Any]] = {name: {} for name in SCHEMA}
        for name, table in doc.items():
            if name not in SCHEMA:
                if not isinstance(table, dict):
                    hint = _hint_anywhere(name)
                    self.fail(_key_name(name), "unknown key outside any section" + hint)
                close = difflib.get_close_matches(name, SCHEMA, n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                known = ", ".join(f"[{s}]" for s in SCHEMA)
                self.fail(f"[{_key_name(name)}]", f"unknown section{hint}; known sections: {known}")
            if not isinstance(table, dict):
                # Not the value: `api = "<the key>"` must not echo the key.
                self.fail(f"[{name}]", f"expected a section [{name}], not a value")
            for key, value in table.items():
                out[name][key] = self.value(name, key, value)
        return out

    def value(self, section: str, key: str, value: Any) -> Any:
        where = f"[{section}] {_key_name(key)}"
        spec = SCHEMA[section].get(key)
        if spec is None:
            close = difflib.get_close_matches(key, SCHEMA[section], n=1)
            if close:
                hint = f" (did you mean {close[0]}?)"
            else:
                hint = _hint_anywhere(key) or ("; known keys: " + ", ".join(SCHEMA[section]))
            self.fail(where, "unknown key" + hint)
        typed = _coerce(spec.type, value)
        if typed is None or not spec.ok(typed):
            got = "" if spec.secret else f", got {_show(value)}"
            self.fail(where, f"expected {spec.expect}{got}")
        return typed

    # -- paths -----------------------------------------------------------------------------

    def path(self, raw: str) -> Path:
        return Path(os.path.abspath(self.base / Path(raw).expanduser()))


def _coerce(kind: type, value: Any) -> Any:
    """The value as `kind`, or None when TOML gave another type (a bool is not a number)."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)  # a list of strings, the only kind of list the config has
    if kind is str and isinstance(value, str):
        return value
    return None


def _hint_anywhere(key: str) -> str:
    """' (it belongs in [storage])' when `key` is a key of another section, else ""."""
    for section, keys in SCHEMA.items():
        if key in keys:
            return f" (it belongs in [{section}])"
    return ""
